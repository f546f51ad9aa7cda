"""manifest + `frames` table -> a `SplitIndex`: every video's frames and byte range, as arrays.

Only the frames table is read (a few columns, one small Parquet part per shard, fetched in parallel),
so the loader knows every video's length, annotated frames and objects before reading any shard.
The index is columnar (numpy and Arrow arrays, no Python object per frame or video): a MOSEv2-size
split (470k frames) costs tens of MB per DataLoader worker and pickles as a few buffers.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..core.errors import OutputError
from ..core.manifest import split_entry
from ..core.storage import StorageOptions, Store
from ..core.tables import read_parts

TAR_BLOCK = 512
COLUMNS = (
    "video_id", "frame_index", "frame_name", "has_mask", "num_objects", "shard",
    "jpg_offset", "jpg_size", "png_offset", "png_size", "json_offset", "json_size",
)  # fmt: skip
MEMBER_COLUMNS = COLUMNS[6:]  # (jpg offset, jpg size, png offset, png size, json offset, json size)
VERIFY_COLUMNS = ("key", "jpg_sha256", "png_sha256")


@dataclass(frozen=True)
class Shard:
    """A shard as the manifest lists it: path relative to the output root, size and content hash."""

    path: str
    bytes: int
    sha256: str


class FrameObjects(Sequence[tuple[int, ...]]):
    """Per frame position of one video: its object ids, ascending (from the masks table)."""

    def __init__(self, ids: np.ndarray, starts: np.ndarray) -> None:
        self.ids, self.starts = ids, starts  # starts: len(frames) + 1 offsets into ids

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, p: int) -> tuple[int, ...]:  # type: ignore[override]
        return tuple(int(i) for i in self.ids[int(self.starts[p]) : int(self.starts[p + 1])])


@dataclass(frozen=True)
class IndexedVideo:
    """One video as the loader sees it: where its samples are and what each frame holds (array views)."""

    video_id: str
    shard: Shard
    start: int  # byte range [start, end) of the shard holding exactly this video's tar members
    end: int
    frame_names: pa.Array
    has_mask: np.ndarray  # bool per frame
    num_objects: np.ndarray  # int32 per frame
    members: np.ndarray  # int64 [frames, 6]: (jpg offset, jpg size, png offset, png size, json off, size)
    keys: pa.Array | None = None  # sample keys, with sha256 digests [frames, 2, 32] when verifying
    digests: np.ndarray | None = None
    has_png_digest: np.ndarray | None = None
    objects: FrameObjects | None = None  # when the masks table was read

    @property
    def num_frames(self) -> int:
        return len(self.has_mask)


@dataclass
class SplitIndex:
    """Videos of a split in shard order (then tar order); frames of video i are rows
    first_frame[i]:first_frame[i+1] of the frame arrays, in frame order."""

    shards: list[Shard]
    video_ids: pa.Array  # string per video
    video_shard: np.ndarray  # int32 index into shards
    byte_start: np.ndarray  # int64
    byte_end: np.ndarray  # int64
    first_frame: np.ndarray  # int64, len(videos) + 1
    frame_names: pa.Array
    has_mask: np.ndarray
    num_objects: np.ndarray
    members: np.ndarray
    keys: pa.Array | None = None
    digests: np.ndarray | None = None  # uint8 [frames, 2, 32]: jpg and png sha256
    has_png_digest: np.ndarray | None = None
    object_ids: np.ndarray | None = None  # uint8, every frame's objects end to end (objects.py)
    object_start: np.ndarray | None = None  # int64, len(frames) + 1
    split: str = ""
    _by_id: dict[str, int] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.video_shard)

    def position(self, video_id: str) -> int | None:
        """The index of a video by id (None when the split has no such video); a dict made on first use."""
        by_id = self._by_id
        if by_id is None:
            by_id = self._by_id = {v: i for i, v in enumerate(self.video_ids.to_pylist())}
        return by_id.get(video_id)

    def video(self, i: int) -> IndexedVideo:
        a, b = int(self.first_frame[i]), int(self.first_frame[i + 1])
        return IndexedVideo(
            video_id=str(self.video_ids[i]),
            shard=self.shards[int(self.video_shard[i])],
            start=int(self.byte_start[i]),
            end=int(self.byte_end[i]),
            frame_names=self.frame_names[a:b],
            has_mask=self.has_mask[a:b],
            num_objects=self.num_objects[a:b],
            members=self.members[a:b],
            keys=None if self.keys is None else self.keys[a:b],
            digests=None if self.digests is None else self.digests[a:b],
            has_png_digest=None if self.has_png_digest is None else self.has_png_digest[a:b],
            objects=None if self.object_ids is None or self.object_start is None
            else FrameObjects(self.object_ids, self.object_start[a : b + 1]),
        )  # fmt: skip

    @property
    def videos(self) -> VideoList:
        """The videos as a sequence of `IndexedVideo` views, made on access."""
        return VideoList(self)

    def frame_counts(self) -> np.ndarray:
        return np.diff(self.first_frame)

    def nbytes(self) -> int:
        """Memory held by the arrays."""
        arrays = [self.video_shard, self.byte_start, self.byte_end, self.first_frame, self.has_mask,
                  self.num_objects, self.members, self.digests, self.has_png_digest, self.object_ids,
                  self.object_start]  # fmt: skip
        total = sum(a.nbytes for a in arrays if a is not None)
        return total + sum(a.nbytes for a in (self.video_ids, self.frame_names, self.keys) if a is not None)


class VideoList(Sequence[IndexedVideo]):
    def __init__(self, split: SplitIndex) -> None:
        self._split = split

    def __len__(self) -> int:
        return len(self._split)

    def __getitem__(self, i: int) -> IndexedVideo:  # type: ignore[override]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self._split.video(i % len(self))


def _round_up(n: np.ndarray) -> np.ndarray:
    return -(-n // TAR_BLOCK) * TAR_BLOCK


def build_index(tables: list[pa.Table], shards: list[Shard], verify: bool = False) -> SplitIndex:
    """Frames-table parts (one per shard, any row order) -> the split's index."""
    table = pa.concat_tables(tables) if tables else None
    if table is None or table.num_rows == 0:
        return _empty(shards)
    by_path = {s.path: i for i, s in enumerate(shards)}
    shard_names = table.column("shard").combine_chunks().dictionary_encode()
    try:
        shard_of_name = np.array([by_path[str(n)] for n in shard_names.dictionary], dtype=np.int32)
    except KeyError as exc:
        raise OutputError(
            f"the frames table names shard {exc.args[0]!r}, which the manifest does not list"
        ) from None
    shard = shard_of_name[arrow_numpy(shard_names.indices)]
    members = np.stack([_ints(table, c) for c in MEMBER_COLUMNS], axis=1)
    # tar order: by shard, then offset; a video's frames are adjacent there
    order = np.lexsort((members[:, 0], shard))
    video_codes = table.column("video_id").combine_chunks().dictionary_encode().indices
    video_codes = arrow_numpy(video_codes)
    shard_o, video_o = shard[order], video_codes[order]
    change = np.flatnonzero((np.diff(shard_o) != 0) | (np.diff(video_o) != 0)) + 1
    starts = np.concatenate([[0], change])
    run = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(order))))
    frame_index = _ints(table, "frame_index")[order]
    order = order[np.lexsort((frame_index, run))]  # frame order inside each video
    members = members[order]
    ends = _round_up(np.maximum.reduce([members[:, 0] + members[:, 1], members[:, 2] + members[:, 3],
                                        members[:, 4] + members[:, 5]]))  # fmt: skip
    first_frame = np.append(starts, len(order)).astype(np.int64)
    video_shard = shard[order][starts].astype(np.int32)
    byte_end = np.maximum.reduceat(ends, starts)
    byte_start = np.zeros(len(starts), np.int64)  # a video's range starts where the previous one ends
    same = video_shard[1:] == video_shard[:-1]
    byte_start[1:] = np.where(same, byte_end[:-1], 0)
    take = _arrow_positions(order)
    index = SplitIndex(
        shards=shards,
        video_ids=table.column("video_id").take(take).combine_chunks().take(_arrow_positions(starts)),
        video_shard=video_shard,
        byte_start=byte_start,
        byte_end=byte_end,
        first_frame=first_frame,
        frame_names=table.column("frame_name").take(take).combine_chunks(),
        has_mask=arrow_numpy(table.column("has_mask"))[order],
        num_objects=_ints(table, "num_objects")[order].astype(np.int32),
        members=members,
    )
    if verify:
        _add_digests(index, table, order)
    return index


def _arrow_positions(positions: np.ndarray) -> pa.Array:
    """Row positions as an Arrow int64 array, from the numpy buffer: `pa.array` would import pandas
    (~0.3 s of a worker's start) to check what kind of sequence it was given."""
    values = np.ascontiguousarray(positions, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def arrow_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An integer or boolean array's values, from its buffer where it has no nulls: Arrow's own `to_numpy`
    (and `fill_null`, `pa.scalar`) import pandas, ~0.3 s of every process's start."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_boolean(values.type) and not values.null_count:
        return arrow_numpy(values.cast(pa.uint8())).astype(bool)
    kind = values.type
    if values.null_count or not pa.types.is_integer(kind):
        return values.to_numpy(zero_copy_only=False)
    dtype = np.dtype(f"{'u' if pa.types.is_unsigned_integer(kind) else 'i'}{kind.bit_width // 8}")
    return np.frombuffer(values.buffers()[1], dtype)[values.offset : values.offset + len(values)]


def _ints(table: pa.Table, column: str) -> np.ndarray:
    return arrow_numpy(table.column(column)).astype(np.int64)


def _hex_digests(column: pa.ChunkedArray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sha256 hex strings -> uint8 [n, 32] (zeros where null) and a presence flag."""
    values = column.take(_arrow_positions(order)).combine_chunks()
    present = ~arrow_numpy(values.is_null())
    raw = (values.fill_null("0" * 64) if values.null_count else values).cast(pa.binary())
    offsets = np.frombuffer(raw.buffers()[1], np.int32)[raw.offset : raw.offset + len(raw) + 1]
    if len(raw) and not np.all(np.diff(offsets) == 64):
        raise OutputError("the frames table holds a sha256 that is not 64 hex digits")
    data = np.frombuffer(raw.buffers()[2], np.uint8) if len(raw) else np.zeros(0, np.uint8)
    flat = data[offsets[0] : offsets[-1]].reshape(len(values), 64) if len(raw) else data.reshape(0, 64)
    nibbles = np.where(flat >= ord("a"), flat - ord("a") + 10, flat - ord("0")).astype(np.uint8)
    return (nibbles[:, 0::2] << 4 | nibbles[:, 1::2]).astype(np.uint8), present


def _add_digests(index: SplitIndex, table: pa.Table, order: np.ndarray) -> None:
    jpg, _ = _hex_digests(table.column("jpg_sha256"), order)
    png, present = _hex_digests(table.column("png_sha256"), order)
    index.digests = np.stack([jpg, png], axis=1)
    index.has_png_digest = present
    index.keys = table.column("key").take(_arrow_positions(order)).combine_chunks()


def _empty(shards: list[Shard]) -> SplitIndex:
    none, names = np.zeros(0, np.int64), pa.nulls(0, pa.string())
    return SplitIndex(
        shards, names, none.astype(np.int32), none, none, np.zeros(1, np.int64),
        names, none.astype(bool), none.astype(np.int32), np.zeros((0, 6), np.int64),
    )  # fmt: skip


def options_key(url: str, storage_options: StorageOptions | None = None) -> str:
    """A short name for (output, storage options), equal in every process."""
    text = json.dumps([url.rstrip("/"), dict(storage_options or {})], sort_keys=True, default=_plain_repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain_repr(value: Any) -> str:
    """How an option that is not JSON (an S3 session handed to a worker) enters the key: by type, so
    that a worker's key equals its parent's."""
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


# Every index in use in this process, by (output, options, split, the manifest's entry of the split):
# the ClipDatasets, FrameReaders and SAM 2 datasets of one output share one, so the frames table is
# read once per process. Weak: an index no reader holds any more is freed, and read again if asked.
_LOADED: weakref.WeakValueDictionary[tuple[str, bool], SplitIndex] = weakref.WeakValueDictionary()
_LOADED_LOCK = threading.Lock()


def _after_fork() -> None:
    global _LOADED_LOCK
    _LOADED_LOCK = threading.Lock()  # one a parent's thread held at the fork would never be released


os.register_at_fork(after_in_child=_after_fork)


def _registry_key(store: Store, doc: dict[str, Any], split: str) -> str:
    described = json.dumps(split_entry(store, doc, split), sort_keys=True, default=str).encode()
    return f"{options_key(store.url, store.storage_options)}/{hashlib.sha256(described).hexdigest()}/{split}"


def loaded_index(store: Store, doc: dict[str, Any], split: str, verify: bool = False) -> SplitIndex | None:
    """The index of a split already loaded in this process (see `shared_index`), if any."""
    key = _registry_key(store, doc, split)
    with _LOADED_LOCK:
        return _LOADED.get((key, True)) or (None if verify else _LOADED.get((key, False)))


def shared_index(store: Store, doc: dict[str, Any], split: str, verify: bool = False) -> SplitIndex:
    """`load_index`, once per process for each output and split: an index already loaded here (by a
    ClipDataset, a FrameReader or a ShardRawDataset) is handed out again; one with sha256 digests
    serves a reader that does not verify too."""
    found = loaded_index(store, doc, split, verify)
    if found is not None:
        return found
    index = load_index(store, doc, split, verify)
    with _LOADED_LOCK:
        return _LOADED.setdefault((_registry_key(store, doc, split), verify), index)


def load_index(store: Store, doc: dict[str, Any], split: str, verify: bool = False) -> SplitIndex:
    """The index of a split, in manifest (shard) order; `verify` also loads keys and sha256 digests."""
    entry = split_entry(store, doc, split)
    shards = [Shard(s["path"], int(s["bytes"]), s["sha256"]) for s in entry["shards"]]
    columns = COLUMNS + (VERIFY_COLUMNS if verify else ())
    index = build_index(read_parts(store, entry["tables"]["frames"], list(columns)), shards, verify)
    index.split = split
    return index
