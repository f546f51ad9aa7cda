"""An archive's listing (its members) and the Parquet file it is saved as under OUT/.mose-shards/.

One writer and one reader for the saved listing of a finished scan and for the member segments of a
listing checkpoint (`gzlist`): columns name, offset, size, kind, and for zip members their codec.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from ..core import tarscan

_COLUMNS = ("name", "offset", "size", "kind", "method", "packed", "crc", "header")
_BATCH = 1 << 17  # members per row group of a saved listing


@dataclass
class Listing:
    """The members of an archive: tar members, or zip members with their codec."""

    members: list[tarscan.TarMember]
    codecs: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)  # zip: index -> codec
    index: bytes | None = None  # gzip seek index (indexed_gzip format), for tar.gz
    verified: bool = False


def members_bytes(listing: Listing) -> bytes:
    """The listing as a Parquet file (zstd), in row groups of `_BATCH` members."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    members = listing.members
    sink = io.BytesIO()
    writer = None
    # In row groups of _BATCH members: converting a ~1M-member listing at once held ~160 MB of Arrow
    # buffers beside the Python listing, the peak of the whole plan.
    for start in range(0, max(len(members), 1), _BATCH):
        rows = members[start : start + _BATCH]
        codecs = [listing.codecs.get(i, (-1, -1, -1, -1)) for i in range(start, start + len(rows))]
        columns = {
            "name": pa.array([m.name for m in rows], pa.string()),
            "offset": pa.array([m.offset for m in rows], pa.int64()),
            "size": pa.array([m.size for m in rows], pa.int64()),
            "kind": pa.array([m.kind for m in rows], pa.string()).dictionary_encode(),
        }
        for position, column in enumerate(_COLUMNS[4:]):
            columns[column] = pa.array([c[position] for c in codecs], pa.int64())
        table = pa.table(columns).replace_schema_metadata({"verified": str(int(listing.verified))})
        if writer is None:
            writer = pq.ParquetWriter(sink, table.schema, compression="zstd")
        writer.write_table(table)
        del rows, codecs, columns, table
    assert writer is not None
    writer.close()
    release_arrow()
    return sink.getvalue()


def release_arrow() -> None:
    """Give Arrow's freed buffers back to the system: converting a ~1M-member listing leaves ~150 MB
    in its allocator's caches, held (unused) at the parent's peak through the whole plan."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def read_members(table: Any) -> Listing:
    """The listing of a saved members table (pyarrow), without its gzip index."""
    import pyarrow as pa
    import pyarrow.compute as pc

    # Column by column, each column's Arrow buffers dropped once it is Python, and the codec columns
    # only for the zip members that have one: a MOSEv2 tar has ~1M members, and the whole table beside
    # eight Python lists of them was the peak of a rerun's plan.
    verified = (table.schema.metadata or {}).get(b"verified") == b"1"
    has_codecs = len(table) > 0 and pc.max(table.column("method")).as_py() >= 0
    zipped = None
    if has_codecs:
        zipped = table.append_column("row", pa.array(range(len(table)), pa.int64()))
        zipped = zipped.select(["row", *_COLUMNS[4:]])
        zipped = zipped.filter(pc.greater_equal(zipped.column("method"), 0))
    arrays = {c: table.column(c) for c in _COLUMNS[:4]}
    del table
    names = arrays.pop("name").to_pylist()
    offsets = arrays.pop("offset").to_pylist()
    sizes = arrays.pop("size").to_pylist()
    kinds: list[str] = []
    for chunk in arrays.pop("kind").chunks:  # a row group each
        if pa.types.is_dictionary(chunk.type):  # one str per kind, not one per member
            values = chunk.dictionary.to_pylist()
            kinds += [values[i] for i in chunk.indices.to_pylist()]
        else:
            kinds += chunk.to_pylist()
    release_arrow()
    members = [tarscan.TarMember(*row) for row in zip(names, offsets, sizes, kinds, strict=True)]
    del names, offsets, sizes, kinds
    codecs: dict[int, tuple[int, int, int, int]] = {}
    if zipped is not None:
        rows = zip(*(zipped.column(c).to_pylist() for c in ("row", *_COLUMNS[4:])), strict=True)
        codecs = {row: (method, packed, crc, header) for row, method, packed, crc, header in rows}
    return Listing(members, codecs, verified=verified)
