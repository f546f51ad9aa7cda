"""SQL over an output's tables `videos`, `frames`, `masks`, `objects`, every split at once (each table
has a `split` column), in the sandbox of core/sql.py (one SELECT, no file or network access), and the
result formats of `mose-shards query`.
"""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from typing import Any

import pyarrow as pa

from ..core.errors import ConfigError
from ..core.layout import name_problem
from ..core.sql import check_select, connect, named_tables, run
from ..core.storage import StorageOptions

__all__ = ["FORMATS", "connect", "format_result", "query"]

FORMATS = ("table", "csv", "json", "video-list")


def query(
    url: str, sql: str, storage_options: StorageOptions | None = None, scores: str | None = None
) -> pa.Table:
    """Run one SELECT against the output's tables; ConfigError naming the SQL for anything else, and
    for SQL DuckDB rejects. The SQL is checked before any table is read. With `scores` (the DEST of
    `evaluate --scores`), `scores_frames` and `scores_objects` can be joined too."""
    check_select(sql)
    extra = None
    if scores is not None:
        from .evaluate.tables import read_scores

        extra = read_scores(scores, storage_options)
    con = connect(url, storage_options, tables=named_tables(sql), extra=extra)
    try:
        return run(con, sql)
    finally:
        con.close()


def format_result(table: pa.Table, fmt: str = "table") -> str:
    """Rows as an aligned text table, CSV (lists as JSON), a JSON array of objects, or a video list."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    if fmt == "video-list":
        return "\n".join(video_list(table))
    rows = [[_plain(v) for v in row.values()] for row in table.to_pylist()]
    if fmt == "json":
        return json.dumps([dict(zip(table.column_names, r, strict=True)) for r in rows], ensure_ascii=False)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(table.column_names)
        writer.writerows([[_cell(v, csv_mode=True) for v in r] for r in rows])
        return buffer.getvalue().rstrip("\n")
    return _text_table(table.column_names, [[_cell(v) for v in r] for r in rows])


def video_list(table: pa.Table) -> list[str]:
    """The distinct `video_id` values of a result, in result order: a file for `Source(videos=)`."""
    if "video_id" not in table.column_names:
        have = ", ".join(table.column_names) or "none"
        raise ConfigError(f"--format video-list needs a video_id column; the result has: {have}")
    ids = list(dict.fromkeys(str(v) for v in table.column("video_id").to_pylist() if v is not None))
    for video_id in ids:  # one id a line: an id that is not one clean line cannot be listed
        if (unfit := name_problem(video_id)) is not None:
            raise ConfigError(f"--format video-list: {unfit}")
    return ids


def _plain(value: Any) -> Any:
    """JSON-friendly: DuckDB's HUGEINT sums and DECIMALs become int or float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _cell(value: Any, csv_mode: bool = False) -> str:
    if value is None:
        return "" if csv_mode else "NULL"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    if isinstance(value, float):
        return repr(value) if csv_mode else f"{value:.6g}"
    return str(value)


def _text_table(names: list[str], rows: list[list[str]]) -> str:
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    lines = ["  ".join(n.ljust(w) for n, w in zip(names, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(line.rstrip() for line in lines)
