"""An archive's listing (its members) and the file it is saved as under OUT/.mose-shards/.

One writer and one reader for the saved listing of a finished scan and for the member segments of a
listing checkpoint (`gzlist`): names, offsets, sizes, kinds, and for zip members their codec.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import overload

from zlib_ng import zlib_ng

from ..core import tarscan

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


_MAGIC = b"MOSE-SHARDS-MEMBERS"
_HEAD = struct.Struct(f"<{len(_MAGIC)}sBQQ?")  # magic, format, members, zip codecs, verified
_VERSION = 1
_SECTION = struct.Struct("<Q")  # the compressed length of each section that follows
_BATCH = 1 << 17  # names per section: a listing of ~1M names is never joined (or split) whole


def members_bytes(listing: Listing) -> bytes:
    """The listing as bytes: a header, then zlib sections: the names joined by NUL, `_BATCH` a
    section; offsets, sizes and kinds as arrays; zip codecs. ValueError for a name that holds a NUL
    (none can in a tar or a zip).

    Not Parquet: building any Arrow table loads pandas when it is installed (~0.25 s, ~55 MB) on the
    parent's critical path, and ~1M names took ~150 MB of Arrow buffers."""
    members = listing.members
    sections = []
    for start in range(0, len(members), _BATCH):
        batch = members.names[start : start + _BATCH]
        if any("\0" in name for name in batch):  # type: ignore[operator]
            raise ValueError("a member name holds a NUL byte")
        sections.append("\0".join(batch).encode("utf-8", "surrogateescape"))  # type: ignore[arg-type]
        del batch
    sections.append(members.offsets.tobytes() + members.sizes.tobytes() + bytes(members.kinds))
    sections.append(
        array("q", [v for i, codec in sorted(listing.codecs.items()) for v in (i, *codec)]).tobytes()
    )
    out = [_HEAD.pack(_MAGIC, _VERSION, len(members), len(listing.codecs), listing.verified)]
    for section in sections:
        packed = zlib_ng.compress(section, 1)
        out += [_SECTION.pack(len(packed)), packed]
    return b"".join(out)


def read_members(data: bytes) -> Listing:
    """The listing saved by `members_bytes` (without its gzip index); ValueError when `data` is not one."""
    try:
        magic, version, count, codec_count, verified = _HEAD.unpack_from(data)
    except struct.error:
        raise ValueError("not a saved listing (short header)") from None
    if magic != _MAGIC or version != _VERSION:
        raise ValueError("not a saved listing of this version")
    at = _HEAD.size

    def section() -> bytes:
        nonlocal at
        try:
            (length,) = _SECTION.unpack_from(data, at)
        except struct.error:
            raise ValueError("a saved listing cut short") from None
        at += _SECTION.size + length
        if at > len(data):
            raise ValueError("a saved listing cut short")
        try:
            return bytes(zlib_ng.decompress(data[at - length : at]))
        except zlib_ng.error as exc:  # type: ignore[misc]
            raise ValueError(f"a damaged saved listing ({exc})") from None

    members = Members()
    for _ in range(0, count, _BATCH):
        members.names += section().decode("utf-8", "surrogateescape").split("\0")
    numbers = section()
    members.offsets = array("q", numbers[: 8 * count])
    members.sizes = array("q", numbers[8 * count : 16 * count])
    members.kinds = bytearray(numbers[16 * count :])
    values = array("q", section())
    if at != len(data):
        raise ValueError("a saved listing with trailing bytes")
    if len(members.names) != count or len(members.kinds) != count or len(values) != 5 * codec_count:
        raise ValueError("a saved listing whose columns do not add up")
    codecs = {
        values[j]: (values[j + 1], values[j + 2], values[j + 3], values[j + 4])
        for j in range(0, len(values), 5)
    }
    return Listing(members, codecs, verified=verified)
