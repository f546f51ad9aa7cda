"""An archive's listing (its members) and the Parquet file it is saved as under OUT/.mose-shards/.

One writer and one reader for the saved listing of a finished scan and for the member segments of a
listing checkpoint (`gzlist`): columns name, offset, size, kind, and for zip members their codec.
"""

from __future__ import annotations

import io
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, overload

from ..core import tarscan

_COLUMNS = ("name", "offset", "size", "kind", "method", "packed", "crc", "header")
_BATCH = 1 << 17  # members per row group of a saved listing


_KINDS = (tarscan.FILE, tarscan.DIR, tarscan.LINK, tarscan.OTHER)
KIND_CODES = {kind: code for code, kind in enumerate(_KINDS)}


class Members:
    """An archive's members as columns: names, and offsets, sizes and kinds in arrays.

    A MOSEv2 train tar has ~934k members; as `TarMember` tuples they took ~250 bytes each (a tuple,
    two ints) and were the peak of the parent's plan. Here a member costs its name and 17 bytes, and
    `TarMember`s are made as they are read. A consumer going through once can drop each name
    (`release`) as it goes.
    """

    __slots__ = ("names", "offsets", "sizes", "kinds")

    def __init__(self, members: Iterable[tarscan.TarMember] = ()) -> None:
        self.names: list[str | None] = []
        self.offsets = array("q")
        self.sizes = array("q")
        self.kinds = bytearray()
        self.extend(members)

    def append(self, member: tarscan.TarMember) -> None:
        self.names.append(member.name)
        self.offsets.append(member.offset)
        self.sizes.append(member.size)
        self.kinds.append(KIND_CODES[member.kind])

    def extend(self, members: Iterable[tarscan.TarMember]) -> None:
        if isinstance(members, Members):
            self.names += members.names
            self.offsets += members.offsets
            self.sizes += members.sizes
            self.kinds += members.kinds
            return
        for member in members:
            self.append(member)

    def __iadd__(self, members: Iterable[tarscan.TarMember]) -> Members:
        self.extend(members)
        return self

    def __len__(self) -> int:
        return len(self.names)

    @overload
    def __getitem__(self, i: int) -> tarscan.TarMember: ...
    @overload
    def __getitem__(self, i: slice) -> Members: ...
    def __getitem__(self, i: int | slice) -> tarscan.TarMember | Members:
        if isinstance(i, slice):
            out = Members()
            out.names, out.offsets = self.names[i], self.offsets[i]
            out.sizes, out.kinds = self.sizes[i], self.kinds[i]
            return out
        name = self.names[i]
        if name is None:
            raise ValueError(f"member {i} was released")
        return tarscan.TarMember(name, self.offsets[i], self.sizes[i], _KINDS[self.kinds[i]])

    def __iter__(self) -> Iterator[tarscan.TarMember]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Members):
            return NotImplemented
        return (self.names, self.offsets, self.sizes, self.kinds) == (
            other.names, other.offsets, other.sizes, other.kinds,
        )  # fmt: skip

    __hash__ = None  # type: ignore[assignment]  # mutable

    def release(self, i: int) -> str:
        """Member i's name, dropped from the listing (a consumer that goes through it once)."""
        name = self.names[i]
        self.names[i] = None
        assert name is not None
        return name


@dataclass
class Listing:
    """The members of an archive: tar members, or zip members with their codec."""

    members: Members
    codecs: dict[int, tuple[int, int, int, int]] = field(default_factory=dict)  # zip: index -> codec
    index: bytes | None = None  # gzip seek index (indexed_gzip format), for tar.gz
    verified: bool = False


def members_bytes(listing: Listing) -> bytes:
    """The listing as a Parquet file (zstd), in row groups of `_BATCH` members."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    members = listing.members
    sink = io.BytesIO()
    writer = None
    # In row groups of _BATCH members: converting a ~1M-member listing at once held ~160 MB of Arrow
    # buffers beside the Python listing, the peak of the whole plan.
    for start in range(0, max(len(members), 1), _BATCH):
        end = min(start + _BATCH, len(members))
        codecs = [listing.codecs.get(i, (-1, -1, -1, -1)) for i in range(start, end)]
        kinds = pa.array(np.frombuffer(bytes(members.kinds[start:end]), np.int8))
        columns = {
            "name": pa.array(members.names[start:end], pa.string()),
            "offset": pa.array(np.frombuffer(members.offsets, np.int64)[start:end]),
            "size": pa.array(np.frombuffer(members.sizes, np.int64)[start:end]),
            "kind": pa.DictionaryArray.from_arrays(kinds, pa.array(_KINDS, pa.string())),
        }
        for position, column in enumerate(_COLUMNS[4:]):
            columns[column] = pa.array([c[position] for c in codecs], pa.int64())
        table = pa.table(columns).replace_schema_metadata({"verified": str(int(listing.verified))})
        if writer is None:
            writer = pq.ParquetWriter(sink, table.schema, compression="zstd")
        writer.write_table(table)
        del codecs, columns, table
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
    members = Members()
    members.names = arrays.pop("name").to_pylist()
    members.offsets = array("q", arrays.pop("offset").to_numpy().astype("int64").tobytes())
    members.sizes = array("q", arrays.pop("size").to_numpy().astype("int64").tobytes())
    for chunk in arrays.pop("kind").chunks:  # a row group each
        if not pa.types.is_dictionary(chunk.type):
            chunk = chunk.dictionary_encode()
        codes = bytes(KIND_CODES[kind] for kind in chunk.dictionary.to_pylist())
        members.kinds += chunk.indices.to_numpy().astype("uint8").tobytes().translate(codes.ljust(256, b"\0"))
    release_arrow()
    codecs: dict[int, tuple[int, int, int, int]] = {}
    if zipped is not None:
        rows = zip(*(zipped.column(c).to_pylist() for c in ("row", *_COLUMNS[4:])), strict=True)
        codecs = {row: (method, packed, crc, header) for row, method, packed, crc, header in rows}
    return Listing(members, codecs, verified=verified)
