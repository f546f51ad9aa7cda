"""Per-video J&F_new from evaluate's result, for the index's column.

DEST may be a file (.csv, .json, .parquet) or a folder holding one; a per-video table is one with a
video column (`video` or `video_id`) and a `J&F_new` column (else `J&F`). A stand-in until the
evaluate helper's writer (issue 22) is on main; then this reads what it writes.
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


def read_scores(dest: str, storage_options: StorageOptions | None = None) -> dict[str, float]:
    """video id -> J&F_new; OutputError / DataError naming the file when it cannot be used."""
    fs, path = fsspec.core.url_to_fs(dest, **dict(storage_options or {}))
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
