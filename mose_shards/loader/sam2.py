"""SAM 2's training data interface over shards: `ShardRawDataset`, in place of SAM 2's `PNGRawDataset`.

SAM 2 (facebookresearch/sam2, `training/dataset/`) asks a raw dataset for `get_video(idx) ->
(video, segment_loader)`; its sampler and `VOSDataset` then call `segment_loader.load(frame_idx)`
and open each `frame.image_path` with iopath's `g_pathmgr`. Here the videos come from the `frames`
table (read once per process, shared with `FrameReader`), image paths are `mose-shards://` URLs
served by an iopath `PathHandler` registered by this module, and masks come from the shards.

GETs: a video's frames lie together in its shard, and the first frame of a clip that SAM 2's sampler
touches brings the ones it reads next (every `sample_rate`-th, as the video lists them) in the same
ranged read (readahead.py, through the process's `FrameReader`): a clip costs one GET, and SAM 2
touching each sampled frame up to four times (the sampler loads the first mask twice, `load_images`
opens each image, `construct` loads each mask) is served from memory. A frame the index says has
no object costs nothing. The dataset pickles with its reader (manifest and index), so DataLoader
workers read neither again.

SAM 2 itself is never imported: the objects handed out have the fields of its `VOSVideo` and
`VOSFrame`, which is all its code reads.
"""

from __future__ import annotations

import gc
import io
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np

from ..core.errors import ConfigError, MissingDependencyError, MissingMaskError, OutputError
from ..core.maskpng import object_ids
from ..core.storage import StorageOptions, is_local, url_to_fs
from .decode import check_short_side, decode_frame_mask, decode_image
from .index import SplitIndex
from .random_access import FrameReader, adopt_reader, reader_key, registered_reader, shared_reader

try:
    from iopath.common.file_io import PathHandler, g_pathmgr
except ImportError:  # the SAM 2 adapter needs iopath; the rest of the package does not
    raise MissingDependencyError("iopath", "sam2") from None

SCHEME = "mose-shards://"


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


# --- image paths: mose-shards://<reader key>/<split>/<video id>/<frame name>.jpg -------------------


SIZE_MARK = "?short_side="  # a frame path's suffix asking for the training-size frame


def frame_path(key: str, split: str, video_id: str, frame_name: str, short_side: int | None = None) -> str:
    size = "" if short_side is None else f"{SIZE_MARK}{short_side}"
    return f"{SCHEME}{key}/{split}/{video_id}/{frame_name}.jpg{size}"


def _locate(path: str) -> tuple[FrameReader, SplitIndex, int, int]:
    """(shared reader, split index, video, frame position) of a frame path; nothing is fetched."""
    key, split, video_id, frame_name = _parse(_size_of(path)[0])
    reader = registered_reader(key)
    if reader is None:
        raise OutputError(f"{path}: no ShardRawDataset of this output was made in this process")
    index = reader.index(split)
    video = index.position(video_id)
    names = index.video(video).frame_names.to_pylist() if video is not None else []
    if video is None or names.count(frame_name) != 1:
        raise FileNotFoundError(f"{path}: no frame {frame_name} in {split} video {video_id!r}, {reader.url}")
    return reader, index, video, names.index(frame_name)


def open_frame_path(path: str) -> io.BytesIO:
    """The JPEG behind a frame path, read through this process's shared reader of its output (the
    decoded frame at training size for a path ending in `?short_side=N`)."""
    reader, index, video, position = _locate(path)
    return image_file(reader.sample(index, video, position)["jpg"], _size_of(path)[1])


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

    def __init__(self, reader: FrameReader, index: SplitIndex, video: int, void_label: int | None,
                 short_side: int | None = None) -> None:  # fmt: skip
        self._reader, self._index, self._video, self._void = reader, index, video, void_label
        self._short_side = short_side
        self._entry = entry = index.video(video)
        self.video_id = entry.video_id
        self._positions = {int(n): p for p, n in enumerate(entry.frame_names.to_pylist())}

    def load(self, frame_idx: int) -> dict[int, Any]:
        """Every object of the frame's mask; MissingMaskError naming video and frame when it has none."""
        position = self._positions.get(int(frame_idx))
        entry = self._entry
        where = f"{self._reader.url}: {self._index.split} video {self.video_id!r}"
        if position is None:
            raise MissingMaskError(f"{where} has no frame numbered {frame_idx}")
        if not entry.has_mask[position]:
            raise MissingMaskError(f"{where}, frame {entry.frame_names[position]}: this frame has no mask")
        if entry.num_objects[position] == 0:
            return {}  # known from the index: nothing to fetch
        png = self._reader.sample(self._index, self._video, position)["png"]
        return segments(png, self._void, self._short_side)

    def __len__(self) -> int:
        return len(self._positions)


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
        index = self._index()  # read here, once: workers get it with the pickled dataset
        self.void_label: int | None = self._reader.doc["options"]["void_label"]
        self.video_names = self._select(index, file_list_txt, excluded_videos_list_txt)

    @property
    def _key(self) -> str:
        return reader_key(self.url, self.storage_options)

    @property
    def _reader(self) -> FrameReader:
        return shared_reader(self.url, self.storage_options)

    def _index(self) -> SplitIndex:
        return self._reader.index(self.split)

    def _select(self, index: SplitIndex, file_list: str | None, excluded_list: str | None) -> list[str]:
        subset = self._read_list(file_list) if file_list is not None else index.video_ids.to_pylist()
        excluded = set(self._read_list(excluded_list)) if excluded_list is not None else set()
        names = sorted(v for v in subset if v not in excluded)
        unknown = sorted({v for v in names if index.position(v) is None})
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
        if fsspec.utils.get_protocol(path) == fsspec.utils.get_protocol(self.url):
            fs = self._reader.store.fs  # the output's client, with its options: none is made
            inner, made = fs._strip_protocol(path), False
        else:
            fs, inner = url_to_fs(path)
            made = not is_local(fs)
        try:
            text = fs.cat_file(inner).decode()
        except (FileNotFoundError, IsADirectoryError):
            raise ConfigError(f"{path}: video list not found") from None
        if made:
            # A client made for this file, once unreachable, must be finalized here: collected in a
            # forked DataLoader worker, it would try to close on this process's event loop and print
            # "Task exception was never retrieved" tracebacks. (A full collection costs ~0.1 s in a
            # process that imported torch, so only this case pays it.)
            del fs
            gc.collect()
        return [os.path.splitext(line.strip())[0] for line in text.splitlines() if line.strip()]

    def __len__(self) -> int:
        return len(self.video_names)

    def get_video(self, idx: int) -> tuple[ShardVideo, ShardSegmentLoader]:
        """(video, segment_loader) of the idx-th video in name order; frame_idx is the file name's number."""
        video_id = self.video_names[idx]
        index, reader = self._index(), self._reader
        video = index.position(video_id)
        assert video is not None  # checked when the names were selected
        names = index.video(video).frame_names.to_pylist()
        if self.truncate_video > 0:
            names = names[: self.truncate_video]
        reader.plan(index, video, self.sample_rate, len(names))  # what a read brings along
        key = self._key
        chosen = [
            ShardFrame(int(n), frame_path(key, self.split, video_id, str(n), self.short_side))
            for n in names[:: self.sample_rate]
        ]
        loader = ShardSegmentLoader(reader, index, video, self.void_label, self.short_side)
        return ShardVideo(video_id, idx, chosen), loader

    def __getstate__(self) -> dict[str, Any]:
        # the reader travels with its manifest and index: a worker reads neither again
        return {**self.__dict__, "_carried": self._reader}

    def __setstate__(self, state: dict[str, Any]) -> None:
        carried = state.pop("_carried", None)
        self.__dict__.update(state)
        if carried is not None:
            adopt_reader(self._key, carried)
        register_path_handler()  # a spawned worker opens image paths too
