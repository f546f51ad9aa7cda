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

WINDOW = 32768
# magic, version, flags, compressed size, uncompressed size, spacing, window size, points
_HEADER = struct.Struct("<5sBBQQIII")
_POINT = struct.Struct("<QQBB")  # compressed byte, uncompressed offset, bits of the byte before, has window


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
    try:
        magic, version, _, _, uncompressed, _, window, count = _HEADER.unpack_from(data)
    except struct.error:
        raise ValueError("not a gzip index (short header)") from None
    if magic != b"GZIDX" or version != 1 or window != WINDOW:
        raise ValueError(f"not a gzip index of version 1 with {WINDOW}-byte windows")
    table = _HEADER.size
    windows = table + count * _POINT.size
    points = []
    for number in range(count):
        try:
            byte, offset, bits, has_window = _POINT.unpack_from(data, table + number * _POINT.size)
        except struct.error:
            raise ValueError("gzip index cut short") from None
        window = b""
        if has_window:
            window = data[windows : windows + WINDOW]
            windows += WINDOW
            if len(window) != WINDOW:
                raise ValueError("gzip index cut short")
        points.append(Point(byte * 8 - bits, offset, window))
    if windows != len(data):
        raise ValueError("gzip index with trailing bytes")
    return points, uncompressed


class Capture:
    """A RapidgzipFile read front to back that keeps a Point (window included) at each block start
    it passes, until `take` hands them on: memory is the points between two takes."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.pos = 0  # uncompressed bytes read so far
        self.tail = b""  # the last WINDOW bytes read
        self.ahead: dict[int, int] = {}  # uncompressed offset -> bit offset of block starts not passed yet
        self.known = -1  # the furthest block start reported so far
        self.points: list[Point] = []

    def read(self, size: int) -> bytes:
        data: bytes = self.stream.read(size)
        end = self.pos + len(data)
        if end > self.known and data:  # block starts within these bytes may not be reported yet
            for bit, offset in self.stream.available_block_offsets().items():
                if offset > self.known:
                    self.ahead[offset] = bit
                    self.known = offset
        for offset in sorted(o for o in self.ahead if o <= end):
            bit = self.ahead.pop(offset)
            window = self._window(offset, data)
            if window is not None:  # else reported too late to see its window: a point fewer
                self.points.append(Point(bit, offset, window))
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
        return taken


def rejoin_prefix(point: Point) -> tuple[bytes, int] | None:
    """The start of a raw deflate stream that outputs `point.window` and then goes on with the
    original stream's bits from `point.bit`: (whole prefix bytes, the low bits of the byte where
    the original bits begin). None when no prefix fits (see below).

    A deflate decoder that takes a window and a bit offset (zlib's inflatePrime) is not reachable
    from Python, and rapidgzip goes on from an imported index only to the end of its last chunk in
    one piece. A prefix can do both: a stored block holds the window (all but its last k bytes),
    then fixed-Huffman blocks hold those k bytes as literals and pad the bit count, so that the
    original bits continue at the same position within their byte and every byte after is the
    original one. Literals are 8 bits below 144 and 9 above, empty blocks 10 bits: the bit count
    reaches any position when some byte near the window's end is 144 or more.
    """
    window, shift = point.window, point.bit % 8
    for k in range(min(len(window), 256) + 1):
        literals = window[len(window) - k :]
        used = 3 + sum(9 if b >= 144 else 8 for b in literals) + 7
        for empty in range(4):
            if (used + 10 * empty) % 8 == shift:
                return _prefix(window[: len(window) - k], literals, empty)
    return None


def _prefix(stored: bytes, literals: bytes, empty: int) -> tuple[bytes, int]:
    head = b"\x00" + struct.pack("<HH", len(stored), len(stored) ^ 0xFFFF) + stored  # BFINAL 0, BTYPE 00
    value = count = 0

    def put(bits: int, width: int, code: bool = False) -> None:  # codes go most significant bit first
        nonlocal value, count
        if code:
            bits = int(f"{bits:0{width}b}"[::-1], 2)
        value |= bits << count
        count += width

    for block in range(1 + empty):
        put(0, 1)  # BFINAL 0
        put(1, 2)  # BTYPE 01: fixed Huffman codes
        for byte in literals if block == 0 else b"":
            put(*((0x30 + byte, 8) if byte < 144 else (0x190 + byte - 144, 9)), code=True)
        put(0, 7, code=True)  # end of block (256)
    whole = count // 8
    tail = value >> (8 * whole)
    return head + (value & ((1 << (8 * whole)) - 1)).to_bytes(whole, "little"), tail
