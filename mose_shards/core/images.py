"""Untrusted image bytes, opened safely: the pixel cap read from the header before any decode, and
Pillow's failures as one `ValueError` line (never a DecompressionBombError traceback, never the repr
of a BytesIO). Every stage that opens an image from a file it did not write goes through here.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

from PIL import Image, UnidentifiedImageError

# Twice an 8K (8192x8192) frame: above every VOS dataset, far below what exhausts a worker's memory
# (one 8-bit channel of it is 128 MiB; RGB 384 MiB).
DEFAULT_MAX_PIXELS = 2 * 8192 * 8192

_PNG = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (every SOFn except DHT C4, JPG C8, DAC CC), which carry the frame size
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) a PNG or JPEG declares in its header, without decoding; None if not found."""
    if data.startswith(_PNG) and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack_from(">II", data, 16)
        return int(width), int(height)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_frame_size(data)
    return None


def _jpeg_frame_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _SOF and pos + 9 <= len(data):
            height, width = struct.unpack_from(">HH", data, pos + 5)
            return int(width), int(height)
        if marker == 0xDA or length < 2:  # scan data before any frame header: give up
            return None
        pos += 2 + length
    return None


def check_pixels(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """ValueError when the image's header declares more than `max_pixels` pixels."""
    size = header_size(data)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ValueError(
            f"image declares {size[0]}x{size[1]} = {size[0] * size[1]} pixels, above the limit of "
            f"{max_pixels} (--max-pixels)"
        )


@contextmanager
def open_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, kind: str = "image"
) -> Iterator[Image.Image]:
    """Pillow's image of `data`, after the pixel cap; ValueError (one line) for what it cannot read.

    Decode inside the block (np.asarray, convert): a truncated or broken file fails there as a
    ValueError too.
    """
    check_pixels(data, max_pixels)
    try:
        with warnings.catch_warnings():
            # our cap is checked above; Pillow's own (lower by default) would only warn or raise
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                yield img
    except Image.DecompressionBombError as exc:
        raise ValueError(f"{kind} too large for Pillow ({exc}); raise PIL.Image.MAX_IMAGE_PIXELS") from None
    except UnidentifiedImageError:
        raise ValueError(f"not a readable {kind} (unknown format or corrupt header)") from None
    except (OSError, SyntaxError, struct.error, EOFError) as exc:
        raise ValueError(f"unreadable {kind} ({exc})") from None
