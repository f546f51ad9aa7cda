"""Restore the raw tree from an output: `DEST/<split>/JPEGImages/<video>/<frame>.jpg` and
`DEST/<split>/Annotations/<video>/<frame>.png` (only where the frame has a mask), byte for byte.

Each shard is streamed once; a sample's `.json` member says where its files go. Names taken from a
shard are checked to be single path components, so a crafted shard cannot write outside DEST.
Where the objects have categories (a YouTube-VOS source), `DEST/<split>/meta.json` is written again
from the tables: the same categories and frames, not the same bytes as the original file.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..core import manifest as manifest_mod
from ..core.errors import LayoutError, OutputError
from ..core.layout import MEMBERS, name_problem
from ..core.storage import StorageOptions, Store
from ..core.tables import read_part
from ..core.tarfmt import iter_samples

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (frames exported, total)
IMAGES_DIR, MASKS_DIR = "JPEGImages", "Annotations"


@dataclass(frozen=True)
class ExportResult:
    frames: int
    masks: int
    videos: int


BATCH_BYTES = 8_000_000  # written as one batch of concurrent PUTs on object stores
BATCH_FILES = 256


def export(
    url: str,
    dest: str,
    *,
    storage_options: StorageOptions | None = None,
    dest_options: StorageOptions | None = None,
    workers: int = 1,
    progress: Progress | None = None,
) -> ExportResult:
    """Write the raw tree of the output at `url` into `dest` (local or URL), which must be empty;
    `workers` shards at a time (spawned processes), small files written in batches."""
    store, doc = manifest_mod.read(url, storage_options)
    target = Store(dest, dest_options)
    if target.listdir(""):
        raise OutputError(f"{target.url}: not empty; export into an empty or new folder")
    total = sum(split["frames"] for split in doc["splits"].values())
    jobs = [
        _Job(store.url, store.storage_options, target.url, target.storage_options, shard["path"])
        for split in doc["splits"].values()
        for shard in split["shards"]
    ]
    frames = masks = videos = 0
    pool = None
    if workers > 1 and len(jobs) > 1 and not (store.in_process or target.in_process):
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context)
    try:
        for counts in pool.map(_export_shard, jobs) if pool else map(_export_shard, jobs):
            frames, masks, videos = frames + counts[0], masks + counts[1], videos + counts[2]
            if progress:
                progress(frames, total)
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    for name, split in doc["splits"].items():
        meta = _meta(store, split["tables"])
        if meta is not None:
            target.write(f"{name}/meta.json", (json.dumps(meta, indent=1) + "\n").encode())
    return ExportResult(frames=frames, masks=masks, videos=videos)


@dataclass(frozen=True)
class _Job:
    """One shard to export, picklable for a worker process."""

    url: str
    options: dict[str, Any]
    dest: str
    dest_options: dict[str, Any]
    shard: str


def _export_shard(job: _Job) -> tuple[int, int, int]:
    """(frames, masks, videos) written from one shard (a video never spans two shards)."""
    store, target = Store(job.url, job.options), Store(job.dest, job.dest_options)
    frames = masks = 0
    videos: set[tuple[str, str]] = set()
    batch: dict[str, bytes] = {}
    size = 0
    for info, members in _samples(store, job.shard):
        for rel, data in _files(info, members):
            batch[rel] = data
            size += len(data)
            masks += rel.endswith(".png")
        frames += 1
        videos.add((info["split"], info["video_id"]))
        if size >= BATCH_BYTES or len(batch) >= BATCH_FILES:
            target.write_many(batch)
            batch, size = {}, 0
    target.write_many(batch)
    return frames, masks, len(videos)


def _meta(store: Store, tables: dict[str, list[str]]) -> dict[str, Any] | None:
    """A YouTube-VOS meta.json from the objects (categories) and masks (frames) tables; None without
    categories."""
    objects = _rows(store, tables["objects"], ["video_id", "object_id", "category"])
    if not any(row["category"] is not None for row in objects):
        return None
    frames: dict[tuple[str, int], list[str]] = {}
    for row in _rows(store, tables["masks"], ["video_id", "object_id", "frame_name"]):
        frames.setdefault((row["video_id"], row["object_id"]), []).append(row["frame_name"])
    videos: dict[str, Any] = {}
    for row in sorted(objects, key=lambda r: (r["video_id"], r["object_id"])):
        entry = {"category": row["category"], "frames": frames.get((row["video_id"], row["object_id"]), [])}
        videos.setdefault(row["video_id"], {"objects": {}})["objects"][str(row["object_id"])] = entry
    return {"videos": videos}


def _rows(store: Store, parts: list[str], columns: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for rel in parts:
        rows += read_part(store, rel, columns).to_pylist()
    return rows


def _samples(store: Store, path: str) -> Iterator[tuple[dict[str, Any], dict[str, bytes]]]:
    """(parsed .json, {ext: bytes}) per sample of one shard, in tar order."""
    where = store.url_of(path)
    try:
        with store.open(path, "rb") as raw:
            for key, members in iter_samples(raw, where):
                yield _parsed(where, key, members), members
    except LayoutError as exc:  # names the shard and what is wrong with it
        raise OutputError(f"{exc}; run mose-shards verify") from None


def _parsed(where: str, key: str, members: dict[str, bytes]) -> dict[str, Any]:
    if set(members) != set(MEMBERS):
        raise OutputError(f"{where}: sample {key} has members {sorted(members)}; run mose-shards verify")
    try:
        info: dict[str, Any] = json.loads(members["json"])
        for field in ("split", "video_id", "frame_name"):
            _safe_name(str(info[field]), f"{where}: sample {key}")
    except (ValueError, KeyError) as exc:
        raise OutputError(f"{where}: sample {key} has a broken .json member ({exc})") from None
    return info


def _safe_name(name: str, where: str) -> None:
    """A single path component: a shard must not make us write outside DEST."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise OutputError(f"{where}: {name!r} would escape the export folder")
    unfit = name_problem(name)  # convert refuses these; a shard made elsewhere may still hold one
    if unfit is not None:
        raise OutputError(f"{where}: {unfit}")


def _files(info: dict[str, Any], members: dict[str, bytes]) -> list[tuple[str, bytes]]:
    """The frame's file, and its mask's when it has one (the 1x1 placeholder is not a source file)."""
    split, video, frame = info["split"], info["video_id"], info["frame_name"]
    files = [(f"{split}/{IMAGES_DIR}/{video}/{frame}.jpg", members["jpg"])]
    if info.get("has_mask"):
        files.append((f"{split}/{MASKS_DIR}/{video}/{frame}.png", members["png"]))
    return files
