"""The SQL sandbox: one SELECT over an output's tables `videos`, `frames`, `masks`, `objects`.

Shared by `mose-shards query`, the loader's `where=` subsets and anything else that runs SQL a user
typed. The tables are read through our own Parquet reader (core/tables.py, any fsspec URL) into Arrow
and registered with an in-memory DuckDB connection; only then are DuckDB's file system, network and
extension access switched off and the configuration locked, and Python replacement scans (SQL naming
a variable of the caller) disabled. The SQL is parsed by DuckDB first: exactly one SELECT statement
(WITH ... SELECT, FROM-first and VALUES included) runs; anything else is refused with one line.
So a query reads the registered tables and nothing else: no file, no URL, no extension, no setting.
Only the tables a query names are read (a table name not spelled out fails as unknown, never opens
anything). DuckDB is imported only here, when SQL runs (the `[query]` extra).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from . import manifest as manifest_mod
from .errors import ConfigError, MissingDependencyError
from .schema import TABLES
from .storage import StorageOptions, Store
from .tables import read_table

__all__ = ["check_select", "check_where", "connect", "connect_output", "duckdb_module", "first_line", "run"]

logger = logging.getLogger(__name__)

# Set after the tables are registered, in this order: the lock keeps the query from undoing them.
LOCKDOWN = (
    "SET python_enable_replacements = false",
    "SET enable_external_access = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET lock_configuration = true",
)


def duckdb_module() -> Any:
    """The duckdb module; MissingDependencyError with the install hint when it is absent."""
    try:
        import duckdb
    except ImportError:
        raise MissingDependencyError("duckdb", "query") from None
    return duckdb


def check_select(sql: str) -> None:
    """ConfigError unless `sql` is exactly one SELECT statement (DuckDB's own parser decides)."""
    duckdb = duckdb_module()
    if not isinstance(sql, str) or not sql.strip():
        raise ConfigError("SQL: no statement given; give one SELECT")
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise ConfigError(f"SQL {_short(sql)}: {first_line(exc)}") from None
    if len(statements) != 1:
        raise ConfigError(f"SQL {_short(sql)}: {len(statements)} statements; only one SELECT may run")
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ConfigError(f"SQL {_short(sql)}: a {kind.name} statement; only a SELECT may run")


def check_where(where: str) -> str:
    """The SELECT a `where=` expression makes over `videos`; ConfigError unless it is one expression.

    The text must parse as a single SQL expression on its own, and the query around it must stay one
    SELECT: a `)` or `;` that closes the WHERE early is refused, not run.
    """
    duckdb = duckdb_module()
    if not isinstance(where, str) or not where.strip():
        raise ConfigError(f"where must be a non-empty SQL expression, got {where!r}")
    if "\x00" in where:
        raise ConfigError(f"where {_short(where)}: holds a NUL character")
    try:
        duckdb.SQLExpression(where)
    except duckdb.Error as exc:
        raise ConfigError(f"where {_short(where)} is not one SQL expression: {first_line(exc)}") from None
    # The newline keeps a trailing `--` comment from swallowing the closing parenthesis.
    sql = f"SELECT DISTINCT video_id FROM videos WHERE (\n{where}\n)"
    try:
        check_select(sql)
    except ConfigError:
        raise ConfigError(f"where {_short(where)} is not one SQL expression over the videos table") from None
    return sql


def connect(
    url: str, storage_options: StorageOptions | None = None, *, splits: Iterable[str] | None = None,
    tables: Iterable[str] = TABLES, extra: Mapping[str, pa.Table] | None = None,
) -> Any:  # fmt: skip
    """A locked-down in-memory DuckDB connection with the output's tables (all splits by default),
    and `extra` tables registered by name beside them (the scores of `evaluate --scores`)."""
    store, doc = manifest_mod.read(url, storage_options)
    return connect_output(store, doc, splits, tables, extra)


def connect_output(
    store: Store, doc: dict[str, Any], splits: Iterable[str] | None = None, tables: Iterable[str] = TABLES,
    extra: Mapping[str, pa.Table] | None = None,
) -> Any:  # fmt: skip
    """Like `connect`, for an output whose manifest is already read."""
    duckdb = duckdb_module()
    wanted = manifest_mod.select_splits(store, doc, splits)
    con = duckdb.connect(":memory:")
    try:
        for table in tables:
            parts = [read_table(store, doc, split, table) for split in wanted]
            con.register(table, pa.concat_tables(parts) if len(parts) > 1 else parts[0])
        for name, extra_table in (extra or {}).items():
            con.register(name, extra_table)
        for statement in LOCKDOWN:
            con.execute(statement)
    except BaseException:
        con.close()
        raise
    logger.info("tables of %s (%s) registered, external access off", store.url, ", ".join(wanted))
    return con


def named_tables(sql: str) -> list[str]:
    """The output tables whose name appears as a word in `sql` (the ones worth reading for it)."""
    return [t for t in TABLES if re.search(rf"\b{t}\b", sql, re.IGNORECASE)]


def run(con: Any, sql: str, what: str = "query") -> pa.Table:
    """The rows of one SELECT on a sandboxed connection; ConfigError for anything else or a failure,
    its message starting with `what` and the SQL."""
    duckdb = duckdb_module()
    check_select(sql)
    try:
        result = con.sql(sql)
        if result is None:  # cannot happen for a SELECT; kept so a parser change fails safe
            raise ConfigError(f"SQL {_short(sql)}: returned no rows")
        # to_arrow_table is the newer name; fetch_arrow_table (deprecated by DuckDB 2) the older one.
        fetch = getattr(result, "to_arrow_table", None) or result.fetch_arrow_table
        table: pa.Table = fetch()
        return table
    except duckdb.Error as exc:
        raise ConfigError(f"{what} {_short(sql)} failed: {first_line(exc)}") from None


def first_line(exc: BaseException) -> str:
    """A DuckDB error as one line: its message lines joined, without the echoed SQL and its carets."""
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [line for line in lines if line and not line.startswith("LINE ") and set(line) != {"^"}]
    return " ".join(kept) or exc.__class__.__name__


def _short(sql: str, limit: int = 80) -> str:
    """The SQL quoted on one line, cut to `limit` characters, for messages."""
    flat = " ".join(sql.split())
    return repr(flat if len(flat) <= limit else flat[: limit - 3] + "...")
