"""One frame and its mask by (video id, frame index), with one ranged read of its shard.

The `frames` table gives each member's offset; a frame's `.jpg`, `.json` and `.png` are adjacent in
the tar, so a single GET covers them. The shard itself is never downloaded.

The table is read per split by the loader's index builder (`index.load_index`, the one reader of
the frames table) and held as a few numpy columns by video id (`SplitFrames`), on first use.
`shared_reader` keeps one `FrameReader` per output and process, so every consumer in a process (the
SAM 2 adapter, its iopath handler, direct reads) loads the index once; a reader pickles as its URL
and options alone and reloads lazily where it lands.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core import manifest
from ..core.errors import ConfigError
from ..core.storage import StorageOptions, Store
from .decode import check_short_side, decode_frame_mask, decode_image
from .index import load_index

Row = dict[str, Any]
MEMBERS = ("jpg_offset", "jpg_size", "png_offset", "png_size", "json_offset", "json_size")


@dataclass(frozen=True)
class SplitFrames:
    """One split's frames table, columnar: a video's rows are contiguous and in frame order."""

    split: str
    videos: dict[str, range]  # video id -> its rows, in sorted id order
    frame_names: np.ndarray  # per row, str
    has_mask: np.ndarray  # bool
    num_objects: np.ndarray  # int32
    shard_ids: np.ndarray  # int32, into `shards`
    shards: tuple[str, ...]  # relative to the output root
    members: np.ndarray  # int64 [rows, 6]: MEMBERS

    def row(self, video_id: str, frame_index: int) -> int | None:
        rows = self.videos.get(video_id)
        return rows[frame_index] if rows is not None and 0 <= frame_index < len(rows) else None

    def as_dict(self, video_id: str, row: int) -> Row:
        """The frames-table row (the loader's COLUMNS) of one of the video's rows, as a dict."""
        out: Row = {
            "video_id": video_id,
            "frame_index": row - self.videos[video_id].start,
            "frame_name": str(self.frame_names[row]),
            "has_mask": bool(self.has_mask[row]),
            "num_objects": int(self.num_objects[row]),
            "shard": self.shards[int(self.shard_ids[row])],
        }
        out.update(zip(MEMBERS, (int(v) for v in self.members[row]), strict=True))
        return out


def split_frames(store: Store, doc: dict[str, Any], split: str) -> SplitFrames:
    """A split's frames table, read by the loader's index builder (`index.load_index`), by video id."""
    index = load_index(store, doc, split)
    first = index.first_frame
    ids = index.video_ids.to_pylist()
    return SplitFrames(
        split=split,
        videos={v: range(int(first[i]), int(first[i + 1])) for i, v in sorted(enumerate(ids), key=_by_id)},
        frame_names=np.asarray(index.frame_names.to_pylist(), dtype=str),
        has_mask=index.has_mask,
        num_objects=index.num_objects,
        shard_ids=np.repeat(index.video_shard, np.diff(first)).astype(np.int32),
        shards=tuple(s.path for s in index.shards),
        members=index.members,
    )


def _by_id(item: tuple[int, str]) -> str:
    return item[1]


class FrameReader:
    """Random access to the frames of an output; each split's frames table is read once, on demand."""

    def __init__(self, url: str, storage_options: StorageOptions | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self._lock = threading.Lock()
        self._splits: dict[str, SplitFrames] = {}
        self._store, self._doc = manifest.read(url, self.storage_options)
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}  # the index stays behind

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.url, self.storage_options = state["url"], state["storage_options"]
        self._lock, self._splits, self._pid = threading.Lock(), {}, -1

    @property
    def store(self) -> Store:
        """The output's store; made anew in a forked child (fsspec clients do not survive a fork)."""
        if self._pid != os.getpid():
            with self._lock:
                if self._pid != os.getpid():
                    # the parent's client stays referenced: freed here, s3fs's finalizer would try to
                    # close it on the parent's event loop, which does not run in this process
                    self._inherited = getattr(self, "_store", None)
                    self._store, self._doc = manifest.read(self.url, self.storage_options)
                    self._pid = os.getpid()
        return self._store

    @property
    def doc(self) -> dict[str, Any]:
        """The manifest."""
        self.store  # noqa: B018 - loads the manifest after unpickling
        return self._doc

    def frames(self, split: str) -> SplitFrames:
        """The frames table of a split (read at the first call, kept after)."""
        found = self._splits.get(split)
        if found is None:
            with self._lock:
                found = self._splits.get(split)
            if found is None:
                found = split_frames(self.store, self.doc, split)
                with self._lock:
                    found = self._splits.setdefault(split, found)
        return found

    def _find(self, video_id: str, frame_index: int, split: str | None) -> tuple[SplitFrames, int]:
        splits = manifest.select_splits(self.store, self.doc, [split] if split is not None else None)
        for name in sorted(splits):
            frames = self.frames(name)
            row = frames.row(video_id, frame_index)
            if row is not None:
                return frames, row
        raise ConfigError(f"{self.url}: no frame {frame_index} of video {video_id!r} in {', '.join(splits)}")

    def locate(self, video_id: str, frame_index: int, split: str | None = None) -> tuple[str, Row]:
        """(split, frames-table row) of a frame; ConfigError naming what was not found."""
        frames, row = self._find(video_id, frame_index, split)
        return frames.split, frames.as_dict(video_id, row)

    def fetch(self, frames: SplitFrames, row: int) -> tuple[bytes, bytes]:
        """(jpg, png) bytes of one frame with one ranged read covering both members."""
        jpg_at, jpg_size, png_at, png_size = (int(v) for v in frames.members[row, :4])
        start, end = min(jpg_at, png_at), max(jpg_at + jpg_size, png_at + png_size)
        data = self.store.read_range(frames.shards[int(frames.shard_ids[row])], start, end - start)
        return data[jpg_at - start : jpg_at - start + jpg_size], data[
            png_at - start : png_at - start + png_size
        ]

    def read(
        self, video_id: str, frame_index: int, split: str | None = None, short_side: int | None = None
    ) -> dict[str, Any]:
        """{split, video_id, frame_index, frame_name, image (HxWx3 uint8), mask (HxW uint8 or None)};
        with `short_side`, image and mask are resized so that their shorter side is that size."""
        check_short_side(short_side)
        frames, row = self._find(video_id, frame_index, split)
        jpg, png = self.fetch(frames, row)
        return {
            "split": frames.split,
            "video_id": video_id,
            "frame_index": frame_index,
            "frame_name": str(frames.frame_names[row]),
            "image": decode_image(jpg, short_side),
            "mask": decode_frame_mask(png, bool(frames.has_mask[row]), short_side),
        }


def reader_key(url: str, storage_options: StorageOptions | None = None) -> str:
    """A short name for (output, options), equal in every process: the key of `shared_reader`."""
    text = json.dumps([url.rstrip("/"), dict(storage_options or {})], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_SHARED: dict[str, FrameReader] = {}
_SHARED_LOCK = threading.Lock()


def _after_fork() -> None:
    """Fresh locks in a forked child: one held by a parent's thread at the fork would never be released."""
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()
    for reader in _SHARED.values():
        reader._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)


def shared_reader(url: str, storage_options: StorageOptions | None = None) -> FrameReader:
    """This process's FrameReader of an output (made on first use); its index is loaded once."""
    key = reader_key(url, storage_options)
    with _SHARED_LOCK:
        reader = _SHARED.get(key)
        if reader is None:
            reader = _SHARED[key] = FrameReader(url, storage_options)
        return reader


def registered_reader(key: str) -> FrameReader | None:
    """The shared reader made under `key` in this process, if any."""
    with _SHARED_LOCK:
        return _SHARED.get(key)


def read_frame(
    url: str,
    video_id: str,
    frame_index: int,
    split: str | None = None,
    storage_options: StorageOptions | None = None,
    short_side: int | None = None,
) -> dict[str, Any]:
    """One frame and its mask (None without annotation); for many frames keep a FrameReader."""
    return FrameReader(url, storage_options).read(video_id, frame_index, split, short_side)
