"""SQL over an output's tables: DuckDB views `videos`, `frames`, `masks`, `objects`.

Each view reads the Parquet parts the manifest lists, every split at once (each table has a `split`
column). Local outputs are read by DuckDB directly; any other fsspec URL (s3://, gs://, memory://, ...)
goes through the output's own fsspec filesystem, registered with DuckDB, because DuckDB's network
extensions cannot be assumed to be downloadable.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import pyarrow as pa

from ..core import manifest as manifest_mod
from ..core.errors import ConfigError, MissingDependencyError
from ..core.schema import TABLES, table_schema
from ..core.storage import StorageOptions, Store

logger = logging.getLogger(__name__)

FORMATS = ("table", "csv", "json")


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise MissingDependencyError("duckdb", "query") from None
    return duckdb


def connect(
    url: str, storage_options: StorageOptions | None = None, *, splits: Iterable[str] | None = None
) -> Any:
    """An in-memory DuckDB connection with the four tables of the output at url as views."""
    duckdb = _duckdb()
    store, doc = manifest_mod.read(url, storage_options)
    wanted = manifest_mod.select_splits(store, doc, splits)
    con = duckdb.connect()
    if not store.local:
        con.register_filesystem(store.fs)
    for table in TABLES:
        parts = [_location(store, rel) for split in wanted for rel in doc["splits"][split]["tables"][table]]
        if parts:
            listed = ", ".join(_literal(p) for p in parts)
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet([{listed}])")
        else:  # no part anywhere: an empty view that still has every column
            con.register(f"_empty_{table}", table_schema(table).empty_table())
            con.execute(f"CREATE VIEW {table} AS SELECT * FROM _empty_{table}")
    logger.info("query: views over %s (%s)", store.url, ", ".join(wanted))
    return con


def _location(store: Store, rel: str) -> str:
    """The path DuckDB opens: local as is, else a URL with the registered filesystem's protocol."""
    path = store.path(rel)
    return path if store.local else str(store.fs.unstrip_protocol(path))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def query(url: str, sql: str, storage_options: StorageOptions | None = None) -> pa.Table:
    """Run one SQL statement against the output's views; ConfigError for SQL DuckDB rejects."""
    duckdb = _duckdb()
    con = connect(url, storage_options)
    try:
        result = con.sql(sql)
        if result is None:  # a statement without rows (SET, CREATE ...)
            return pa.table({})
        # to_arrow_table is the newer name; fetch_arrow_table (deprecated by DuckDB 2) the older one.
        fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
        table: pa.Table = fetch()
        return table
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise ConfigError(f"query failed: {first}") from None
    finally:
        con.close()


def format_result(table: pa.Table, fmt: str = "table") -> str:
    """Rows as an aligned text table, CSV (lists as JSON) or a JSON array of objects."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}")
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
