"""SAM 2's training data interface over shards: `ShardRawDataset`, in place of SAM 2's `PNGRawDataset`.

SAM 2 (facebookresearch/sam2, `training/dataset/`) asks a raw dataset for `get_video(idx) ->
(video, segment_loader)`; its sampler and `VOSDataset` then call `segment_loader.load(frame_idx)`
and open each `frame.image_path` with iopath's `g_pathmgr`. Here the videos come from the `frames`
table (read once per process, shared with `FrameReader`), image paths are `mose-shards://` URLs
served by an iopath `PathHandler` registered by this module, and masks come from the shards.

GETs: a frame's `.jpg` and `.png` are adjacent in its shard, so one ranged read fetches both; the
last frames read are kept in memory (`RECENT_BYTES`), so SAM 2 touching a sampled frame four times
(the sampler loads the first mask twice, `load_images` opens each image, `construct` loads each
mask) still costs one GET per frame. A frame the index says has no object costs none.

SAM 2 itself is never imported: the objects handed out have the fields of its `VOSVideo` and
`VOSFrame`, which is all its code reads.
"""

from __future__ import annotations

import gc
import io
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from ..core.errors import ConfigError, MissingDependencyError, MissingMaskError, OutputError
from ..core.maskpng import object_ids
from ..core.storage import StorageOptions, url_to_fs
from .decode import check_short_side, decode_frame_mask, decode_image
from .random_access import FrameReader, SplitFrames, reader_key, registered_reader, shared_reader

try:
    from iopath.common.file_io import PathHandler, g_pathmgr
except ImportError:  # the SAM 2 adapter needs iopath; the rest of the package does not
    raise MissingDependencyError("iopath", "sam2") from None

SCHEME = "mose-shards://"
RECENT_BYTES = 64 << 20  # member bytes kept per process: several clips of full-HD frames


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise MissingDependencyError("torch", "torch") from None
    return torch


# --- decoding: every pixel this adapter hands out goes through these two functions -------------


def image_file(jpg: bytes, short_side: int | None = None) -> io.BytesIO:
    """What `g_pathmgr.open(frame.image_path, "rb")` returns: the frame's JPEG, as stored; with
    `short_side`, the frame decoded at that size (decode.py) as a binary PPM, which Pillow opens
    without decoding anything."""
    if short_side is None:
        return io.BytesIO(jpg)
    rgb = decode_image(jpg, short_side)
    header = f"P6\n{rgb.shape[1]} {rgb.shape[0]}\n255\n".encode()
    return io.BytesIO(header + rgb.tobytes())


def segments(png: bytes, void_label: int | None, short_side: int | None = None) -> dict[int, Any]:
    """A mask PNG -> {object id: torch.BoolTensor[H, W]}, without background 0 and the void label;
    with `short_side`, the mask resized nearest-neighbour to the frames' training size.

    Ids come in the order of their first pixel (row-major), as PalettisedPNGSegmentLoader's
    `pd.unique` gives them, so SAM 2's sampler picks the same objects for the same random seed."""
    torch = _torch()
    ids = decode_frame_mask(png, True, short_side)
    assert ids is not None
    binary = {oid: ids == oid for oid in object_ids(ids, void_label)}
    first = {oid: int(np.argmax(b)) for oid, b in binary.items()}
    return {oid: torch.from_numpy(binary[oid]) for oid in sorted(binary, key=first.__getitem__)}


# --- the frames recently fetched, shared by segment loaders and the path handler -------------------


class _RecentFrames:
    """(jpg, png) of the last frames read in this process, by (reader key, split, row); LRU by bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[tuple[str, str, int], tuple[bytes, bytes]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, int], fetch: Callable[[], tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        found = fetch()
        with self._lock:
            if key not in self._items:
                self._items[key] = found
                self._bytes += len(found[0]) + len(found[1])
            while self._bytes > self.limit and len(self._items) > 1:
                _, (jpg, png) = self._items.popitem(last=False)
                self._bytes -= len(jpg) + len(png)
        return found

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def after_fork(self) -> None:
        """Empty, with a fresh lock: a forked DataLoader worker starts its own."""
        self._lock = threading.Lock()
        self._items, self._bytes = OrderedDict(), 0


RECENT = _RecentFrames(RECENT_BYTES)
os.register_at_fork(after_in_child=RECENT.after_fork)


def _frame_bytes(key: str, reader: FrameReader, frames: SplitFrames, row: int) -> tuple[bytes, bytes]:
    return RECENT.get((key, frames.split, row), lambda: reader.fetch(frames, row))


# --- image paths: mose-shards://<reader key>/<split>/<video id>/<frame name>.jpg -------------------


SIZE_MARK = "?short_side="  # a frame path's suffix asking for the training-size frame


def frame_path(key: str, split: str, video_id: str, frame_name: str, short_side: int | None = None) -> str:
    size = "" if short_side is None else f"{SIZE_MARK}{short_side}"
    return f"{SCHEME}{key}/{split}/{video_id}/{frame_name}.jpg{size}"


def _locate(path: str) -> tuple[str, FrameReader, SplitFrames, int]:
    """(reader key, shared reader, split frames, row) of a frame path; nothing is fetched."""
    key, split, video_id, frame_name = _parse(_size_of(path)[0])
    reader = registered_reader(key)
    if reader is None:
        raise OutputError(f"{path}: no ShardRawDataset of this output was made in this process")
    frames = reader.frames(split)
    rows = frames.videos.get(video_id)
    names = frames.frame_names[rows.start : rows.stop] if rows is not None else np.array([], str)
    hits = np.flatnonzero(names == frame_name)
    if rows is None or len(hits) != 1:
        raise FileNotFoundError(f"{path}: no frame {frame_name} in {split} video {video_id!r}, {reader.url}")
    return key, reader, frames, rows.start + int(hits[0])


def open_frame_path(path: str) -> io.BytesIO:
    """The JPEG behind a frame path, read through this process's shared reader of its output (the
    decoded frame at training size for a path ending in `?short_side=N`)."""
    key, reader, frames, row = _locate(path)
    jpg, _ = _frame_bytes(key, reader, frames, row)
    return image_file(jpg, _size_of(path)[1])


def _size_of(path: str) -> tuple[str, int | None]:
    """(the path without its size suffix, the short side it asks for or None)."""
    base, mark, size = path.rpartition(SIZE_MARK)
    if not mark:
        return path, None
    if not size.isdigit() or int(size) < 1:
        raise FileNotFoundError(f"{path}: {SIZE_MARK}{size} is not a positive number of pixels")
    return base, int(size)


def _parse(path: str) -> tuple[str, str, str, str]:
    body = path[len(SCHEME) :] if path.startswith(SCHEME) else ""
    key, _, rest = body.partition("/")
    split, _, rest = rest.partition("/")
    video_id, _, name = rest.rpartition("/")
    if not (key and split and video_id and name.endswith(".jpg")):
        raise FileNotFoundError(f"{path}: not a {SCHEME}<output>/<split>/<video>/<frame>.jpg path")
    return key, split, video_id, name[: -len(".jpg")]


class ShardPathHandler(PathHandler):
    """iopath handler for `mose-shards://` frame paths, so SAM 2's `load_images` opens them unchanged."""

    def _get_supported_prefixes(self) -> list[str]:
        return [SCHEME]

    def _open(self, path: str, mode: str = "r", buffering: int = -1, **kwargs: Any) -> io.BytesIO:
        self._check_kwargs(kwargs)
        if mode != "rb":
            raise ValueError(f"{path}: frames open in 'rb' mode only, not {mode!r}")
        return open_frame_path(path)

    def _exists(self, path: str, **kwargs: Any) -> bool:
        self._check_kwargs(kwargs)
        try:
            _locate(path)
        except (OSError, ValueError, LookupError):  # not ours, unknown split / video / frame
            return False
        return True

    def _isfile(self, path: str, **kwargs: Any) -> bool:
        return self._exists(path, **kwargs)


_HANDLER_LOCK = threading.Lock()


def register_path_handler() -> None:
    """Register ShardPathHandler with iopath's global g_pathmgr, once per process."""
    with _HANDLER_LOCK:
        if not any(isinstance(h, ShardPathHandler) for h in g_pathmgr._path_handlers.values()):
            g_pathmgr.register_handler(ShardPathHandler())


# --- the objects SAM 2 reads ------------------------------------------------------------------------


@dataclass
class ShardFrame:
    """The fields of SAM 2's VOSFrame."""

    frame_idx: int
    image_path: str
    data: Any = None  # torch.Tensor | None; None makes load_images open image_path
    is_conditioning_only: bool = False


@dataclass
class ShardVideo:
    """The fields of SAM 2's VOSVideo."""

    video_name: str
    video_id: int
    frames: list[ShardFrame] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)


class ShardSegmentLoader:
    """`load(frame_idx)` -> {object id: BoolTensor[H, W]} for one video, like SAM 2's segment loaders."""

    def __init__(self, key: str, reader: FrameReader, frames: SplitFrames, video_id: str,
                 void_label: int | None, short_side: int | None = None) -> None:  # fmt: skip
        self.video_id = video_id
        self._key, self._reader, self._frames, self._void = key, reader, frames, void_label
        self._short_side = short_side
        rows = frames.videos[video_id]
        self._rows = {int(frames.frame_names[r]): r for r in rows}

    def load(self, frame_idx: int) -> dict[int, Any]:
        """Every object of the frame's mask; MissingMaskError naming video and frame when it has none."""
        row = self._rows.get(int(frame_idx))
        frames = self._frames
        where = f"{self._reader.url}: {frames.split} video {self.video_id!r}"
        if row is None:
            raise MissingMaskError(f"{where} has no frame numbered {frame_idx}")
        if not frames.has_mask[row]:
            raise MissingMaskError(f"{where}, frame {frames.frame_names[row]}: this frame has no mask")
        if frames.num_objects[row] == 0:
            return {}  # known from the index: nothing to fetch
        _, png = _frame_bytes(self._key, self._reader, frames, row)
        return segments(png, self._void, self._short_side)

    def __len__(self) -> int:
        return len(self._rows)


def _plain(value: Any) -> Any:
    """Mappings and sequences as plain dicts and lists: Hydra passes OmegaConf containers, which
    fsspec clients may not take and which pickle with OmegaConf's machinery."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_plain(v) for v in value]
    return value


class ShardRawDataset:
    """SAM 2's `PNGRawDataset`, reading a mose-shards output (a folder or any fsspec URL).

    The arguments mean what they mean for PNGRawDataset: `file_list_txt` names the videos to use (one
    per line, an extension is dropped; local path or URL), `excluded_videos_list_txt` the ones to
    leave out, `truncate_video` keeps a video's first N frames, `sample_rate` every k-th of those.
    With `short_side`, frames and masks come at that shorter side (DCT-scaled decode + bilinear
    resize, nearest-resized masks), as `ClipDataset(short_side=...)` gives them.
    """

    def __init__(
        self,
        url: str,
        split: str = "train",
        file_list_txt: str | None = None,
        excluded_videos_list_txt: str | None = None,
        sample_rate: int = 1,
        truncate_video: int = -1,
        storage_options: StorageOptions | None = None,
        short_side: int | None = None,
    ) -> None:
        self.short_side = check_short_side(short_side)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
            raise ConfigError(f"sample_rate must be an integer >= 1, got {sample_rate!r}")
        if isinstance(truncate_video, bool) or not isinstance(truncate_video, int):
            raise ConfigError(f"truncate_video must be an integer, got {truncate_video!r}")
        _torch()
        self.url = os.fspath(url)
        self.split = str(split)
        self.storage_options = _plain(dict(storage_options or {}))
        self.sample_rate = sample_rate
        self.truncate_video = truncate_video
        register_path_handler()
        frames = self._frames()  # the main process reads the index here; workers on first use
        self.void_label: int | None = self._reader.doc["options"]["void_label"]
        self.video_names = self._select(frames, file_list_txt, excluded_videos_list_txt)
        # Unreachable fsspec/s3fs clients (ours from reading lists, or the caller's) must be finalized
        # here: collected in a forked DataLoader worker, they try to close on this process's event loop
        # and print "Task exception was never retrieved" tracebacks.
        gc.collect()

    @property
    def _key(self) -> str:
        return reader_key(self.url, self.storage_options)

    @property
    def _reader(self) -> FrameReader:
        return shared_reader(self.url, self.storage_options)

    def _frames(self) -> SplitFrames:
        return self._reader.frames(self.split)

    def _select(self, frames: SplitFrames, file_list: str | None, excluded_list: str | None) -> list[str]:
        subset = self._read_list(file_list) if file_list is not None else list(frames.videos)
        excluded = set(self._read_list(excluded_list)) if excluded_list is not None else set()
        names = sorted(v for v in subset if v not in excluded)
        unknown = sorted({v for v in names if v not in frames.videos})
        if unknown:
            skipped = {s["video_id"] for s in self._reader.doc["splits"][self.split].get("skipped", [])}
            shown = ", ".join(
                f"{v!r}{' (skipped by the conversion)' if v in skipped else ''}" for v in unknown[:5]
            )
            more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            where = f"the {self.split} split of {self.url}"
            raise ConfigError(f"{file_list}: {len(unknown)} video(s) not in {where}: {shown}{more}")
        return names

    def _read_list(self, path: str) -> list[str]:
        """Video names of a list file, as PNGRawDataset reads them; blank lines are skipped."""
        same_store = fsspec.utils.get_protocol(path) == fsspec.utils.get_protocol(self.url)
        fs, inner = url_to_fs(path, self.storage_options if same_store else None)
        try:
            text = fs.cat_file(inner).decode()
        except (FileNotFoundError, IsADirectoryError):
            raise ConfigError(f"{path}: video list not found") from None
        return [os.path.splitext(line.strip())[0] for line in text.splitlines() if line.strip()]

    def __len__(self) -> int:
        return len(self.video_names)

    def get_video(self, idx: int) -> tuple[ShardVideo, ShardSegmentLoader]:
        """(video, segment_loader) of the idx-th video in name order; frame_idx is the file name's number."""
        video_id = self.video_names[idx]
        frames = self._frames()
        rows = frames.videos[video_id]
        names = frames.frame_names[rows.start : rows.stop]
        if self.truncate_video > 0:
            names = names[: self.truncate_video]
        key = self._key
        chosen = [
            ShardFrame(int(n), frame_path(key, self.split, video_id, str(n), self.short_side))
            for n in names[:: self.sample_rate]
        ]
        loader = ShardSegmentLoader(key, self._reader, frames, video_id, self.void_label, self.short_side)
        return ShardVideo(video_id, idx, chosen), loader

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        register_path_handler()  # a spawned worker opens image paths too
