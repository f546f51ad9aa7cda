"""Reads of only the frames a clip uses: on object storage, bytes moved are time and CPU.

A clip of 8 frames from a 24-frame video needs a third of the video's bytes. Each frame's members
(.jpg, .json, .png) are adjacent in the shard, so a frame is one byte span; spans closer than `GAP`
merge into one read, and a clip whose frames fill at least a quarter of the bytes from its first to
its last is one read (a GET costs a round trip and a few ms of client CPU, some MB between frames
cost less). The spans of a video
are read in parallel, and several videos are in flight (`prefetch`), so a 20 ms round trip is
hidden behind decoding. Whole-video reads (stream.py) remain for whole-video items.
"""

from __future__ import annotations

import bisect
import json
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from ..core.errors import OutputError
from .index import IndexedVideo
from .stream import FetchedVideo, Reader, in_flight

GAP = 256 * 1024  # read through gaps up to this many bytes rather than issue another request
COVER, COVER_LIMIT = 4, 32 << 20  # a clip is one read when its frames fill a quarter of it (clip_spans)
Span = tuple[int, int]  # [start, end) in the shard


def frame_spans(entry: IndexedVideo, positions: Sequence[int], gap: int = GAP) -> list[Span]:
    """The byte spans covering the members of the given frames, merged across small gaps."""
    spans = []
    for p in sorted(set(positions)):
        jo, js, po, ps, no, ns = (int(v) for v in entry.members[p])
        spans.append((min(jo, po, no), max(jo + js, po + ps, no + ns)))
    merged: list[Span] = []
    for start, end in spans:
        if merged and start - merged[-1][1] <= gap:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


def clip_spans(entry: IndexedVideo, positions: Sequence[int], gap: int = GAP) -> list[Span]:
    """The reads of a clip: one span from its first frame to its last when the bytes between its
    frames are few (the span at most `COVER` times the frames' own bytes and at most `COVER_LIMIT`:
    a clip cut with skips, frames of a sampling), so that it costs one request, the bytes in
    between costing less than another round trip; else `frame_spans`, read at once in parallel."""
    spans = frame_spans(entry, positions, gap)
    own = sum(end - start for start, end in spans)
    cover = spans[-1][1] - spans[0][0] if spans else 0
    return [(spans[0][0], spans[-1][1])] if spans and cover <= min(COVER * own, COVER_LIMIT) else spans


def fetch_frames(
    reader: Reader, entry: IndexedVideo, positions: Sequence[int], pool: ThreadPoolExecutor | None = None,
    verify: bool = False,
) -> PartialVideo:  # fmt: skip
    """The given frames of a video, read (retried) as `clip_spans` says: the first span in this
    thread, the others at the same time in `pool`; checked as the loader checks every read."""
    spans = clip_spans(entry, positions)
    others = [(s, pool.submit(reader.read, entry.shard, s, e - s)) for s, e in spans[1:]] if pool else []
    start, end = spans[0]
    parts = [(start, reader.read(entry.shard, start, end - start))]
    parts += [(s, future.result()) for s, future in others]
    parts += [(s, reader.read(entry.shard, s, e - s)) for s, e in spans[1 + len(others) :]]
    where = reader.where(entry.shard, start, parts[-1][0] + len(parts[-1][1]) - start)
    return _checked(entry, min(positions), PartialVideo(entry, parts, where, verify))


class PartialVideo(FetchedVideo):
    """A video of which only some frames were read: members are sliced from the span holding them."""

    def __init__(self, entry: IndexedVideo, parts: list[tuple[int, bytes]], where: str, verify: bool) -> None:
        super().__init__(entry, b"", 0, where, verify)
        self.starts = [start for start, _ in parts]
        self.parts = parts

    def _member(self, offset: int, size: int) -> bytes:
        i = bisect.bisect_right(self.starts, offset) - 1
        start, data = self.parts[max(i, 0)]
        if i < 0 or offset + size > start + len(data):
            raise OutputError(f"{self.where}: bytes [{offset}, {offset + size}) were not read")
        return data[offset - start : offset - start + size]


def _checked(entry: IndexedVideo, first: int, video: PartialVideo) -> PartialVideo:
    """The first read frame's `.json` must name this video and frame, as the frames table says."""
    try:
        head = json.loads(video[first]["json"])
    except ValueError:
        head = {}
    if head.get("video_id") != entry.video_id or head.get("frame_name") != str(entry.frame_names[first]):
        raise OutputError(f"{video.where}: samples of video {entry.video_id!r} do not match the frames table")
    return video


def stream_frames(
    reader: Reader, entries: Sequence[IndexedVideo], wanted: Sequence[Sequence[int]], prefetch: int = 4,
    verify: bool = False, ready: PartialVideo | None = None,
) -> Iterator[FetchedVideo]:  # fmt: skip
    """The given videos, in order, each holding at least the frames `wanted` of it; the spans of up
    to `prefetch` videos are read at once, in parallel. The first video is read alone (its clip
    waits for nothing else), the next ones while it is decoded, one and then more (`in_flight`);
    `ready` is the first video already read (priming.py)."""
    depth = max(1, prefetch)
    pool = ThreadPoolExecutor(max_workers=depth * 2, thread_name_prefix="mose-shards-frames")
    pending: deque[tuple[IndexedVideo, int, list[tuple[int, Future[bytes]]]]] = deque()
    todo = deque(zip(entries, wanted, strict=True))

    def submit() -> None:
        entry, positions = todo.popleft()
        spans = clip_spans(entry, positions)
        reads = [(s, pool.submit(reader.read, entry.shard, s, e - s)) for s, e in spans]
        pending.append((entry, min(positions), reads))

    taken = 0
    try:
        if ready is not None and todo:
            todo.popleft()  # read already: the next video is requested while it is decoded
            taken += 1
            while todo and len(pending) < in_flight(depth, taken):
                submit()
            yield ready
        while todo or pending:
            if not pending:  # the start: the first video's reads alone, so that they arrive soonest
                submit()
            entry, first, reads = pending.popleft()
            parts = []
            for start, future in reads:
                data = future.result()
                parts.append((start, data))
            taken += 1
            while todo and len(pending) < in_flight(depth, taken):  # read while this one is decoded
                submit()
            where = reader.where(entry.shard, parts[0][0], parts[-1][0] + len(parts[-1][1]) - parts[0][0])
            yield _checked(entry, first, PartialVideo(entry, parts, where, verify))
    finally:  # on an error or an abandoned pass, reads not started yet never start
        pool.shutdown(wait=True, cancel_futures=True)
