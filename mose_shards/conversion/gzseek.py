"""Reading a .tar.gz by uncompressed offset: one stretch of the stream (seek point to seek point)
decoded at a time by zlib-ng, in one call that releases the GIL.

Between two seek points of the index the gzip stream is a run of whole deflate blocks. Put the
first point's window in front as a stored block (`gzindex.rejoin_prefix`, which also shifts the
original bits back to their place in their byte) and an empty final block behind, and the stretch
is a complete raw deflate stream of known output length: one `zlib_ng.decompress` call decodes it
with the GIL released throughout. rapidgzip (0.16) holds the GIL while it decodes, so a thread
reading the next video's members through it stalls the thread converting the current one; this
reader lets the two run on two cores (measured in `benchmarks/archives.py`). zlib-ng also decodes
this data ~1.2x faster than rapidgzip's own one-threaded decoder.

A stretch that does not decode so (a gzip member ends inside it: `cat a.gz b.gz`) is read through
rapidgzip and the same index instead. Decoded stretches are kept (a few) for the reads
that follow: a shard's frames, and its masks, are each one run of the tar.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from zlib_ng import zlib_ng

from .gzindex import Table, rejoin_prefix
from .gzlist import load_rapidgzip
from .parts import PartsFile

_AHEAD = 4  # stretches of the read queued or decoding in the pool at most
# Decoded stretches kept: those decoded here ahead of their turn (up to _AHEAD), and two for the
# reads that follow (a run goes on where the last read ended; the masks' run beside the frames').
_KEEP = _AHEAD + 2
_EMPTY_FINAL_BLOCK = 0b011  # BFINAL 1, BTYPE 01 (fixed Huffman), then end-of-block: 7 zero bits


class GzipRanges:
    """A .tar.gz's uncompressed bytes, read by `seek` and `read`, from its GZIDX seek index.

    `open_raw` opens the compressed stream (its parts). With `threads`, the stretches of a read
    after its first are decoded by that many threads meanwhile, each through its own view of the
    parts; while one it needs is decoding there, the reading thread decodes a queued one itself
    rather than wait. Nothing is decoded beyond the read: with workers taking turns at shards, the
    next stretch is often another worker's. rapidgzip reads the stretches zlib-ng cannot take
    alone. `read` and `seek` are for one thread at a time."""

    def __init__(self, open_raw: Callable[[], PartsFile], index: bytes, spacing: int, threads: int) -> None:
        self.open_raw = open_raw
        self.raw = open_raw()
        self.table = Table(index)
        self.spacing = spacing
        self.kept: OrderedDict[int, memoryview] = OrderedDict()
        self.pending: OrderedDict[int, Future[memoryview]] = OrderedDict()
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="mose-shards-gunzip") if threads else None
        self.local = threading.local()  # each pool thread's view of the parts
        self.raws: list[PartsFile] = []  # those views, closed with this
        self.lock = threading.Lock()  # the views, the counters, and rapidgzip
        self.pos = 0
        self.decoded = 0  # uncompressed bytes decoded so far (kept stretches not counted again)
        self.through_rapidgzip = 0  # stretches that zlib-ng could not decode alone
        self._rapidgzip: Any | None = None
        self._rapidgzip_raw: PartsFile | None = None

    def seek(self, offset: int) -> int:
        self.pos = offset
        return offset

    def read(self, size: int) -> bytes:
        start, end = self.pos, self.pos + size
        stop = len(self.table) - 1  # stretches 0..stop-1: the last point is the end of the stream
        first = self.table.before(start)
        if start >= end or not 0 <= first < stop:
            return b""  # nothing asked, or at or past the end of the stream
        last = min(self.table.before(end - 1), stop - 1)
        pieces = []
        for i in range(first, last + 1):
            self._ahead(i, last)
            lowest = int(self.table.offsets[i])
            pieces.append(self._stretch(i)[max(start, lowest) - lowest : end - lowest])
        self.pos = start + sum(len(piece) for piece in pieces)
        return b"".join(pieces)

    def _ahead(self, i: int, last: int) -> None:
        """Queue the read's stretches after i, up to `last` and up to _AHEAD of them."""
        if self.pool is None:
            return
        for j in range(i + 1, min(i + 1 + _AHEAD, last + 1)):
            if j not in self.kept and j not in self.pending:
                self.pending[j] = self.pool.submit(self._load_ahead, j)

    def _stretch(self, i: int) -> memoryview:
        data = self.kept.get(i)
        if data is not None:
            self.kept.move_to_end(i)
            return data
        pending = self.pending.pop(i, None)
        if pending is None or pending.cancel():  # not queued, or still queued: decoded here
            return self._keep(i, self._load(i, self.raw))
        while not pending.done():  # decoding in the pool: meanwhile, one still queued is decoded here
            queued = next((j for j, later in self.pending.items() if later.cancel()), None)
            if queued is None:
                break
            del self.pending[queued]
            self._keep(queued, self._load(queued, self.raw))
        return self._keep(i, pending.result())

    def _keep(self, i: int, data: memoryview) -> memoryview:
        self.kept[i] = data
        while len(self.kept) > _KEEP:
            self.kept.popitem(last=False)
        return data

    def _load_ahead(self, i: int) -> memoryview:
        raw = getattr(self.local, "raw", None)
        if raw is None:
            raw = self.local.raw = self.open_raw()
            with self.lock:
                self.raws.append(raw)
        return self._load(i, raw)

    def _load(self, i: int, raw: PartsFile) -> memoryview:
        data = self._decode(i, raw)
        if data is None:
            with self.lock:
                data = self._through_rapidgzip(i)
                self.through_rapidgzip += 1
        with self.lock:
            self.decoded += len(data)
        return data

    def _decode(self, i: int, raw: PartsFile) -> memoryview | None:
        """Stretch i decoded by zlib-ng in one call; None when it does not decode so (the stream
        has several gzip members)."""
        point = self.table.point(i)
        head, low = rejoin_prefix(point)
        end_bit, size = int(self.table.bits[i + 1]), int(self.table.offsets[i + 1]) - point.offset
        first = point.bit // 8
        ends_stream = end_bit // 8 >= raw.total - 8  # the original final block is in it
        stop = raw.total if ends_stream else -(-end_bit // 8)
        body = len(head) + stop - first
        buffer = bytearray(body + 3)
        buffer[: len(head)] = head
        raw.seek(first)
        if raw.readinto(memoryview(buffer)[len(head) : body]) != stop - first:
            raise ValueError(f"the compressed stream ends before byte {stop}, where its index goes")
        keep = (1 << point.bit % 8) - 1  # the low bits of the first byte come from the prefix
        buffer[len(head)] = (low & keep) | (buffer[len(head)] & (0xFF ^ keep))
        if not ends_stream:  # cut at the next point's bit and close with an empty final block
            shift = end_bit % 8
            tail_bits = (buffer[body - 1] & ((1 << shift) - 1)) if shift else 0
            at = body - 1 if shift else body
            value = tail_bits | (_EMPTY_FINAL_BLOCK << shift)
            width = (shift + 10 + 7) // 8
            buffer[at : at + width] = value.to_bytes(width, "little")
            body = at + width
        want = len(point.window) + size
        try:
            out = zlib_ng.decompress(memoryview(buffer)[:body], -15, want)
        except zlib_ng.error:  # type: ignore[misc]
            return None
        if len(out) != want:  # a gzip member ends inside the stretch
            return None
        return memoryview(out)[len(point.window) :]

    def _through_rapidgzip(self, i: int) -> memoryview:
        if self._rapidgzip is None:
            self._rapidgzip_raw = self.open_raw()
            self._rapidgzip = load_rapidgzip().RapidgzipFile(
                self._rapidgzip_raw, parallelization=1, chunk_size=self.spacing
            )
            self._rapidgzip.import_index(io.BytesIO(self.table.data))
        first, end = int(self.table.offsets[i]), int(self.table.offsets[i + 1])
        self._rapidgzip.seek(first)
        data: bytes = self._rapidgzip.read(end - first)
        if len(data) != end - first:
            raise ValueError(f"the gzip stream ends at {first + len(data)}, before its index's end {end}")
        return memoryview(data)

    def close(self) -> None:
        for pending in self.pending.values():
            pending.cancel()
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        self.kept.clear()
        self.pending.clear()
        if self._rapidgzip is not None:
            self._rapidgzip.close()
            self._rapidgzip = None
        for raw in (self.raw, *self.raws, self._rapidgzip_raw):
            if raw is not None:
                raw.close()
