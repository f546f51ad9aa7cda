"""The objects visible in each frame, from the `masks` table (one row per object and annotated frame),
so that choosing and filtering a clip's objects never scans mask pixels."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..core.errors import OutputError
from ..core.storage import Store
from .index import IndexedVideo, read_tables, split_entry

COLUMNS = ("video_id", "frame_index", "object_id")
FrameObjects = tuple[tuple[int, ...], ...]  # per frame position: its object ids, ascending


def frame_objects(
    store: Store, doc: dict[str, Any], split: str, videos: Sequence[IndexedVideo]
) -> dict[str, FrameObjects]:
    """video id -> the object ids of each of its frames; OutputError when the masks table disagrees
    with the frames table's per-frame object counts."""
    paths = split_entry(doc, split, store.url)["tables"]["masks"]
    found: dict[str, dict[int, list[int]]] = {}
    for part in read_tables(store, paths, COLUMNS):
        for video_id, frame_index, object_id in zip(*(part[c] for c in COLUMNS), strict=True):
            found.setdefault(video_id, {}).setdefault(int(frame_index), []).append(int(object_id))
    out: dict[str, FrameObjects] = {}
    for entry in videos:
        frames = found.get(entry.video_id, {})
        ids = tuple(tuple(sorted(frames.get(p, ()))) for p in range(entry.num_frames))
        if any(len(i) != n for i, n in zip(ids, entry.num_objects, strict=True)):
            raise OutputError(
                f"{store.url}: the masks table of split {split!r} does not match the frames table's "
                f"object counts for video {entry.video_id!r}"
            )
        out[entry.video_id] = ids
    return out
