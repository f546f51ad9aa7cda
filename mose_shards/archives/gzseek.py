"""Reading a .tar.gz by uncompressed offset: one stretch of the stream (seek point to seek point)
decoded at a time by libdeflate, in one call that releases the GIL.

Between two seek points of the index the gzip stream is a run of whole deflate blocks. Put the
first point's window in front as a stored block (`gzindex.rejoin_prefix`, which also shifts the
original bits back to their place in their byte) and an empty final block behind, and the stretch
is a complete raw deflate stream of known output length: one `deflate.deflate_decompress` call (the
`deflate` package: libdeflate, which decodes a whole buffer of known size) decodes it with the GIL
released throughout. rapidgzip (0.16) holds the GIL while it decodes, so a thread reading the next
video's members through it stalls the thread converting the current one; this reader lets the two
run on two cores (measured in `benchmarks/archives.py`). On JPEG frames libdeflate decodes 1.1-1.4x
as fast as zlib-ng and 1.2-1.5x as fast as rapidgzip's own one-threaded decoder.

A task says which members it is about to read (`expect`). A stretch those reads need only the
head of (the last one of a video's frames or masks, where the next video in the tar is not the
next in the shard: a tar whose videos are not in id order) is decoded only that far, by zlib-ng,
which can stop and go on later; whole stretches go through libdeflate, which is faster but decodes
all or nothing. A head copies its decoder's state where it stops and every MiB (a few hundred
are kept, ~42 KB each), so a later read that starts further into the stretch, once the head is
dropped, goes on from there rather than from the seek point. In a tar of shuffled videos these
took what a worker decodes from 2.0x to 1.3x the bytes it reads (1080p videos of 3.5 MB, seek
points 4 MiB apart).

A stretch that does not decode so (a gzip member ends inside it: `cat a.gz b.gz`) is read through
rapidgzip and the same index instead. Decoded stretches are kept (a few) for the reads
that follow: a shard's frames, and its masks, are each one run of the tar.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import deflate
from zlib_ng import zlib_ng

from .gzindex import Table, load_rapidgzip, rejoin_prefix
from .parts import PartsFile

_AHEAD = 4  # stretches of the read queued or decoding in the pool at most
# Decoded stretches kept: those decoded here ahead of their turn (up to _AHEAD), and two for the
# reads that follow (a run goes on where the last read ended; the masks' run beside the frames').
_KEEP = _AHEAD + 2
# A head keeps its decoder's state (a copy) every this many bytes of output and where it
# stops; a later read that starts past one goes on from it instead of from the seek point.
_STATE_EVERY = 1 << 20
_STATES = 256  # decoder states kept per stream (~42 KB each), the least recently used dropped
_FEED = 64 << 10  # compressed bytes handed to zlib-ng per call
_EMPTY_FINAL_BLOCK = 0b011  # BFINAL 1, BTYPE 01 (fixed Huffman), then end-of-block: 7 zero bits


class GzipRanges:
    """A .tar.gz's uncompressed bytes, read by `seek` and `read`, from its GZIDX seek index.

    `open_raw` opens the compressed stream (its parts). With `threads`, the stretches of a read
    after its first are decoded by that many threads meanwhile, each through its own view of the
    parts; while one it needs is decoding there, the reading thread decodes a queued one itself
    rather than wait. Nothing is decoded beyond the read: with workers taking turns at shards, the
    next stretch is often another worker's. rapidgzip reads the stretches libdeflate cannot take
    alone. `read` and `seek` are for one thread at a time."""

    def __init__(self, open_raw: Callable[[], PartsFile], index: bytes, spacing: int, threads: int) -> None:
        self.open_raw = open_raw
        self.raw = open_raw()
        self.table = Table(index)
        self.spacing = spacing
        self.kept: OrderedDict[int, Stretch] = OrderedDict()
        self.pending: OrderedDict[int, Future[Stretch]] = OrderedDict()
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="mose-shards-gunzip") if threads else None
        self.local = threading.local()  # each pool thread's view of the parts
        self.raws: list[PartsFile] = []  # those views, closed with this
        self.lock = threading.Lock()  # the views, the counters, and rapidgzip
        self.pos = 0
        self.needs: dict[int, int] = {}  # stretch -> how far into it the expected reads go
        self.states: OrderedDict[tuple[int, int], tuple[Any, int]] = OrderedDict()  # see _Head
        self.decoded = 0  # uncompressed bytes decoded so far (kept stretches not counted again)
        self.through_rapidgzip = 0  # stretches that libdeflate could not decode alone
        self._rapidgzip: Any | None = None
        self._rapidgzip_raw: PartsFile | None = None

    def expect(self, ranges: Iterable[tuple[int, int]]) -> None:
        """The reads to come, as (start, end) uncompressed offsets (a task's members): a stretch they
        need only the head of is decoded only that far. Replaces what the last call said."""
        needs: dict[int, int] = {}
        for start, end in ranges:
            span = self._span(start, end)
            if span is None:
                continue
            first, last = span
            for j in range(first, last):  # read through to their end
                needs[j] = self._size(j)
            needs[last] = max(needs.get(last, 0), min(end - int(self.table.offsets[last]), self._size(last)))
        self.needs = needs

    def seek(self, offset: int) -> int:
        self.pos = offset
        return offset

    def read(self, size: int) -> bytes:
        start, end = self.pos, self.pos + size
        span = self._span(start, end)
        if span is None:
            return b""
        first, last = span
        pieces = []
        for i in range(first, last + 1):
            lowest = int(self.table.offsets[i])
            self._ahead(i, last, end - int(self.table.offsets[last]))
            begin = max(start, lowest) - lowest
            pieces.append(_slice(self._stretch(i, begin, end - lowest), begin, end - lowest))
        self.pos = start + sum(len(piece) for piece in pieces)
        return b"".join(pieces)

    def _span(self, start: int, end: int) -> tuple[int, int] | None:
        """The first and last stretch holding uncompressed bytes start..end; None when nothing is
        asked, or it is at or past the end of the stream."""
        stop = len(self.table) - 1  # stretches 0..stop-1: the last point is the end of the stream
        first = self.table.before(start)
        if start >= end or not 0 <= first < stop:
            return None
        return first, min(self.table.before(end - 1), stop - 1)

    def _size(self, i: int) -> int:
        return int(self.table.offsets[i + 1]) - int(self.table.offsets[i])

    def _ahead(self, i: int, last: int, tail: int) -> None:
        """Queue the read's stretches after i, up to `last` (needed `tail` bytes far) and up to
        _AHEAD of them."""
        if self.pool is None:
            return
        for j in range(i + 1, min(i + 1 + _AHEAD, last + 1)):
            if j not in self.kept and j not in self.pending:
                need = tail if j == last else self._size(j)
                self.pending[j] = self.pool.submit(self._load_ahead, j, need)

    def _stretch(self, i: int, begin: int, need: int) -> Stretch:
        """Stretch i decoded from `begin` (or before) at least `need` bytes far (all of it when whole)."""
        data = self.kept.get(i)
        if data is not None and (isinstance(data, memoryview) or data.base <= begin):
            return self._keep(i, self._further(i, data, need))
        pending = self.pending.pop(i, None)
        if pending is None or pending.cancel():  # not queued, or still queued: decoded here
            return self._keep(i, self._load(i, self.raw, need, self._state(i, begin)))
        while not pending.done():  # decoding in the pool: meanwhile, one still queued is decoded here
            queued = next((j for j, later in self.pending.items() if later.cancel()), None)
            if queued is None:
                break
            del self.pending[queued]
            self._keep(queued, self._load(queued, self.raw, self.needs.get(queued, self._size(queued))))
        return self._keep(i, self._further(i, pending.result(), need))

    def _further(self, i: int, data: Stretch, need: int) -> Stretch:
        """`data`, decoded on to `need` bytes when it is a head that stops before."""
        if isinstance(data, memoryview) or data.have >= need:
            return data
        had = data.have
        if data.upto(need, self.raw):
            with self.lock:
                self.decoded += data.have - had
            return data
        return self._fallback(i)

    def _keep(self, i: int, data: Stretch) -> Stretch:
        self.kept[i] = data
        self.kept.move_to_end(i)
        while len(self.kept) > _KEEP:
            self.kept.popitem(last=False)
        if isinstance(data, _Head):  # its decoder's states, for reads that start further on
            for offset, inflater, consumed in data.states:
                self.states[(i, offset)] = (inflater, consumed)
                self.states.move_to_end((i, offset))
            data.states.clear()
            while len(self.states) > _STATES:
                self.states.popitem(last=False)
        return data

    def _state(self, i: int, begin: int) -> tuple[int, Any, int] | None:
        """The kept decoder state furthest into stretch i at or before `begin`: (offset, decoder,
        compressed bytes of the stretch's stream consumed)."""
        best = max((offset for j, offset in self.states if j == i and offset <= begin), default=None)
        if best is None:
            return None
        self.states.move_to_end((i, best))
        inflater, consumed = self.states[(i, best)]
        return best, inflater, consumed

    def _load_ahead(self, i: int, need: int) -> Stretch:
        raw = getattr(self.local, "raw", None)
        if raw is None:
            raw = self.local.raw = self.open_raw()
            with self.lock:
                self.raws.append(raw)
        return self._load(i, raw, need)

    def _load(self, i: int, raw: PartsFile, need: int, state: tuple[int, Any, int] | None = None) -> Stretch:
        """Stretch i, whole (libdeflate) unless the reads expected need only its first bytes, or a
        kept decoder `state` well into it is nearer: then zlib-ng, from there, `need` bytes far (a
        later read goes on, from this head or from its decoder's state where it stopped)."""
        size = self._size(i)
        if max(need, self.needs.get(i, size)) < size or (state is not None and state[0] > size // 4):
            stream = _Deflate(self.table, i, raw.total)
            if state is None:
                head = _Head(stream, len(stream.window))
            else:
                offset, inflater, consumed = state
                head = _Head(stream, 0, offset, inflater.copy(), consumed)
            if head.upto(need, raw):
                with self.lock:
                    self.decoded += head.have - head.base
                return head
            return self._fallback(i)
        data = self._decode(i, raw)
        if data is None:
            return self._fallback(i)
        with self.lock:
            self.decoded += len(data)
        return data

    def _fallback(self, i: int) -> memoryview:
        """Stretch i through rapidgzip: the stream has several gzip members and one ends in it."""
        with self.lock:
            data = self._through_rapidgzip(i)
            self.through_rapidgzip += 1
            self.decoded += len(data)
        return data

    def _decode(self, i: int, raw: PartsFile) -> memoryview | None:
        """Stretch i decoded whole by libdeflate in one call; None when it does not decode so (the
        stream has several gzip members)."""
        stream = _Deflate(self.table, i, raw.total)
        want = len(stream.window) + stream.size
        try:
            out = deflate.deflate_decompress(stream.read(0, stream.length, raw), want)
        except deflate.DeflateError:  # bad data, or more output than `want`
            return None
        if len(out) != want:  # a gzip member ends inside the stretch
            return None
        return memoryview(out)[len(stream.window) :]

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


class _Deflate:
    """Stretch i of the index as a raw deflate stream of its own, read from the parts on demand:
    the first point's window as a stored block, then the original bits from that point (the prefix
    of `gzindex.rejoin_prefix` supplies the low bits of the first original byte), cut at the next
    point's bit and closed by an empty final block (unless the original final block is in it)."""

    def __init__(self, table: Table, i: int, total: int) -> None:
        point = table.point(i)
        self.window = point.window
        self.head, self.low = rejoin_prefix(point)
        self.keep = (1 << point.bit % 8) - 1  # the low bits of the first original byte: the prefix's
        self.first = point.bit // 8  # the compressed byte the original bits start in
        end_bit = int(table.bits[i + 1])
        self.size = int(table.offsets[i + 1]) - point.offset
        self.ends_stream = end_bit // 8 >= total - 8  # the original final block is in it
        stop = total if self.ends_stream else -(-end_bit // 8)
        self.original = len(self.head) + stop - self.first  # where the original bytes end in the stream
        self.shift = end_bit % 8
        # The last bytes: from `self.cut` on, the next point's bits are replaced by an empty final block.
        self.cut = self.original - 1 if self.shift else self.original
        self.width = 0 if self.ends_stream else (self.shift + 10 + 7) // 8
        self.length = self.original if self.ends_stream else self.cut + self.width

    def read(self, start: int, size: int, raw: PartsFile) -> memoryview:
        """Bytes start..start+size of the stream (fewer at its end)."""
        end = min(start + size, self.length)
        out = bytearray(max(0, end - start))
        head = len(self.head)
        if start < head:
            out[: min(end, head) - start] = self.head[start:end]
        low, high = max(start, head), min(end, self.original)
        if low < high:  # original bytes
            raw.seek(self.first + low - head)
            if raw.readinto(memoryview(out)[low - start : high - start]) != high - low:
                raise ValueError(f"the compressed stream ends before byte {self.first + high - head}, "
                                 "where its index goes")  # fmt: skip
            if low == head:  # the first original byte: its low bits are the prefix's
                out[head - start] = self._merged(out[head - start])
        if not self.ends_stream and end > self.cut:  # the empty final block, after the kept bits
            tail_bits = 0
            if self.shift:
                byte = out[self.cut - start] if self.cut >= start else self._byte(self.cut, raw)
                tail_bits = byte & ((1 << self.shift) - 1)
            tail = (tail_bits | (_EMPTY_FINAL_BLOCK << self.shift)).to_bytes(self.width, "little")
            at = max(start, self.cut)
            out[at - start : end - start] = tail[at - self.cut : end - self.cut]
        return memoryview(out)

    def _merged(self, byte: int) -> int:
        return (self.low & self.keep) | (byte & (0xFF ^ self.keep))

    def _byte(self, position: int, raw: PartsFile) -> int:
        """The stream's byte at `position`, an original one."""
        raw.seek(self.first + position - len(self.head))
        data = raw.read(1)
        if len(data) != 1:
            raise ValueError("the compressed stream ends before its index does")
        return self._merged(data[0]) if position == len(self.head) else data[0]


class _Head:
    """The head of a stretch: decoded by zlib-ng as far as asked, and further when asked again (the
    decoder keeps its place), from the stretch's seek point (the window output first, `skip` bytes)
    or from a decoder state `base` bytes into it. Its compressed bytes are read as it goes, _FEED at
    a time. It copies its decoder's state every _STATE_EVERY bytes and where it stops (`states`),
    for reads that start further on."""

    def __init__(
        self, stream: _Deflate, skip: int, base: int = 0, inflater: Any = None, consumed: int = 0
    ) -> None:
        self.inflater: Any = inflater if inflater is not None else zlib_ng.decompressobj(-15)
        self.stream: _Deflate | None = stream  # None once whole
        self.at = consumed  # bytes of the stream the decoder has consumed
        self.fed = b""  # bytes after those, read but not consumed yet
        self.out = bytearray()
        self.skip = skip  # the window's bytes at the front of `out`
        self.base = base  # the stretch's offset of out[skip]
        self.size = stream.size
        self.states: list[tuple[int, Any, int]] = []  # (offset, decoder copy, stream bytes consumed)

    @property
    def have(self) -> int:
        """How far into the stretch it is decoded."""
        return self.base + len(self.out) - self.skip

    def upto(self, need: int, raw: PartsFile) -> bool:
        """Decode until `need` bytes of the stretch are out, reading its stream from `raw`; False
        when the stream ends sooner (a gzip member ends in it) or does not decode."""
        want = min(need, self.size)
        try:
            while self.have < want and self.stream is not None and not self.inflater.eof:
                step = min(want - self.have, _STATE_EVERY - self.have % _STATE_EVERY)
                feed = self.fed
                if len(feed) < _FEED // 2:  # more of the stream, read once
                    feed += self.stream.read(self.at + len(feed), _FEED - len(feed), raw)
                more = self.inflater.decompress(feed, step)
                self.fed = self.inflater.unconsumed_tail
                used = len(feed) - len(self.fed)
                self.at += used
                if not more and not used:
                    break  # nothing more comes out: the stream ended
                self.out += more
                mark = self.have % _STATE_EVERY == 0 or self.have == want
                if more and mark and 0 < self.have < self.size:
                    self.states.append((self.have, self.inflater.copy(), self.at))
        except zlib_ng.error:  # type: ignore[misc]
            return False
        if self.have >= self.size or self.inflater.eof:
            self.stream, self.fed = None, b""  # whole, or at its end: nothing more to read
        return self.have >= want


Stretch = memoryview | _Head  # a stretch decoded whole, or its head


def _slice(data: Stretch, start: int, end: int) -> bytes | memoryview:
    """Bytes start..end of a stretch (a head is copied out: it grows when decoded further)."""
    if isinstance(data, memoryview):
        return data[start:end]
    at = data.skip - data.base
    with memoryview(data.out) as view:
        return bytes(view[at + start : at + end])
