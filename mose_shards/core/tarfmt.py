"""Our shards read back through the one tar parser (`tarscan`): verify, export and the writer's index.

Shards are plain POSIX tars in WebDataset layout, read sequentially, so a shard on object storage is
fetched once, front to back. A damaged or truncated shard raises LayoutError naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from .errors import LayoutError
from .layout import split_member
from .tarscan import FILE, scan


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


# (sample key, extension) -> (offset of the member's data in the tar, size)
MemberIndex = dict[tuple[str, str], tuple[int, int]]
_HEADER = 512
_RECORD = 20 * _HEADER  # tarfile pads the archive to whole records
_LONG_NAME = 99  # longer member names cost a PAX header (two more blocks)


def index_members(stream: Readable, where: str) -> MemberIndex:
    """(key, ext) -> (data offset, size) of every member; every byte of the stream is read."""
    out: MemberIndex = {}
    for member in scan(stream, where, seek_gap=None, drain=True):
        _check_regular(member.kind, member.name, where)
        out[split_member(member.name)] = (member.offset, member.size)
    return out


def iter_samples(stream: Readable, where: str) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) per sample, in tar order: consecutive members that share a key."""
    key: str | None = None
    members: dict[str, bytes] = {}
    for member in scan(stream, where, seek_gap=None, read_data=True):
        _check_regular(member.kind, member.name, where)
        name, ext = split_member(member.name)
        if name != key and members:
            yield str(key), members
            members = {}
        key = name
        members[ext] = member.data or b""
    if members:
        yield str(key), members


def _check_regular(kind: str, name: str, where: str) -> None:
    if kind != FILE:
        raise LayoutError(f"{where}: member {name} is not a regular file")


def member_cost(name: str, size: int) -> int:
    """Bytes one member takes in a tar: header(s) plus data padded to a block."""
    header = _HEADER + (2 * _HEADER if len(name) > _LONG_NAME else 0)
    return header + -(-size // _HEADER) * _HEADER


def archive_overhead() -> int:
    """Upper bound of the bytes a tar adds at its end (two zero blocks, record padding)."""
    return 2 * _HEADER + _RECORD
