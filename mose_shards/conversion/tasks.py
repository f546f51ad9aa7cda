"""One task = one shard: read its videos, write the tar and its four table parts, mark it done.

A task is a plain picklable object, so any executor (a loop, a process pool, Ray) can run it. Files
are staged locally and moved into place only when complete; the done marker is written last.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

from ..core import layout
from ..core.errors import DataError, OutputError
from ..core.schema import TABLES
from ..core.storage import Store
from .plan import ShardPlan
from .reader import SourceReader
from .records import VideoRecords, build_video
from .sources import SourceVideo
from .writers import ShardWriter, sha256_file, write_table

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


def run_shard(task: ShardTask) -> ShardResult:
    """Build one shard; in strict mode a broken video fails the task with every problem found."""
    store = Store(task.output, task.output_options)
    staging = store.staging_dir()
    if staging:
        os.makedirs(staging, exist_ok=True)
    # Remote outputs stage in the system temp folder; the prefix names whose files they are.
    workdir = tempfile.mkdtemp(prefix=f"mose-shards-{task.plan.name}-", dir=staging)
    try:
        return _build(task, store, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _build(task: ShardTask, store: Store, workdir: str) -> ShardResult:
    plan = task.plan
    rows: dict[str, list[dict[str, Any]]] = {table: [] for table in TABLES}
    skipped: list[dict[str, str]] = []
    errors: list[str] = []
    tar_path = os.path.join(workdir, "shard.tar")
    with (
        SourceReader(task.source, task.source_options, cache=store) as reader,
        ShardWriter(path=tar_path) as writer,
    ):
        for video in plan.videos:
            try:
                records = _read_video(reader, video, task.void_label)
            except DataError as exc:
                if task.on_error == "strict":
                    errors.append(str(exc))
                else:
                    skipped.append({"video_id": video.video_id, "reason": str(exc)})
                continue
            if errors:
                continue  # strict mode keeps checking the rest, but writes nothing more
            for key, members in records.samples:
                writer.write(key, members)
            _collect(rows, records, plan.shard_path)
    if errors:
        return _failed(plan, errors)
    _fill_offsets(rows["frames"], writer.members)
    writer.members = {}  # ~1 KB a frame: gone before the tables are built, the shard's peak
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
        samples=writer.samples,
        videos=videos,
        annotated_frames=annotated,
        masks=masks,
        tables=plan.table_paths,
        skipped=skipped,
    )
    _publish(store, plan, workdir, result)
    return result


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


def _read_video(reader: SourceReader, video: SourceVideo, void_label: int | None) -> VideoRecords:
    count = video.num_frames
    blobs = [video.jpgs.blob(i) for i in range(count)] + [video.pngs.blob(i) for i in range(len(video.pngs))]
    data = reader.read_many(blobs)  # DataError naming the file that cannot be read
    masks = video.mask_of()
    pngs = [None if m is None else data[count + m] for m in masks]
    return build_video(video, data[:count], pngs, void_label)


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
