"""Frames and masks by (video id, frame index), with ranged reads of their shard, never the shard.

The `frames` table gives each member's offset; a frame's `.jpg`, `.json` and `.png` are adjacent in
the tar, and a video's frames follow each other, so a clip is one ranged read (`read_clip`), and a
frame read alone brings the ones after it (readahead.py): reading a video frame after frame, or as
SAM 2's sampler does, costs one request per window of frames, not one per frame.

The index is the loader's one `SplitIndex` (index.py), shared in the process with every ClipDataset
and ShardRawDataset of the output (`index.shared_index`), read on first use. `shared_reader` keeps
one `FrameReader` per output and process. A reader pickles with its manifest and the indexes it has
loaded, so a DataLoader worker reads neither again; its storage client is made where it lands.
Reads are retried under a `RetryPolicy` (retry.py) and checked against the frames table, read-ahead
bytes as well as the others.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..core import manifest
from ..core.errors import ConfigError
from ..core.storage import StorageOptions, Store
from .decode import check_short_side, decode_frame_mask, decode_image
from .framefetch import PartialVideo, fetch_frames
from .index import MEMBER_COLUMNS, IndexedVideo, SplitIndex, options_key, shared_index
from .readahead import READ_AHEAD_BYTES, READ_AHEAD_FRAMES, ReadAhead
from .retry import RetryingStore, RetryPolicy
from .stream import Reader, Sample, with_session

Row = dict[str, Any]
MEMBERS = MEMBER_COLUMNS
READS_AT_ONCE = 4  # the spans of a clip whose frames lie apart, read in parallel


class FrameReader:
    """Random access to the frames of an output; each split's index is loaded once, on demand.

    `read_ahead` (frames) and `read_ahead_bytes` bound what a read of one frame brings along
    (readahead.py; `read_ahead=1` reads the frame alone); `retry` governs every read; with
    `verify`, every member handed out is checked against the frames table's sha256.
    """

    def __init__(
        self, url: str, storage_options: StorageOptions | None = None, *, read_ahead: int = READ_AHEAD_FRAMES,
        read_ahead_bytes: int = READ_AHEAD_BYTES, retry: RetryPolicy | None = None, verify: bool = False,
    ) -> None:  # fmt: skip
        self.url = url
        self.storage_options = dict(storage_options or {})
        self.retry, self.verify = retry or RetryPolicy(), verify
        self._ahead_options = (read_ahead, read_ahead_bytes)
        ReadAhead(read_ahead, read_ahead_bytes)  # checks the options now
        self._indexes: dict[str, SplitIndex] = {}
        store, self._doc = manifest.read(url, self.storage_options)
        self._root = store.url
        self._local: tuple[int, Store, Reader, ReadAhead, ThreadPoolExecutor] | None = None
        self._inherited: Any = None
        self._lock = threading.Lock()
        self._made(store)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()  # the manifest and the loaded indexes travel; clients do not
        state["_local"] = state["_lock"] = state["_inherited"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def _made(self, store: Store | None = None) -> tuple[Store, Reader, ReadAhead, ThreadPoolExecutor]:
        """This process's store, range reader, read-ahead and read threads (made anew after a fork
        or an unpickling: fsspec clients and threads do not cross processes)."""
        local = self._local
        if local is None or local[0] != os.getpid():
            with self._lock:
                return self._make(store)
        return local[1:]

    def _make(self, store: Store | None) -> tuple[Store, Reader, ReadAhead, ThreadPoolExecutor]:
        local = self._local
        if local is None or local[0] != os.getpid():
            # the parent's client stays referenced: freed here, s3fs's finalizer would try to close
            # it on the parent's event loop, which does not run in this process
            self._inherited = local
            # a forked worker's client reuses the parent's S3 session (service models loaded)
            options = with_session(self.storage_options, local[1] if local is not None else None)
            store = store or Store(self._root, options)
            pool = ThreadPoolExecutor(READS_AT_ONCE, thread_name_prefix="mose-shards-clip")
            local = (os.getpid(), store, Reader(store, self.retry), ReadAhead(*self._ahead_options), pool)
            self._local = local
        return local[1:]

    @property
    def store(self) -> Store:
        """The output's store."""
        return self._made()[0]

    @property
    def doc(self) -> dict[str, Any]:
        """The manifest."""
        return self._doc

    @property
    def ahead(self) -> ReadAhead:
        """This process's read-ahead windows of this reader."""
        return self._made()[2]

    def index(self, split: str) -> SplitIndex:
        """The index of a split (loaded at the first call, or found loaded in this process)."""
        found = self._indexes.get(split)
        if found is None:
            store = RetryingStore(self.store, self.retry)
            found = self._indexes.setdefault(split, shared_index(store, self._doc, split, self.verify))
        return found

    def find(
        self, video_id: str, frame_index: int | None = None, split: str | None = None
    ) -> tuple[SplitIndex, int]:
        """(index, video position) of the video in the first split, in name order, that holds it and
        the frame (any frame when None); ConfigError naming what was not found where."""
        splits = manifest.select_splits(self.store, self._doc, [split] if split is not None else None)
        for name in sorted(splits):
            index = self.index(name)
            video = index.position(video_id)
            length = -1 if video is None else int(index.first_frame[video + 1] - index.first_frame[video])
            if video is not None and (frame_index is None or 0 <= frame_index < length):
                return index, video
        what = f"frame {frame_index} of video" if frame_index is not None else "video"
        many = "s" if len(splits) > 1 else ""
        raise ConfigError(f"{self.url}: no {what} {video_id!r} in split{many} {', '.join(splits)}")

    def locate(self, video_id: str, frame_index: int, split: str | None = None) -> tuple[str, Row]:
        """(split, frames-table row) of a frame; ConfigError naming what was not found."""
        index, video = self.find(video_id, frame_index, split)
        entry = index.video(video)
        out: Row = {
            "video_id": video_id,
            "frame_index": frame_index,
            "frame_name": str(entry.frame_names[frame_index]),
            "has_mask": bool(entry.has_mask[frame_index]),
            "num_objects": int(entry.num_objects[frame_index]),
            "shard": entry.shard.path,
        }
        out.update(zip(MEMBERS, (int(v) for v in entry.members[frame_index]), strict=True))
        return index.split, out

    def fetch(self, entry: IndexedVideo, positions: Sequence[int]) -> PartialVideo:
        """The given frames of a video, in one coalesced read where they lie together (retried,
        checked); no read-ahead."""
        _, reader, _, pool = self._made()
        return fetch_frames(reader, entry, list(positions), pool, self.verify)

    def sample(self, index: SplitIndex, video: int, position: int) -> Sample:
        """One frame's members {jpg, png, json}, through the read-ahead."""
        entry = index.video(video)
        return self.ahead.sample(index.split, entry, video, position, self.fetch)

    def plan(self, index: SplitIndex, video: int, step: int, stop: int) -> None:
        """Tell the read-ahead which frames of a video a sampler draws from (every `step`-th below
        `stop`), so that a window brings those."""
        self.ahead.plan(index.split, video, step, stop)

    def read(
        self, video_id: str, frame_index: int, split: str | None = None, short_side: int | None = None
    ) -> dict[str, Any]:
        """{split, video_id, frame_index, frame_name, image (HxWx3 uint8), mask (HxW uint8 or None)};
        with `short_side`, image and mask are resized so that their shorter side is that size. The
        frames after it come in the same read, for the reads that follow (readahead.py)."""
        check_short_side(short_side)
        index, video = self.find(video_id, frame_index, split)
        return _frame(index, video, frame_index, self.sample(index, video, frame_index), short_side)

    def read_clip(
        self, video: str, frames: Sequence[int], split: str | None = None, short_side: int | None = None
    ) -> list[dict[str, Any]]:
        """What `read` gives for each of the frames (indices, in the order given), with one request
        for all of them when they lie together in the shard (framefetch.clip_spans)."""
        check_short_side(short_side)
        wanted = [int(f) for f in frames]
        if not wanted:
            return []
        index, position = self.find(video, None, split)
        entry = index.video(position)
        bad = [f for f in wanted if not 0 <= f < entry.num_frames]
        if bad:
            raise ConfigError(f"{self.url}: no frame {bad[0]} of video {video!r} in {index.split}")
        samples = self.fetch(entry, sorted(set(wanted)))
        return [_frame(index, position, f, samples[f], short_side) for f in wanted]


def _frame(
    index: SplitIndex, video: int, position: int, sample: Sample, short_side: int | None
) -> dict[str, Any]:
    entry = index.video(video)
    return {
        "split": index.split,
        "video_id": entry.video_id,
        "frame_index": position,
        "frame_name": str(entry.frame_names[position]),
        "image": decode_image(sample["jpg"], short_side),
        "mask": decode_frame_mask(sample["png"], bool(entry.has_mask[position]), short_side),
    }


def reader_key(url: str, storage_options: StorageOptions | None = None) -> str:
    """A short name for (output, options), equal in every process: the key of `shared_reader`."""
    return options_key(url, storage_options)


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


def adopt_reader(key: str, reader: FrameReader) -> FrameReader:
    """Make an unpickled reader this process's shared reader under `key`, unless there is one."""
    with _SHARED_LOCK:
        return _SHARED.setdefault(key, reader)


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
    return FrameReader(url, storage_options, read_ahead=1).read(video_id, frame_index, split, short_side)
