"""Mask PNGs as id maps: decoding and the ids present (Pillow and numpy only, for every stage)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from .images import DEFAULT_MAX_PIXELS, check_pixels, open_image

DEFAULT_VOID_LABEL = 255
_MASK_MODES = ("P", "L")

# A 1x1 grayscale PNG whose only pixel is 255 (the DAVIS void label): the `.png` member of a frame that
# has no annotation, so that every sample of every shard has the same members (README, "Members").
# Its size can never match a real frame, so no consumer can mistake it for a mask.
PLACEHOLDER_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b550000000a49444154789c63f80f00"
    "01010100b138f6140000000049454e44ae426082"
)


_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_INFLATE_STEP = 1 << 20  # bytes of inflated data looked at a time when counting rows


def decode_mask(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a palette or grayscale PNG into its HxW uint8 id map; ValueError (one line) for other
    modes, more pixels than `max_pixels`, image data that stops short of the last row, or a file
    Pillow cannot read."""
    check_pixels(data, max_pixels)
    found = indexed_png(data)
    if found is not None:  # the kind VOS masks are: one bounded inflate decodes it and counts its rows
        (width, height), stream = found
        raw = _inflate_at_most(stream, height * (width + 1))
        if raw is not None:
            if len(raw) < height * (width + 1):
                raise ValueError(
                    f"truncated PNG: its image data holds {len(raw) // (width + 1)} of its {height} rows"
                )
            rows = np.frombuffer(raw, np.uint8).reshape(height, width + 1)
            if not rows[:, 0].any():  # no row filtered: the ids are the bytes (Pillow gives the same)
                return np.ascontiguousarray(rows[:, 1:])
    with open_image(data, max_pixels, "PNG") as img:
        if img.mode not in _MASK_MODES:
            raise ValueError(
                f"mask is a {img.mode} image; expected a palette (P) or grayscale (L) PNG of object ids"
            )
        check_rows(data)
        return np.asarray(img)


SIGNATURE = b"\x89PNG\r\n\x1a\n"
_INDEXED = {(8, 3), (8, 0)}  # (bit depth, colour type): 8-bit palette, 8-bit grayscale


def indexed_png(data: bytes) -> tuple[tuple[int, int], bytes] | None:
    """((width, height), concatenated IDAT) of an 8-bit palette/gray non-interlaced PNG whose IHDR and
    IDAT checksums hold, else None (the caller leaves the file to Pillow)."""
    if not data.startswith(SIGNATURE):
        return None
    pos, size, idat = len(SIGNATURE), None, []
    while pos + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length or len(data) < pos + 12 + length:
            return None
        if kind in (b"IHDR", b"IDAT"):
            (crc,) = struct.unpack_from(">I", data, pos + 8 + length)
            if zlib.crc32(body, zlib.crc32(kind)) != crc:
                return None
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if (depth, colour) not in _INDEXED or interlace or not width or not height:
                return None
            size = (width, height)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
        pos += 12 + length
    if size is None or not idat:
        return None
    return size, b"".join(idat)


def _inflate_at_most(stream: bytes, wanted: int) -> bytes | None:
    """The first `wanted` bytes the zlib stream inflates to (fewer when it ends sooner); None when it
    is corrupt (Pillow then says how)."""
    try:
        return zlib.decompressobj().decompress(stream, wanted)
    except zlib.error:
        return None


def check_rows(data: bytes) -> None:
    """ValueError when a non-interlaced PNG's image data inflates to fewer rows than its header says
    (Pillow fills the missing rows with zeros: background, silently)."""
    if not data.startswith(SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 29:
        return
    width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if interlace or colour not in _CHANNELS:
        return
    row = 1 + (width * _CHANNELS[colour] * depth + 7) // 8
    got = _inflated_size(_idat(data), height * row)
    if got is not None and got < height * row:
        raise ValueError(f"truncated PNG: its image data holds {got // row} of its {height} rows")


def _idat(data: bytes) -> bytes:
    pos, parts = 8, []
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            parts.append(data[pos + 8 : pos + 8 + length])
        elif kind == b"IEND":
            break
        pos += 12 + length
    return b"".join(parts)


def _inflated_size(stream: bytes, wanted: int) -> int | None:
    """Bytes the zlib stream inflates to, counted up to `wanted` in steps (never all held at once);
    None when the stream is corrupt (Pillow reports that)."""
    inflater, total, pending = zlib.decompressobj(), 0, stream
    try:
        while total < wanted:
            out = inflater.decompress(pending, _INFLATE_STEP)
            total += len(out)
            pending = inflater.unconsumed_tail
            if not out and not pending:
                break
    except zlib.error:
        return None
    return total


def object_ids(ids: np.ndarray, void_label: int | None) -> list[int]:
    """Ids present in an id map: every non-zero value except the void label."""
    counts = np.bincount(ids.ravel(), minlength=256)
    counts[0] = 0
    if void_label is not None:
        counts[void_label] = 0
    return [int(i) for i in np.flatnonzero(counts)]
