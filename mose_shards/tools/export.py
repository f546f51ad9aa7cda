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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..core import manifest as manifest_mod
from ..core.errors import LayoutError, OutputError
from ..core.layout import MEMBERS
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


def export(
    url: str,
    dest: str,
    *,
    storage_options: StorageOptions | None = None,
    dest_options: StorageOptions | None = None,
    progress: Progress | None = None,
) -> ExportResult:
    """Write the raw tree of the output at `url` into `dest` (local or URL), which must be empty."""
    store, doc = manifest_mod.read(url, storage_options)
    target = Store(dest, dest_options)
    if target.listdir(""):
        raise OutputError(f"{target.url}: not empty; export into an empty or new folder")
    total = sum(split["frames"] for split in doc["splits"].values())
    frames = masks = 0
    videos: set[tuple[str, str]] = set()
    for split in doc["splits"].values():
        for shard in split["shards"]:
            for info, members in _samples(store, shard["path"]):
                frames, masks = frames + 1, masks + _write_sample(target, info, members)
                videos.add((info["split"], info["video_id"]))
                if progress:
                    progress(frames, total)
    for name, split in doc["splits"].items():
        meta = _meta(store, split["tables"])
        if meta is not None:
            target.write(f"{name}/meta.json", (json.dumps(meta, indent=1) + "\n").encode())
    return ExportResult(frames=frames, masks=masks, videos=len(videos))


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


def _write_sample(target: Store, info: dict[str, Any], members: dict[str, bytes]) -> int:
    """Write one frame (and its mask when it has one); returns the number of masks written."""
    split, video, frame = info["split"], info["video_id"], info["frame_name"]
    target.write(f"{split}/{IMAGES_DIR}/{video}/{frame}.jpg", members["jpg"])
    if not info.get("has_mask"):
        return 0  # the .png member is the 1x1 placeholder, not part of the source
    target.write(f"{split}/{MASKS_DIR}/{video}/{frame}.png", members["png"])
    return 1
