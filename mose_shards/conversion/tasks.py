"""One task = one shard: read its videos, write the tar and its four table parts, mark it done.

A task is a plain picklable object, so any executor (a loop, a process pool, Ray) can run it. Files
are staged locally and moved into place only when complete; the done marker is written last.

A shard can also be built by parts (`ShardTask.part`), so that the last shards of a run keep every
local worker busy: each part converts a run of the shard's videos into a tar segment and its rows,
in a folder the parts share on this machine; the part that finishes last joins them into the shard,
byte for byte the one a single task writes, and publishes it.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import pickle
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..core import layout
from ..core.errors import DataError, OutputError
from ..core.images import DEFAULT_MAX_PIXELS
from ..core.schema import TABLES
from ..core.storage import Store
from .plan import ShardPlan
from .reader import DEFAULT_MAX_MEMBER_SIZE, SourceReader
from .records import VideoRecords, build_video
from .sources import SourceVideo
from .videos import Blob
from .writers import ShardWriter, join_segments, sha256_file, write_table

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardTask:
    plan: ShardPlan
    source: str
    output: str
    void_label: int | None
    on_error: str = "strict"
    source_options: dict[str, Any] = field(default_factory=dict)
    output_options: dict[str, Any] = field(default_factory=dict)
    part: tuple[int, int] | None = None  # (k, n): the k-th of n runs of the shard's videos
    max_pixels: int = DEFAULT_MAX_PIXELS  # a frame or mask declaring more is refused (per video)
    run: str = ""  # the run's id: the parts of one shard meet in a folder named by it
    max_member_size: int = DEFAULT_MAX_MEMBER_SIZE  # a larger source file is refused (a broken video)


@dataclass(frozen=True)
class PartDone:
    """One part of a shard is converted; the shard is not complete yet (another part joins it)."""

    shard: str


@dataclass(frozen=True)
class ShardResult:
    """What the manifest needs to know of a finished shard (also its done marker's content)."""

    split: str
    index: int
    path: str
    bytes: int
    sha256: str
    samples: int
    videos: int
    annotated_frames: int
    masks: int
    tables: dict[str, str]
    skipped: list[dict[str, str]]
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> builtins.bytes:
        return json.dumps(asdict(self), sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: builtins.bytes) -> ShardResult:
        return cls(**json.loads(data))


def done_marker(plan: ShardPlan) -> str:
    return layout.done_marker(plan.split, plan.index)


def warm() -> None:
    """Nothing: a worker unpickling it imports this module, and with it the task code."""


def run_shard(task: ShardTask) -> ShardResult | PartDone:
    """Build one shard (or a part of it); in strict mode a broken video fails the shard with every
    problem found."""
    store = Store(task.output, task.output_options)
    staging = store.staging_dir()
    if staging:
        os.makedirs(staging, exist_ok=True)
    if task.part is not None:
        return _run_part(task, store, staging or tempfile.gettempdir())
    # Remote outputs stage in the system temp folder; the prefix names whose files they are.
    workdir = tempfile.mkdtemp(prefix=f"mose-shards-{task.plan.name}-", dir=staging)
    try:
        tar_path = os.path.join(workdir, "shard.tar")
        with ShardWriter(path=tar_path) as writer:
            converted = _convert(task, store, task.plan.videos, writer)
        if converted.errors:
            return _failed(task.plan, converted.errors)
        return _finish(task, store, workdir, converted, writer.members)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class _Converted:
    """A run of videos converted: their table rows, skipped videos, errors (strict) and samples."""

    rows: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {table: [] for table in TABLES})
    skipped: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    samples: int = 0

    def extend(self, other: _Converted) -> None:
        for table in TABLES:
            self.rows[table] += other.rows[table]
        self.skipped += other.skipped
        self.errors += other.errors
        self.samples += other.samples


def _convert(task: ShardTask, store: Store, videos: Sequence[SourceVideo], writer: ShardWriter) -> _Converted:
    out = _Converted()
    with SourceReader(
        task.source, task.source_options, cache=store, max_member_size=task.max_member_size
    ) as reader:
        if any(_gzipped(video) for video in videos):  # tell the gzip streams what is coming
            reader.expect([blob for video in videos for blob in _blobs(video)])
        for video, read in _read_ahead(reader, videos):
            try:
                if isinstance(read, DataError):
                    raise read
                records = _build(video, read, task.void_label, task.max_pixels)
            except DataError as exc:
                if task.on_error == "strict":
                    out.errors.append(str(exc))
                else:
                    out.skipped.append({"video_id": video.video_id, "reason": str(exc)})
                continue
            if out.errors:
                continue  # strict mode keeps checking the rest, but writes nothing more
            for key, members in records.samples:
                writer.write(key, members)
            _collect(out.rows, records, task.plan.shard_path)
    out.samples = writer.samples
    return out


def _finish(
    task: ShardTask,
    store: Store,
    workdir: str,
    converted: _Converted,
    members: dict[tuple[str, str], tuple[int, int]],
) -> ShardResult:
    """The shard's tar is at workdir/shard.tar: its tables, its result, and publish them."""
    plan, rows = task.plan, converted.rows
    tar_path = os.path.join(workdir, "shard.tar")
    _fill_offsets(rows["frames"], members)
    members.clear()  # ~1 KB a frame: gone before the tables are built, the shard's peak
    videos, masks = len(rows["videos"]), len(rows["masks"])
    annotated = sum(1 for r in rows["frames"] if r["has_mask"])
    for table in TABLES:  # each table's rows freed once written
        write_table(rows.pop(table), table, os.path.join(workdir, f"{table}.parquet"))
    result = ShardResult(
        split=plan.split,
        index=plan.index,
        path=plan.shard_path,
        bytes=os.path.getsize(tar_path),
        sha256=sha256_file(tar_path),
        samples=converted.samples,
        videos=videos,
        annotated_frames=annotated,
        masks=masks,
        tables=plan.table_paths,
        skipped=converted.skipped,
    )
    _publish(store, plan, workdir, result)
    return result


def part_videos(videos: Sequence[SourceVideo], k: int, n: int) -> list[SourceVideo]:
    """The k-th of n runs of videos, cut by frame count (a video goes where its first frame falls)."""
    total = sum(v.num_frames for v in videos)
    out, seen = [], 0
    for video in videos:
        if seen * n // max(total, 1) == k:
            out.append(video)
        seen += video.num_frames
    return out


def _run_part(task: ShardTask, store: Store, staging: str) -> ShardResult | PartDone:
    """Convert this part into a segment and its rows; the part finishing last joins the shard."""
    assert task.part is not None
    k, n = task.part
    folder = os.path.join(staging, f"mose-shards-{task.plan.name}-parts-{task.run}")
    os.makedirs(folder, exist_ok=True)
    with ShardWriter(path=os.path.join(folder, f"segment-{k}.tar"), trailer=False) as writer:
        converted = _convert(task, store, part_videos(task.plan.videos, k, n), writer)
    with open(os.path.join(folder, f"part-{k}.pickle"), "wb") as fh:
        pickle.dump(converted, fh, protocol=pickle.HIGHEST_PROTOCOL)
    _touch(os.path.join(folder, f"done-{k}"))  # after its files: a part seen done is complete
    # Each part marks itself done before it looks, so the last to finish sees every mark; when two
    # finish together and both see them all, the exclusive claim lets exactly one of them join.
    if not all(os.path.exists(os.path.join(folder, f"done-{j}")) for j in range(n)):
        return PartDone(task.plan.name)
    try:
        _touch(os.path.join(folder, "join"), exclusive=True)
    except FileExistsError:
        return PartDone(task.plan.name)
    try:
        return _join(task, store, folder, n)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _join(task: ShardTask, store: Store, folder: str, n: int) -> ShardResult:
    converted = _Converted()
    for j in range(n):
        with open(os.path.join(folder, f"part-{j}.pickle"), "rb") as fh:
            converted.extend(pickle.load(fh))  # written by our own part tasks, this run
    if converted.errors:
        return _failed(task.plan, converted.errors)
    segments = [os.path.join(folder, f"segment-{j}.tar") for j in range(n)]
    members = join_segments(segments, os.path.join(folder, "shard.tar"))
    for segment in segments:
        os.remove(segment)
    return _finish(task, store, folder, converted, members)


def _touch(path: str, exclusive: bool = False) -> None:
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY | (os.O_EXCL if exclusive else 0), 0o644))


PARTS = 4  # parts per tail shard: ~a quarter shard each, so the workers end within ~1 s of each other


def split_tail(tasks: list[ShardTask], workers: int, run: str, parts: int = PARTS) -> list[ShardTask]:
    """The last `workers` shard tasks as `parts` parts each, largest first, so no worker idles
    while the last shards are built (local workers only: a shard's parts meet in a folder on this
    machine)."""
    if workers < 2:
        return tasks
    cut = max(0, len(tasks) - workers)
    tail = sorted(tasks[cut:], key=lambda t: -t.plan.estimated_bytes)  # stable: plan order on ties
    return [*tasks[:cut], *(replace(t, part=(k, parts), run=run) for t in tail for k in range(parts))]


def _publish(store: Store, plan: ShardPlan, workdir: str, result: ShardResult) -> None:
    """Move the finished files into place, the done marker last; OutputError naming what failed."""
    moves = [(os.path.join(workdir, "shard.tar"), plan.shard_path)]
    moves += [(os.path.join(workdir, f"{table}.parquet"), plan.table_path(table)) for table in TABLES]
    try:
        for local, target in moves:
            store.upload(local, target)
        target = done_marker(plan)
        store.write(target, result.to_json())
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise OutputError(f"{store.url_of(target)}: cannot write ({reason})") from None


def _read_ahead(
    reader: SourceReader, videos: Sequence[SourceVideo]
) -> Iterator[tuple[SourceVideo, list[bytes] | DataError]]:
    """Each video with its bytes (or the error naming what could not be read), while the next one
    is read in a thread: a .tar.gz stretch decodes, or an object store answers, while this thread
    converts (measured in benchmarks/archives.py). Memory: two videos' bytes at most."""
    if not videos:
        return
    with ThreadPoolExecutor(1, thread_name_prefix="mose-shards-read") as pool:
        ahead = pool.submit(_read_bytes, reader, videos[0])
        for i, video in enumerate(videos):
            current = ahead
            if i + 1 < len(videos):  # queued behind `current`: reads stay in order, one ahead
                ahead = pool.submit(_read_bytes, reader, videos[i + 1])
            try:
                read: list[bytes] | DataError = current.result()
            except DataError as exc:
                read = exc
            yield video, read


def _read_bytes(reader: SourceReader, video: SourceVideo) -> list[bytes]:
    """The bytes of the video's frames, then of its masks; DataError naming one that cannot be read."""
    return reader.read_many(_blobs(video))


def _gzipped(video: SourceVideo) -> bool:
    """The video's frames or masks are read through a gzip stream."""
    archives = (video.jpgs.archive, video.pngs.archive)
    return any(archive is not None and archive.kind == "tar.gz" for archive in archives)


def _blobs(video: SourceVideo) -> list[Blob]:
    """The video's frames, then its masks."""
    frames = [video.jpgs.blob(i) for i in range(video.num_frames)]
    return frames + [video.pngs.blob(i) for i in range(len(video.pngs))]


def _build(video: SourceVideo, data: list[bytes], void_label: int | None, max_pixels: int) -> VideoRecords:
    count = video.num_frames
    masks = video.mask_of()
    pngs = [None if m is None else data[count + m] for m in masks]
    return build_video(video, data[:count], pngs, void_label, max_pixels)


def _collect(rows: dict[str, list[dict[str, Any]]], records: VideoRecords, shard: str) -> None:
    rows["videos"].append({**records.video, "shard": shard})
    # The offsets' keys now, filled by _fill_offsets: a dict grown later takes ~2x the memory.
    rows["frames"] += [{**r, "shard": shard, **_OFFSET_KEYS} for r in records.frames]
    rows["masks"] += records.masks
    rows["objects"] += records.objects


_OFFSET_KEYS = dict.fromkeys(f"{ext}_{what}" for ext in ("jpg", "png", "json") for what in ("offset", "size"))


def _fill_offsets(frames: list[dict[str, Any]], members: dict[tuple[str, str], tuple[int, int]]) -> None:
    for row in frames:
        for ext in ("jpg", "png", "json"):
            offset, size = members[(row["key"], ext)]
            row[f"{ext}_offset"], row[f"{ext}_size"] = offset, size


def _failed(plan: ShardPlan, errors: list[str]) -> ShardResult:
    return ShardResult(plan.split, plan.index, plan.shard_path, 0, "", 0, 0, 0, 0, {}, [], errors)
