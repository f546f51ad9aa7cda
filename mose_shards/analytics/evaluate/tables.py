"""The scores as Arrow tables (schemas/scores_*.json) and their Parquet files under --scores DEST."""

from __future__ import annotations

import io
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from ...core.schema import table_schema
from ...core.storage import StorageOptions, Store
from ...core.tables import read_part
from .metrics import DAVIS_2017


class Scored(Protocol):
    """What write_scores writes (runner.EvaluationResult; a protocol so this module needs no runner:
    runner imports it, and a cycle is refused by .ci/check_modules.py)."""

    frames: pa.Table
    objects: pa.Table


SCORE_FILES = {"scores_frames": "scores_frames.parquet", "scores_objects": "scores_objects.parquet"}


def frames_table(split: str, videos: list[tuple[str, list[tuple[Any, ...]]]]) -> pa.Table:
    cols: dict[str, list[Any]] = {n: [] for n in table_schema("scores_frames").names}
    for video, rows in videos:
        for frame, obj, j, f, f_new, gt_empty, pred_empty in rows:
            for key, value in zip(
                cols, (split, video, frame, obj, j, f, f_new, gt_empty, pred_empty), strict=True
            ):
                cols[key].append(value)
    return pa.table(cols, schema=table_schema("scores_frames"))


def objects_table(metric: str, split: str, objects: list[dict[str, Any]]) -> pa.Table:
    schema = table_schema("scores_objects")
    rows = []
    for o in objects:
        row: dict[str, Any] = {n: None for n in schema.names}
        row.update(split=split, metric=metric, video=o["video"], object=o["object"], frames=o["frames"])
        row.update(J=o["J"], F=o["F"], JF=(o["J"] + o["F"]) / 2)
        if metric == DAVIS_2017:
            row.update({k: o[k] for k in ("J_recall", "J_decay", "F_recall", "F_decay")})
        else:
            row.update(F_new=o["F_new"], JF_new=(o["J"] + o["F_new"]) / 2)
            for key in ("disappear", "reappear"):
                seg = o[key]
                row[f"{key}_JF_new"] = None if seg is None else (seg[0] + seg[1]) / 2
        rows.append({k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()})
    return pa.Table.from_pylist(rows, schema=schema)


def write_scores(result: Scored, dest: str, storage_options: StorageOptions | None = None) -> list[str]:
    """Both tables under dest (a folder, local or any fsspec URL), each written whole then renamed."""
    store = Store(dest, storage_options)
    written = []
    for name, table in (("scores_frames", result.frames), ("scores_objects", result.objects)):
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        store.write(SCORE_FILES[name], buffer.getvalue())
        written.append(store.url_of(SCORE_FILES[name]))
    return written


def read_scores(dest: str, storage_options: StorageOptions | None = None) -> dict[str, pa.Table]:
    """The two score tables written under dest, by name; OutputError naming a missing one."""
    store = Store(dest, storage_options)
    return {name: read_part(store, rel) for name, rel in SCORE_FILES.items()}
