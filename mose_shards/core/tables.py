"""The one Parquet part reader: any fsspec URL, column projection, the file named in its errors.

Every consumer (loader, stats, plots, verify, export) reads table parts through here. `query` hands the
same file list to DuckDB. Parts are read from bytes, not through a Python file object, and without
starting Arrow's thread pools (see read_part): a worker of theirs alive at exit aborts the interpreter
("terminate called without an active exception").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import OutputError
from .manifest import split_entry
from .schema import table_schema
from .storage import Store

FETCH_THREADS = 8  # parts are small and many: fetch them in parallel from object storage


def read_part(store: Store, rel: str, columns: Sequence[str] | None = None) -> pa.Table:
    """One Parquet part as a pyarrow Table; OutputError naming it when missing or unreadable."""
    data = store.read(rel)
    try:
        # ParquetFile.read(use_threads=False) decodes in the calling thread and starts no thread of
        # Arrow's. pq.read_table goes through the dataset scanner, which spawns row-group reads on
        # Arrow's global thread pool even with use_threads=False; a worker of that pool still alive
        # when the interpreter exits is a joinable std::thread destroyed at exit: std::terminate,
        # "terminate called without an active exception", SIGABRT after the command had finished.
        # (read_table also imports pyarrow.dataset and pandas: 0.3-0.5 s of every reader's start-up.)
        with pq.ParquetFile(pa.BufferReader(data), pre_buffer=False) as part:
            table: pa.Table = part.read(
                columns=list(columns) if columns is not None else None, use_threads=False
            )
        return table
    except (pa.ArrowException, OSError) as exc:
        raise OutputError(f"{store.url_of(rel)}: not a readable Parquet file ({exc})") from None


def read_parts(store: Store, rels: Iterable[str], columns: Sequence[str] | None = None) -> list[pa.Table]:
    """Several parts, fetched in parallel, in the order given."""
    rels = list(rels)
    if len(rels) <= 1:
        return [read_part(store, rel, columns) for rel in rels]
    with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, len(rels))) as pool:
        return list(pool.map(lambda rel: read_part(store, rel, columns), rels))


def read_table(
    store: Store, doc: dict[str, Any], split: str, table: str, columns: Sequence[str] | None = None
) -> pa.Table:
    """One table of one split: its parts as the manifest lists them, concatenated (empty when none)."""
    parts = split_entry(store, doc, split)["tables"][table]
    schema = table_schema(table)
    if columns is not None:
        schema = pa.schema([schema.field(name) for name in columns])
    if not parts:
        return schema.empty_table()
    return pa.concat_tables(read_parts(store, parts, columns)).cast(schema)
