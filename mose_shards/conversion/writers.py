"""The tar shard writer (WebDataset layout, deterministic bytes) and the Parquet part writer."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..core.schema import table_schema
from ..core.tarfmt import index_members


class ShardWriter:
    """Write one shard to a local file, with fixed mtime/owner/mode so equal input gives equal bytes.

    After `close()`, `members` maps (key, ext) to the (offset, size) of the member's data in the tar.
    """

    def __init__(self, *, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file = open(self.path, "wb")  # noqa: SIM115 - owned by the writer, closed in close()
        # The stdlib writes what webdataset's TarWriter(user="", group="", mode=0o444, mtime=0) writes, byte
        # for byte, without importing webdataset, which imports torch: ~1 s and ~200 MB in every worker.
        self._tar = tarfile.open(fileobj=self._file, mode="w|")  # noqa: SIM115 - closed in close()
        self.samples = 0
        self.members: dict[tuple[str, str], tuple[int, int]] = {}

    def write(self, key: str, members: Mapping[str, bytes]) -> None:
        for ext in sorted(members):
            data = members[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o444, "", ""
            self._tar.addfile(info, io.BytesIO(data))
        # TarFile keeps every TarInfo it wrote (~300 bytes a member, ~25 MB a shard), which a writer
        # never reads back: `members` is indexed from the file after close().
        self._tar.members.clear()  # type: ignore[attr-defined]  # (an attribute typeshed leaves out)
        self.samples += 1

    def close(self) -> None:
        self._tar.close()
        self._file.close()
        with open(self.path, "rb") as fh:
            self.members = index_members(fh, self.path)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._file.closed:
            self.close()


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_table(rows: Sequence[Mapping[str, Any]], table: str, path: str | os.PathLike[str]) -> int:
    """Write rows as one zstd Parquet file with the table's versioned schema; returns the row count."""
    schema = table_schema(table)
    arrow = pa.Table.from_pylist(list(rows), schema=schema)
    pq.write_table(arrow, os.fspath(path), compression="zstd")
    count = arrow.num_rows
    del arrow
    # Arrow's allocator keeps freed buffers for reuse; a shard's tables are tens of MB, and with one
    # worker they stay resident beside the whole plan (the peak RSS of a MOSEv2-size convert).
    pa.default_memory_pool().release_unused()
    return count
