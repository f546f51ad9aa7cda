"""The one tar member parser: shards are read back (verify, export, the writer's index) through here.

Shards are plain POSIX tars in WebDataset layout; the stdlib reads them. Streams are read sequentially
(`r|`), so a shard on object storage is fetched once, front to back.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

from .layout import split_member

# (sample key, extension) -> (offset of the member's data in the tar, size)
MemberIndex = dict[tuple[str, str], tuple[int, int]]
_HEADER = 512
_RECORD = 20 * _HEADER  # tarfile pads the archive to whole records
_LONG_NAME = 99  # longer member names cost a PAX header (two more blocks)
# What a broken or truncated tar raises while it is parsed.
TAR_ERRORS = (tarfile.TarError, EOFError)


@dataclass(frozen=True)
class Member:
    key: str
    ext: str
    offset: int  # of the data, in the tar
    size: int
    data: bytes | None  # read only when asked for


def iter_members(stream: IO[bytes], *, read_data: bool = False) -> Iterator[Member]:
    """Every member of a tar stream, in order; ValueError for a member that is not a regular file."""
    with tarfile.open(fileobj=stream, mode="r|") as archive:
        for info in archive:
            data = None
            if read_data:
                handle = archive.extractfile(info)
                if handle is None:
                    raise ValueError(f"member {info.name} is not a regular file")
                data = handle.read()
            key, ext = split_member(info.name)
            yield Member(key, ext, info.offset_data, info.size, data)


def index_members(stream: IO[bytes]) -> MemberIndex:
    """(key, ext) -> (data offset, size) of every member, from the headers alone."""
    return {(m.key, m.ext): (m.offset, m.size) for m in iter_members(stream)}


def iter_samples(stream: IO[bytes]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) per sample, in tar order: consecutive members that share a key."""
    key: str | None = None
    members: dict[str, bytes] = {}
    for member in iter_members(stream, read_data=True):
        if member.key != key and members:
            yield str(key), members
            members = {}
        key = member.key
        members[member.ext] = member.data or b""
    if members:
        yield str(key), members


def member_cost(name: str, size: int) -> int:
    """Bytes one member takes in a tar: header(s) plus data padded to a block."""
    header = _HEADER + (2 * _HEADER if len(name) > _LONG_NAME else 0)
    return header + -(-size // _HEADER) * _HEADER


def archive_overhead() -> int:
    """Upper bound of the bytes a tar adds at its end (two zero blocks, record padding)."""
    return 2 * _HEADER + _RECORD
