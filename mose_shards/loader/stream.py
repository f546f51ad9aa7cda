"""Shard bytes -> videos: range reads (coalesced, prefetched, optionally cached), members sliced by
the frames table's offsets into each video's samples.

Each video occupies one byte range of its shard (from the frames table offsets), so a loader reads
exactly its own videos: consecutive ones in one GET, several GETs in flight to hide latency.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..core.errors import OutputError
from ..core.storage import Store
from .cache import ShardCache
from .index import IndexedVideo

RUN_LIMIT = 64 * 1024 * 1024  # coalesce adjacent videos into one read up to this many bytes
Sample = dict[str, bytes]  # {"jpg", "png", "json"}: member bytes


@dataclass
class Run:
    """One read: a byte range of a shard covering consecutive videos."""

    shard: str
    start: int
    end: int
    videos: list[IndexedVideo] = field(default_factory=list)


def runs(entries: Iterable[IndexedVideo], limit: int = RUN_LIMIT) -> list[Run]:
    """Group videos that follow each other in a shard into single reads (order kept)."""
    out: list[Run] = []
    for entry in entries:
        last = out[-1] if out else None
        if last and last.shard == entry.shard and last.end == entry.start and entry.end - last.start <= limit:
            last.end = entry.end
            last.videos.append(entry)
        else:
            out.append(Run(entry.shard, entry.start, entry.end, [entry]))
    return out


def fetch(store: Store, run: Run, cache: ShardCache | None) -> bytes:
    """The bytes of a run, from the cache's local copy of the shard when there is one."""
    if cache is not None:
        data = cache.read_range(store, run.shard, run.start, run.end - run.start)
        if data is not None:
            return data
    return store.read_range(run.shard, run.start, run.end - run.start)


class FetchedVideo(Sequence[Sample]):
    """A video's frames as samples sliced lazily from the bytes of its run, by the table offsets.

    Slicing by offset instead of walking the tar headers touches only the frames a clip uses.
    """

    def __init__(self, entry: IndexedVideo, data: bytes, base: int) -> None:
        self.entry, self.data, self.base = entry, data, base

    def __len__(self) -> int:
        return self.entry.num_frames

    def _member(self, offset: int, size: int) -> bytes:
        return self.data[offset - self.base : offset - self.base + size]

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        jo, js, po, ps, no, ns = self.entry.members[index]
        return {"jpg": self._member(jo, js), "png": self._member(po, ps), "json": self._member(no, ns)}


def split_videos(run: Run, data: bytes, where: str) -> Iterator[tuple[IndexedVideo, FetchedVideo]]:
    """The videos of a run with their samples; each video's first `.json` is checked against the table."""
    if len(data) != run.end - run.start:
        raise OutputError(f"{where}: truncated read ({len(data)} bytes)")
    for entry in run.videos:
        samples = FetchedVideo(entry, data, run.start)
        try:
            head = json.loads(samples[0]["json"])
        except ValueError:
            head = {}
        if head.get("video_id") != entry.video_id or head.get("frame_name") != entry.frame_names[0]:
            raise OutputError(f"{where}: samples of video {entry.video_id!r} do not match the frames table")
        yield entry, samples


def stream_videos(
    store: Store, entries: Sequence[IndexedVideo], cache: ShardCache | None = None, prefetch: int = 4
) -> Iterator[tuple[IndexedVideo, FetchedVideo]]:
    """The given videos with their samples, in the given order; up to `prefetch` reads in flight."""
    todo = deque(runs(entries))
    if not todo:
        return
    with ThreadPoolExecutor(max_workers=max(1, prefetch)) as pool:
        pending: deque[tuple[Run, Future[bytes]]] = deque()
        while todo or pending:
            while todo and len(pending) < max(1, prefetch):
                run = todo.popleft()
                pending.append((run, pool.submit(fetch, store, run, cache)))
            run, future = pending.popleft()
            where = f"{store.url_of(run.shard)}[{run.start}:{run.end}]"
            yield from split_videos(run, future.result(), where)
