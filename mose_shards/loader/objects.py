"""The objects visible in each frame, from the `masks` table (one row per object and annotated frame),
so that choosing and filtering a clip's objects never scans mask pixels.

Kept as arrays beside the index (a flat uint8 array of ids and each frame's start in it), not as a
tuple per frame: a MOSEv2-size split has 470k frames.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core.errors import OutputError
from ..core.manifest import split_entry
from ..core.storage import Store
from ..core.tables import read_parts
from .index import SplitIndex, arrow_numpy, loaded_index, shared_index

COLUMNS = ("video_id", "frame_index", "object_id")


def index_with_objects(store: Store, doc: dict[str, Any], split: str, verify: bool = False) -> SplitIndex:
    """The split's index (`shared_index`: once per process) with each frame's objects; the masks
    table is fetched while the frames table is, one round trip for both."""
    found = loaded_index(store, doc, split, verify)
    if found is not None and found.object_ids is not None:
        return found
    with ThreadPoolExecutor(1, thread_name_prefix="mose-shards-masks") as pool:
        masks = pool.submit(read_mask_parts, store, doc, split)
        index = found or shared_index(store, doc, split, verify)
        tables = masks.result()
    if index.object_ids is None:
        add_frame_objects(store, doc, split, index, tables)
    return index


def read_mask_parts(store: Store, doc: dict[str, Any], split: str) -> list[pa.Table]:
    """The masks table's parts, the columns `add_frame_objects` needs."""
    return read_parts(store, split_entry(store, doc, split)["tables"]["masks"], COLUMNS)


def add_frame_objects(
    store: Store, doc: dict[str, Any], split: str, index: SplitIndex, tables: list[pa.Table] | None = None
) -> None:
    """Fill `index.object_ids` / `index.object_start` from the masks table (its parts, read here
    unless given); OutputError when it disagrees with the frames table's per-frame object counts."""
    if tables is None:
        tables = read_mask_parts(store, doc, split)
    table = pa.concat_tables(tables) if tables else None
    frames = len(index.has_mask)
    if table is None or table.num_rows == 0:
        rows, ids = np.zeros(0, np.int64), np.zeros(0, np.uint8)
    else:
        found = pc.index_in(table.column("video_id"), value_set=index.video_ids)
        position = arrow_numpy(table.column("frame_index")).astype(np.int64)
        where = f"{store.url}: the masks table of split {split!r} names"
        if found.null_count:
            raise OutputError(f"{where} a video the frames table lacks")
        video = arrow_numpy(found).astype(np.int64)
        if (position >= index.frame_counts()[video]).any():
            raise OutputError(f"{where} a frame the frames table lacks")
        rows = index.first_frame[video] + position
        ids = arrow_numpy(table.column("object_id")).astype(np.uint8)
        order = np.lexsort((ids, rows))
        rows, ids = rows[order], ids[order]
    counts = np.bincount(rows, minlength=frames)
    bad = np.flatnonzero(counts != index.num_objects)
    if len(bad):
        wrong = int(np.searchsorted(index.first_frame, bad[0], side="right") - 1)
        raise OutputError(
            f"{store.url}: the masks table of split {split!r} does not match the frames table's "
            f"object counts for video {str(index.video_ids[wrong])!r}"
        )
    index.object_ids = ids
    index.object_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
