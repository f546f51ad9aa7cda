"""Our shards read back through the one tar parser (`tarscan`): verify, export and the writer's index.

Shards are plain POSIX tars in WebDataset layout, read sequentially, so a shard on object storage is
fetched once, front to back. A damaged or truncated shard raises LayoutError naming it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

import numpy as np

from .errors import LayoutError
from .layout import MEMBERS, split_member
from .tarscan import BLOCK, FILE, scan

if TYPE_CHECKING:  # the plan imports this module for tar sizes: it must not load pyarrow
    import pyarrow as pa


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


# (sample key, extension) -> (offset of the member's data in the tar, size)
MemberIndex = dict[tuple[str, str], tuple[int, int]]
_HEADER = BLOCK
# ustar header fields the fast check reads: the name, 11 octal digits of the size, the type flag
_NAME, _SIZE, _TYPE = (0, 100), (124, 135), 156
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


def member_cost(name_length: int, size: int) -> int:
    """Bytes one member takes in a tar: header(s) (a long name adds two) plus data padded to a block."""
    header = _HEADER + (2 * _HEADER if name_length > _LONG_NAME else 0)
    return header + -(-size // _HEADER) * _HEADER


def archive_overhead() -> int:
    """Upper bound of the bytes a tar adds at its end (two zero blocks, record padding)."""
    return 2 * _HEADER + _RECORD


def tiles(data: bytes, frames: pa.Table, shard: str) -> bool:
    """True when `frames` lists exactly the members of the tar bytes `data`, names and sizes included.

    The fast check of one shard against its frames table: one read, numpy over the member headers.

    A shard written by `convert` is tiled exactly by the members its frames table lists: each member's
    512-byte header sits right after the previous member's padded data, and zero blocks follow the last.
    So, once its sha256 matches the manifest, checking that the listed members tile the file and that
    each header holds the listed name, size and the regular-file type proves what the member-by-member
    parse proves, at the speed of sha256 and numpy rather than of a Python loop per member.

    Anything unexpected (a PAX header for a long name, a gap, a name that differs) returns False: the
    caller then runs the member-by-member check, which names the problem.
    """
    rows = frames.num_rows
    keys = frames["key"].to_pylist()
    if rows == 0 or len(set(keys)) != rows or set(frames["shard"].to_pylist()) != {shard}:
        return False  # plain Python here: no Arrow compute thread pool started for this check
    offsets = np.concatenate([frames[f"{ext}_offset"].to_numpy() for ext in MEMBERS]).astype(np.int64)
    sizes = np.concatenate([frames[f"{ext}_size"].to_numpy() for ext in MEMBERS]).astype(np.int64)
    names = [f"{key}.{ext}".encode() for ext in MEMBERS for key in keys]
    if max(map(len, names)) > _NAME[1] - 1:
        return False  # a PAX header precedes such a member: not tiled by plain headers
    order = np.argsort(offsets, kind="stable")
    offsets, sizes = offsets[order], sizes[order]
    headers = offsets - BLOCK
    ends = offsets + (sizes + BLOCK - 1) // BLOCK * BLOCK
    buf = np.frombuffer(data, dtype=np.uint8)
    if headers[0] != 0 or not np.array_equal(headers[1:], ends[:-1]) or ends[-1] + 2 * BLOCK > len(buf):
        return False
    if buf[ends[-1] :].any():
        return False  # after the last member: zero blocks only
    blocks = buf[: len(buf) // BLOCK * BLOCK].reshape(-1, BLOCK)[headers // BLOCK]  # one row per header
    if not (blocks[:, _TYPE] == ord("0")).all():
        return False
    digits = blocks[:, _SIZE[0] : _SIZE[1]].astype(np.int64) - ord("0")
    if ((digits < 0) | (digits > 7)).any():
        return False
    if not np.array_equal(digits @ (8 ** np.arange(_SIZE[1] - _SIZE[0] - 1, -1, -1)), sizes):
        return False
    expected = np.array([names[i] for i in order], dtype=f"S{_NAME[1]}").view(np.uint8).reshape(-1, _NAME[1])
    return bool(np.array_equal(blocks[:, _NAME[0] : _NAME[1]], expected))
