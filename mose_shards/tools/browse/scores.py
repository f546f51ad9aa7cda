"""Per-video J&F_new from evaluate's result, for the index's column.

DEST is what `mose-shards evaluate --scores DEST` writes: a folder with `scores_objects.parquet`
(per object; a video's J&F_new is the mean of its objects' `JF_new`, or `JF` for davis-2017). A file
(.csv, .json, .parquet) with a video column (`video` or `video_id`) and a `J&F_new` column (else
`J&F`) is read too. (Read here with pyarrow: tools may not import analytics, the layers contract.)
"""

from __future__ import annotations

import io
import json
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ...core.errors import DataError, OutputError
from ...core.storage import StorageOptions

SUFFIXES = (".csv", ".parquet", ".json")
OBJECTS = "scores_objects.parquet"  # evaluate's per-object scores


def _per_video(table: pa.Table | None, where: str) -> dict[str, float]:
    """The mean of each video's objects' JF_new (JF when the metric has no F_new)."""
    if table is None or "video" not in table.column_names:
        raise DataError(where, "no video column; not evaluate's per-object scores")
    column = next((c for c in ("JF_new", "JF") if c in table.column_names), None)
    if column is None:
        raise DataError(where, "no JF_new or JF column; not evaluate's per-object scores")
    sums: dict[str, list[float]] = {}
    for video, value in zip(table["video"].to_pylist(), table[column].to_pylist(), strict=True):
        if video is not None and value is not None:
            sums.setdefault(str(video), []).append(float(value))
    return {v: sum(xs) / len(xs) for v, xs in sums.items()}


def read_scores(dest: str, storage_options: StorageOptions | None = None) -> dict[str, float]:
    """video id -> J&F_new; OutputError / DataError naming the file when it cannot be used."""
    fs, path = fsspec.core.url_to_fs(dest, **dict(storage_options or {}))
    if fs.isfile(f"{path}/{OBJECTS}"):
        return _per_video(_table(fs, f"{path}/{OBJECTS}"), f"{dest}/{OBJECTS}")
    if fs.isdir(path):
        found = sorted(p for p in fs.find(path) if p.lower().endswith(SUFFIXES))
        if not found:
            raise OutputError(f"{dest}: no scores (.csv, .parquet or .json) in this folder")
        tables = [(p, _table(fs, p)) for p in found]
        usable = [(p, t) for p, t in tables if t is not None and _columns(t) is not None]
        if not usable:
            raise DataError(dest, "no per-video table with a video and a J&F_new column")
        path, table = usable[0]
    elif fs.exists(path):
        table = _table(fs, path)
    else:
        raise OutputError(f"{dest}: scores not found")
    cols = _columns(table) if table is not None else None
    if table is None or cols is None:
        raise DataError(dest, "not a per-video table with a video and a J&F_new column")
    video, score = cols
    return {str(v): float(s) for v, s in zip(table[video].to_pylist(), table[score].to_pylist(), strict=True)
            if v is not None and s is not None}  # fmt: skip


def _table(fs: Any, path: str) -> pa.Table | None:
    with fs.open(path, "rb") as f:
        data = f.read()
    try:
        if path.lower().endswith(".csv"):
            return pacsv.read_csv(io.BytesIO(data))
        if path.lower().endswith(".parquet"):
            return pq.read_table(io.BytesIO(data))
        doc = json.loads(data)
    except (pa.ArrowException, ValueError) as exc:
        raise DataError(path, f"not readable ({exc})") from None
    rows = doc.get("videos", doc.get("per_video")) if isinstance(doc, dict) else doc
    if isinstance(rows, dict):
        rows = [{"video": k, **v} for k, v in rows.items() if isinstance(v, dict)]
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        return None
    return pa.Table.from_pylist(rows)


def _columns(table: pa.Table) -> tuple[str, str] | None:
    names = table.column_names
    video = next((c for c in ("video", "video_id") if c in names), None)
    score = next((c for c in ("J&F_new", "J&F") if c in names), None)
    return (video, score) if video and score else None
