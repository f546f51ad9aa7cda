"""gzip seek points, and the index format both our decoders read (indexed_gzip's GZIDX, version 1).

A seek point is where a deflate block starts (a bit offset into the compressed stream), the
uncompressed offset there, and the 32 KiB of output before it (the window that back-references may
reach into). rapidgzip reports block starts as it decompresses (`available_block_offsets`) but
exports its index only whole: asked in the middle of a stream it first decompresses to the end
(measured, rapidgzip 0.16). So `Capture` takes each point's window from the decompressed bytes as
they pass, and a listing checkpoint can save the points found so far.
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple

import numpy as np
from zlib_ng import zlib_ng

from ..core.errors import MissingDependencyError


def load_rapidgzip() -> Any:
    """The rapidgzip module (the [gzip] extra), which lists a .tar.gz and builds its seek points."""
    try:
        import rapidgzip
    except ImportError:
        raise MissingDependencyError("rapidgzip", "gzip") from None
    return rapidgzip


WINDOW = 32768
# magic, version, flags, compressed size, uncompressed size, spacing, window size, points
_HEADER = struct.Struct("<5sBBQQIII")
_POINT = struct.Struct("<QQBB")  # compressed byte, uncompressed offset, bits of the byte before, has window
_ROW = np.dtype([("byte", "<u8"), ("offset", "<u8"), ("bits", "u1"), ("has_window", "u1")])  # _POINT


class Point(NamedTuple):
    bit: int  # where the deflate block starts in the compressed stream, in bits
    offset: int  # the uncompressed offset there
    window: bytes  # the WINDOW bytes of output before `offset` (b"" at the start of the stream)


def to_bytes(points: list[Point], compressed: int, uncompressed: int, spacing: int) -> bytes:
    """The points as a GZIDX index (`uncompressed` 0: the stream's length is not known yet)."""
    out = [_HEADER.pack(b"GZIDX", 1, 0, compressed, uncompressed, spacing, WINDOW, len(points))]
    for point in points:
        byte = -(-point.bit // 8)
        out.append(_POINT.pack(byte, point.offset, byte * 8 - point.bit, 1 if point.window else 0))
    # A window shorter than WINDOW is the stream's first bytes: zeros before them.
    out += [p.window.rjust(WINDOW, b"\0") for p in points if p.window]
    return b"".join(out)


def from_bytes(data: bytes) -> tuple[list[Point], int]:
    """(points, uncompressed length or 0) of a GZIDX index; ValueError when it is not one."""
    table = Table(data)
    return [table.point(i) for i in range(len(table))], table.uncompressed


class Table:
    """A GZIDX index as columns (bit and uncompressed offsets of its points), each point's window
    read from the index bytes only when asked: a reader holds the index once."""

    def __init__(self, data: bytes) -> None:
        try:
            magic, version, _, _, uncompressed, _, window, count = _HEADER.unpack_from(data)
        except struct.error:
            raise ValueError("not a gzip index (short header)") from None
        if magic != b"GZIDX" or version != 1 or window != WINDOW:
            raise ValueError(f"not a gzip index of version 1 with {WINDOW}-byte windows")
        start, end = _HEADER.size, _HEADER.size + count * _POINT.size
        if len(data) < end:
            raise ValueError("gzip index cut short")
        rows = np.frombuffer(data, dtype=_ROW, count=count, offset=start)
        has = rows["has_window"].astype(bool)
        if len(data) != end + int(has.sum()) * WINDOW:
            raise ValueError("gzip index cut short" if len(data) < end + int(has.sum()) * WINDOW
                             else "gzip index with trailing bytes")  # fmt: skip
        self.data = data
        self.uncompressed = uncompressed
        self.bits = rows["byte"].astype(np.int64) * 8 - rows["bits"]
        self.offsets = rows["offset"].astype(np.int64)
        starts = end + (np.cumsum(has) - 1) * WINDOW
        self.windows = np.where(has, starts, -1)  # where each point's window starts in `data`

    def __len__(self) -> int:
        return len(self.offsets)

    def point(self, i: int) -> Point:
        at = int(self.windows[i])
        window = self.data[at : at + WINDOW] if at >= 0 else b""
        return Point(int(self.bits[i]), int(self.offsets[i]), window)

    def before(self, offset: int) -> int:
        """The number of the last point at or before uncompressed `offset`."""
        return int(np.searchsorted(self.offsets, offset, side="right")) - 1


class Capture:
    """A RapidgzipFile read front to back that keeps a Point (window included) at each block start
    it passes, until `take` hands them on: memory is the points between two takes. It also keeps
    the CRC-32 of every byte read (`crc`: the stream's, from its start when `pos` and `crc` say where
    reading begins) and of the bytes before each point, so a listing that goes on from a point can
    check the gzip trailer's CRC-32 at the end."""

    def __init__(self, stream: Any, pos: int = 0, crc: int = 0, tail: bytes = b"") -> None:
        self.stream = stream
        self.pos = pos  # uncompressed bytes read so far
        self.crc = crc  # CRC-32 of those bytes
        self.tail = tail[-WINDOW:]  # the last WINDOW bytes read
        self.ahead: dict[int, int] = {}  # uncompressed offset -> bit offset of block starts not passed yet
        self.known = -1  # the furthest block start reported so far
        self.points: list[Point] = []
        self.crcs: dict[int, int] = {}  # the CRC-32 of the bytes before each point kept
        self.taken_crc: int | None = None  # ... before the last point taken

    def read(self, size: int) -> bytes:
        data: bytes = self.stream.read(size)
        end = self.pos + len(data)
        if end > self.known and data:  # block starts within these bytes may not be reported yet
            for bit, offset in self.stream.available_block_offsets().items():
                if offset > self.known:
                    self.ahead[offset] = bit
                    self.known = offset
        view = memoryview(data)
        for offset in sorted(o for o in self.ahead if o <= end):
            bit = self.ahead.pop(offset)
            window = self._window(offset, data) if offset >= self.pos else None
            if window is not None:  # else reported too late to see its window: a point fewer
                self.points.append(Point(bit, offset, window))
                self.crcs[offset] = zlib_ng.crc32(view[: offset - self.pos], self.crc)
        self.crc = zlib_ng.crc32(data, self.crc)
        self.tail = data[-WINDOW:] if len(data) >= WINDOW else (self.tail + data)[-WINDOW:]
        self.pos = end
        return data

    def _window(self, offset: int, data: bytes) -> bytes | None:
        if offset == 0:
            return b""
        first = max(0, offset - WINDOW)  # shorter only near the stream's start
        if first >= self.pos:
            return data[first - self.pos : offset - self.pos]
        if first < self.pos - len(self.tail):
            return None
        return self.tail[len(self.tail) - (self.pos - first) :] + data[: offset - self.pos]

    def take(self, upto: int) -> list[Point]:
        """The points at uncompressed offsets up to `upto`, no longer kept here."""
        taken = [p for p in self.points if p.offset <= upto]
        self.points = self.points[len(taken) :]
        if taken:
            self.taken_crc = self.crcs[taken[-1].offset]
        for point in taken:
            del self.crcs[point.offset]
        return taken


def rejoin_prefix(point: Point) -> tuple[bytes, int]:
    """The start of a raw deflate stream that outputs `point.window` and then goes on with the
    original stream's bits from `point.bit`: (whole prefix bytes, the low bits of the byte where
    the original bits begin).

    A deflate decoder that takes a window and a bit offset (zlib's inflatePrime) is not reachable
    from Python, and rapidgzip goes on from an imported index only to the end of its last chunk in
    one piece. A prefix does both: a stored block holds the window and ends on a byte boundary;
    then empty blocks, which output nothing, take up bits until the original bits continue at the
    same position within their byte, so that every byte after is the original one. An empty
    fixed-Huffman block is 10 bits (2 mod 8: the even positions); an empty dynamic one, written as
    below, 95 bits (7 mod 8: with fixed ones, the odd positions). Any position fits.
    """
    window, shift = point.window, point.bit % 8
    bits = _Bits()
    if shift % 2:
        _empty_dynamic_block(bits)
    while bits.count % 8 != shift:
        bits.put(0b010, 3)  # BFINAL 0, BTYPE 01: fixed Huffman codes
        bits.put(0, 7)  # end of block (256): seven 0 bits
    stored = b"\x00" + struct.pack("<HH", len(window), len(window) ^ 0xFFFF) + window  # BFINAL 0, BTYPE 00
    whole = bits.count // 8
    head = (bits.value & ((1 << (8 * whole)) - 1)).to_bytes(whole, "little")
    return stored + head, bits.value >> (8 * whole)


class _Bits:
    """Bits in deflate's order: each field from its least significant bit, from the first byte's."""

    def __init__(self) -> None:
        self.value = self.count = 0

    def put(self, bits: int, width: int) -> None:
        self.value |= bits << self.count
        self.count += width


# The order in which a dynamic block gives the lengths of the code-length code (RFC 1951, 3.2.7).
_CODE_LENGTH_ORDER = (16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15)


def _empty_dynamic_block(bits: _Bits) -> None:
    """A dynamic-Huffman block with no data, 95 bits. Its codes are complete, as every decoder
    accepts: literal 0 and end-of-block 1 bit each, two distance codes of 1 bit, sent with a
    code-length code of two 1-bit symbols ("length 1" = 0, "repeat a zero 11-138 times" = 1)."""
    bits.put(0b100, 3)  # BFINAL 0, BTYPE 10: dynamic Huffman codes
    bits.put(0, 5)  # HLIT: 257 literal/length codes
    bits.put(1, 5)  # HDIST: 2 distance codes
    bits.put(15, 4)  # HCLEN: all 19 code-length code lengths
    for symbol in _CODE_LENGTH_ORDER:
        bits.put(1 if symbol in (1, 18) else 0, 3)
    bits.put(0, 1)  # literal 0: length 1
    bits.put(1, 1)  # literals 1-138: no code
    bits.put(138 - 11, 7)
    bits.put(1, 1)  # literals 139-255: no code
    bits.put(117 - 11, 7)
    for _ in range(3):  # end of block, and the two distance codes: length 1
        bits.put(0, 1)
    bits.put(1, 1)  # end of block: code 1 (literal 0 has code 0)
