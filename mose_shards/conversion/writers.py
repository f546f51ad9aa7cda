"""The tar shard writer (WebDataset layout, deterministic bytes) and the Parquet part writer."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..core.schema import table_schema
from ..core.tarfmt import index_members


class ShardWriter:
    """Write one shard to a local file, with fixed mtime/owner/mode so equal input gives equal bytes.

    The bytes are tarfile's stream writer's (`mode="w|"`), which are webdataset TarWriter's with
    user="", group="", mode=0o444, mtime=0: each member's header(s) from `TarInfo.tobuf` and its data
    padded to 512 bytes, then two zero blocks and zeros up to a 10 KiB record. Written here directly,
    without importing webdataset (it imports torch: ~1 s and ~200 MB in every worker), so a run of
    members can be written alone (`trailer=False`, a segment) and segments joined into one shard.

    After `close()`, `members` maps (key, ext) to the (offset, size) of the member's data in the tar
    (empty for a segment).
    """

    def __init__(self, *, path: str | os.PathLike[str], trailer: bool = True) -> None:
        self.path = os.fspath(path)
        self.trailer = trailer
        self._file = open(self.path, "wb")  # noqa: SIM115 - owned by the writer, closed in close()
        self.samples = 0
        self.members: dict[tuple[str, str], tuple[int, int]] = {}

    def write(self, key: str, members: Mapping[str, bytes]) -> None:
        for ext in sorted(members):
            data = members[ext]
            info = tarfile.TarInfo(f"{key}.{ext}")
            info.size, info.mtime, info.mode, info.uname, info.gname = len(data), 0, 0o444, "", ""
            self._file.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            self._file.write(data)
            self._file.write(bytes(-len(data) % tarfile.BLOCKSIZE))
        self.samples += 1

    def close(self) -> None:
        if self.trailer:
            _end_archive(self._file)
        self._file.close()
        if self.trailer:
            with open(self.path, "rb") as fh:
                self.members = index_members(fh, self.path)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._file.closed:
            self.close()


def _end_archive(fh: Any) -> None:
    """Two zero blocks, then zeros to the end of a 10 KiB record (as tarfile ends an archive)."""
    fh.write(bytes(2 * tarfile.BLOCKSIZE))
    fh.write(bytes(-fh.tell() % tarfile.RECORDSIZE))


def join_segments(segments: Sequence[str], path: str) -> dict[tuple[str, str], tuple[int, int]]:
    """One shard from segments written with `trailer=False`, in order: the bytes one ShardWriter
    would have written for all their members. Returns the members index (as `ShardWriter.members`)."""
    with open(path, "wb") as out:
        for segment in segments:
            with open(segment, "rb") as fh:
                shutil.copyfileobj(fh, out, 8 << 20)
        _end_archive(out)
    with open(path, "rb") as fh:
        return index_members(fh, path)


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
