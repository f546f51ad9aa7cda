"""The fast check of one shard against its frames table: one read, numpy over the member headers.

A shard written by `convert` is tiled exactly by the members its frames table lists: each member's
512-byte header sits right after the previous member's padded data, and zero blocks follow the last.
So, once its sha256 matches the manifest, checking that the listed members tile the file and that
each header holds the listed name, size and the regular-file type proves what the member-by-member
parse proves, at the speed of sha256 and numpy rather than of a Python loop per member.

Anything unexpected (a PAX header for a long name, a gap, a name that differs) returns False: the
caller then runs the member-by-member check, which names the problem.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..core.layout import MEMBERS

BLOCK = 512
NAME, SIZE, TYPE = (0, 100), (124, 135), 156  # name field, 11 octal digits of the size, typeflag


def tiles(data: bytes, frames: pa.Table, shard: str) -> bool:
    """True when `frames` lists exactly the members of the tar bytes `data`, names and sizes included."""
    rows = frames.num_rows
    keys = frames["key"].to_pylist()
    if rows == 0 or len(set(keys)) != rows or set(frames["shard"].to_pylist()) != {shard}:
        return False  # plain Python here: no Arrow compute thread pool started for this check
    offsets = np.concatenate([frames[f"{ext}_offset"].to_numpy() for ext in MEMBERS]).astype(np.int64)
    sizes = np.concatenate([frames[f"{ext}_size"].to_numpy() for ext in MEMBERS]).astype(np.int64)
    names = [f"{key}.{ext}".encode() for ext in MEMBERS for key in keys]
    if max(map(len, names)) > NAME[1] - 1:
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
    if not (blocks[:, TYPE] == ord("0")).all():
        return False
    digits = blocks[:, SIZE[0] : SIZE[1]].astype(np.int64) - ord("0")
    if ((digits < 0) | (digits > 7)).any():
        return False
    if not np.array_equal(digits @ (8 ** np.arange(SIZE[1] - SIZE[0] - 1, -1, -1)), sizes):
        return False
    expected = np.array([names[i] for i in order], dtype=f"S{NAME[1]}").view(np.uint8).reshape(-1, NAME[1])
    return bool(np.array_equal(blocks[:, NAME[0] : NAME[1]], expected))
