"""DuckDB views `videos`, `frames`, `masks`, `objects` over an output's Parquet parts.

One definition shared by `mose-shards query` and the loader's `where=` subsets. Each view reads the
parts the manifest lists for the splits asked for (each table has a `split` column). Local outputs are
read by DuckDB directly; any other fsspec URL (s3://, gs://, memory://, ...) goes through the output's
own fsspec filesystem, registered with DuckDB, because DuckDB's network extensions cannot be assumed
to be downloadable. DuckDB is imported only when a view is made (the `[query]` extra).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from . import manifest as manifest_mod
from .errors import MissingDependencyError
from .schema import TABLES, table_schema
from .storage import StorageOptions, Store

logger = logging.getLogger(__name__)


def duckdb_module() -> Any:
    """The duckdb module; MissingDependencyError with the install hint when it is absent."""
    try:
        import duckdb
    except ImportError:
        raise MissingDependencyError("duckdb", "query") from None
    return duckdb


def connect(
    url: str, storage_options: StorageOptions | None = None, *, splits: Iterable[str] | None = None
) -> Any:
    """An in-memory DuckDB connection with the four tables of the output at url as views."""
    store, doc = manifest_mod.read(url, storage_options)
    return connect_output(store, doc, splits)


def connect_output(store: Store, doc: dict[str, Any], splits: Iterable[str] | None = None) -> Any:
    """Like `connect`, for an output whose manifest is already read."""
    duckdb = duckdb_module()
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
    logger.info("views over %s (%s)", store.url, ", ".join(wanted))
    return con


def first_line(exc: BaseException) -> str:
    """A DuckDB error as one line: its message lines joined, without the echoed SQL and its carets."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("LINE ") and set(line) != {"^"}]
    return " ".join(kept) or exc.__class__.__name__


def _location(store: Store, rel: str) -> str:
    """The path DuckDB opens: local as is, else a URL with the registered filesystem's protocol."""
    path = store.path(rel)
    return path if store.local else str(store.fs.unstrip_protocol(path))


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
