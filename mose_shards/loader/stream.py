"""Shard bytes -> videos: range reads (coalesced, prefetched, optionally cached), WebDataset tar
iteration, samples grouped into videos.

Each video occupies one byte range of its shard (from the frames table offsets), so a loader reads
exactly its own videos: consecutive ones in one GET, several GETs in flight to hide latency.
"""

from __future__ import annotations

import io
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from webdataset.tariterators import group_by_keys, tar_file_iterator

from ..errors import OutputError
from ..storage import Store
from .cache import ShardCache
from .index import VideoEntry

RUN_LIMIT = 64 * 1024 * 1024  # coalesce adjacent videos into one read up to this many bytes
Sample = dict[str, Any]  # {"__key__", "jpg": bytes, "png": bytes, "json": dict}


@dataclass
class Run:
    """One read: a byte range of a shard covering consecutive videos."""

    shard: str
    start: int
    end: int
    videos: list[VideoEntry] = field(default_factory=list)


def runs(entries: Iterable[VideoEntry], limit: int = RUN_LIMIT) -> list[Run]:
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
        local = cache.get(store, run.shard)
        if local is not None:
            with open(local, "rb") as fh:
                fh.seek(run.start)
                data = fh.read(run.end - run.start)
            if len(data) == run.end - run.start:
                return data
    return store.read_range(run.shard, run.start, run.end - run.start)


def parse_samples(data: bytes, where: str) -> Iterator[Sample]:
    """Tar bytes (starting at a member header) -> samples with decoded `.json`."""
    try:
        files = ({**f, "__url__": where} for f in tar_file_iterator(io.BytesIO(data)))
        for sample in group_by_keys(files):
            sample["json"] = json.loads(sample["json"])
            yield sample
    except (OSError, KeyError, ValueError) as exc:
        raise OutputError(f"{where}: damaged shard data ({exc})") from None


def split_videos(
    run: Run, samples: Iterable[Sample], where: str
) -> Iterator[tuple[VideoEntry, list[Sample]]]:
    """Samples of a run -> (entry, its frames in order), checked against the frames table."""
    it = iter(samples)
    for entry in run.videos:
        frames = [next(it, None) for _ in range(entry.num_frames)]
        ok = all(f is not None and f["json"]["video_id"] == entry.video_id for f in frames)
        if not ok:
            raise OutputError(f"{where}: samples of video {entry.video_id!r} do not match the frames table")
        yield entry, frames  # type: ignore[misc]


def stream_videos(
    store: Store, entries: Sequence[VideoEntry], cache: ShardCache | None = None, prefetch: int = 4
) -> Iterator[tuple[VideoEntry, list[Sample]]]:
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
            yield from split_videos(run, parse_samples(future.result(), where), where)
