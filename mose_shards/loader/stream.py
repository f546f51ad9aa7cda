"""Shard bytes -> videos: range reads (coalesced, prefetched, retried, optionally cached), members
sliced by the frames table's offsets into each video's samples, optionally checked by sha256.

Each video occupies one byte range of its shard (from the frames table offsets), so a loader reads
exactly its own videos: consecutive ones in one GET, several GETs in flight to hide latency.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import OutputError
from ..core.storage import StorageOptions, Store
from .cache import ShardCache
from .index import IndexedVideo, Shard
from .retry import RetryPolicy, retried

RUN_LIMIT = 64 * 1024 * 1024  # coalesce adjacent videos into one read up to this many bytes
Sample = dict[str, bytes]  # {"jpg", "png", "json"}: member bytes


@dataclass
class Run:
    """One read: a byte range of a shard covering consecutive videos."""

    shard: Shard
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


class Reader:
    """Byte ranges of a store's shards: retried under a policy, through a cache when there is one."""

    def __init__(self, store: Store, policy: RetryPolicy, cache: ShardCache | None = None) -> None:
        self.store, self.policy, self.cache = store, policy, cache

    def where(self, shard: Shard, start: int, size: int) -> str:
        return f"{self.store.url_of(shard.path)} bytes [{start}, {start + size})"

    def read_range(self, shard: Shard, start: int, size: int) -> bytes:
        """Straight from storage, retried."""

        def attempt() -> bytes:
            try:
                return self.store.read_range(shard.path, start, size)
            except OSError as exc:  # HTTP 416: the object ends before the range starts
                if "not satisfiable" not in str(exc).lower() and "invalidrange" not in str(exc).lower():
                    raise
                where = f"{self.store.url_of(shard.path)}: truncated, wanted {size} bytes at offset {start}"
                raise OutputError(f"{where} ({exc})") from None

        return retried(attempt, self.policy, self.where(shard, start, size))

    def read(self, shard: Shard, start: int, size: int) -> bytes:
        """From the cache's copy of the shard when it can hold it, else from storage."""
        if self.cache is not None:
            data = self.cache.read_range(shard, start, size, self.read_range)
            if data is not None:
                return data
        return self.read_range(shard, start, size)


class FetchedVideo(Sequence[Sample]):
    """A video's frames as samples sliced lazily from the bytes of its run, by the table offsets.

    Slicing by offset instead of walking the tar headers touches only the frames a clip uses. With
    `verify`, each member is checked against the frames table's sha256 when first sliced.
    """

    def __init__(
        self, entry: IndexedVideo, data: bytes, base: int, where: str = "", verify: bool = False
    ) -> None:
        self.entry, self.data, self.base, self.where, self.verify = entry, data, base, where, verify

    def __len__(self) -> int:
        return self.entry.num_frames

    def _member(self, offset: int, size: int) -> bytes:
        return self.data[offset - self.base : offset - self.base + size]

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        jo, js, po, ps, no, ns = (int(v) for v in self.entry.members[index])
        sample = {"jpg": self._member(jo, js), "png": self._member(po, ps), "json": self._member(no, ns)}
        if self.verify:
            self._check(index, sample)
        return sample

    def _check(self, index: int, sample: Sample) -> None:
        entry = self.entry
        if entry.digests is None or entry.keys is None or entry.has_png_digest is None:
            raise OutputError(f"{self.where}: no sha256 digests loaded to verify against")
        checks = [("jpg", 0)] + ([("png", 1)] if entry.has_png_digest[index] else [])
        for ext, row in checks:
            if hashlib.sha256(sample[ext]).digest() != entry.digests[index, row].tobytes():
                raise OutputError(
                    f"{self.where}: sample {entry.keys[index]}: the .{ext} member does not match "
                    "the frames table's sha256"
                )


def split_videos(run: Run, data: bytes, where: str, verify: bool = False) -> Iterator[FetchedVideo]:
    """The videos of a run with their samples; each video's first `.json` is checked against the table."""
    if len(data) != run.end - run.start:
        raise OutputError(f"{where}: truncated read ({len(data)} bytes)")
    for entry in run.videos:
        samples = FetchedVideo(entry, data, run.start, where, verify)
        try:
            head = json.loads(samples[0]["json"])
        except ValueError:
            head = {}
        if head.get("video_id") != entry.video_id or head.get("frame_name") != str(entry.frame_names[0]):
            raise OutputError(f"{where}: samples of video {entry.video_id!r} do not match the frames table")
        yield samples


def in_flight(prefetch: int, taken: int) -> int:
    """How many reads to keep in flight once `taken` reads were handed out: 1, 2, 4, ... up to
    `prefetch`. A slow start: a worker's first clip decodes beside one read, not `prefetch` of them,
    whose client and server CPU (on object storage) would share its cores; the depth that hides
    round trips is reached within a few videos."""
    return max(1, min(prefetch, 1 << max(0, taken - 1)))


def stream_videos(
    reader: Reader, entries: Sequence[IndexedVideo], prefetch: int = 4, verify: bool = False
) -> Iterator[FetchedVideo]:
    """The given videos with their samples, in the given order; up to `prefetch` reads in flight
    (`in_flight`)."""
    todo = deque(runs(entries))
    if not todo:
        return
    pool = ThreadPoolExecutor(max_workers=max(1, prefetch), thread_name_prefix="mose-shards-prefetch")
    pending: deque[tuple[Run, Future[bytes]]] = deque()

    def submit() -> None:
        run = todo.popleft()
        pending.append((run, pool.submit(reader.read, run.shard, run.start, run.end - run.start)))

    taken = 0
    try:
        while todo or pending:
            if not pending:  # the start: the first read alone, so that it arrives soonest
                submit()
            run, future = pending.popleft()
            data = future.result()
            taken += 1
            while todo and len(pending) < in_flight(prefetch, taken):  # read while this one is used
                submit()
            where = reader.where(run.shard, run.start, run.end - run.start)
            yield from split_videos(run, data, where, verify)
    finally:  # on an error or an abandoned pass, reads not started yet never start
        pool.shutdown(wait=True, cancel_futures=True)


def is_s3(fs: Any) -> bool:
    """An s3fs filesystem (it has a session to share and a client to connect)."""
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "s3" in protocols and hasattr(fs, "connect")


def with_session(options: StorageOptions | None, parent: Store | None) -> StorageOptions | None:
    """The storage options, plus the parent process's S3 session when there is one to reuse."""
    session = getattr(parent.fs, "session", None) if parent is not None and is_s3(parent.fs) else None
    if session is None or (options and "session" in options):
        return options
    return {**(options or {}), "session": session}
