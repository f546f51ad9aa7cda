"""ClipDataset: VOS clips (or whole videos) streamed from shards, split across ranks and workers.

An `IterableDataset` when torch is installed, a plain iterable otherwise. Each (rank, worker) reads
only its own videos (see distribution.py), decodes only the frames of its clips, and yields dicts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..core import manifest
from ..core.errors import ConfigError
from ..core.storage import StorageOptions, Store
from .cache import DEFAULT_LIMIT, ShardCache
from .decode import check_short_side, decode_frame_mask, decode_image, keep_objects
from .distribution import EpochSchedule, Item, epoch_plan, rank_counts
from .index import IndexedVideo, load_videos
from .objects import FrameObjects, frame_objects
from .sampling import ClipOptions, choose_objects, clip_count, item_rng, sample_positions
from .stream import FetchedVideo, stream_videos

log = logging.getLogger(__name__)


def _torch_base() -> type:
    try:
        from torch.utils.data import IterableDataset
    except ImportError:
        return object
    return IterableDataset


def _worker() -> tuple[int, int]:
    """(worker id, number of workers) inside a DataLoader worker, else (0, 1)."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return 0, 1
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def _distributed() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when initialised, else (0, 1)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ClipDataset(_torch_base()):  # type: ignore[misc]
    """Clips of `clip_length` frames (or, with None, each whole video once, in order) of one split.

    Items are dicts: video_id, frame_names, frame_indices, images (HxWx3 uint8), masks (HxW uint8 or
    None), object_ids, reversed, padding, and worker/index (for `mark_consumed`). With `short_side`,
    frames and masks are decoded so that their shorter side is exactly that many pixels.
    """

    def __init__(
        self,
        url: str,
        split: str = "train",
        clip_length: int | None = 8,
        max_skip: int = 5,
        max_objects: int | None = 3,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        storage_options: StorageOptions | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        cache_limit: int | str = DEFAULT_LIMIT,
        reverse_prob: float = 0.0,
        clips_per_video: int = 1,
        pad: bool | None = None,
        prefetch: int = 4,
        short_side: int | None = None,
    ) -> None:
        self.url = url
        self.split = split
        self.storage_options = dict(storage_options or {})
        self.options = ClipOptions(clip_length, max_skip, max_objects, reverse_prob, clips_per_video)
        self.shuffle, self.seed = shuffle, seed
        # Resolved now: DataLoader worker processes do not see the parent's process group.
        dist_rank, dist_world = _distributed() if rank is None or world_size is None else (0, 1)
        self.rank = dist_rank if rank is None else rank
        self.world_size = dist_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(
                f"rank must be in [0, world_size), got rank={self.rank}, world_size={self.world_size}"
            )
        self.pad = clip_length is not None if pad is None else pad
        self.prefetch = prefetch
        self.short_side = check_short_side(short_side)  # decode at training size (decode.py)
        self.cache_dir, self.cache_limit = cache_dir, cache_limit
        store, doc = manifest.read(url, self.storage_options)
        self.void_label: int | None = doc["options"]["void_label"]
        self.videos: list[IndexedVideo] = load_videos(store, doc, split)
        self.objects: dict[str, FrameObjects] = frame_objects(store, doc, split, self.videos)
        self.counts = [clip_count(v.num_objects, self.options) for v in self.videos]
        if not any(self.counts):
            raise ConfigError(f"{url}: no video of split {split!r} fits a clip of {clip_length} frames")
        self.epoch = 0
        self._consumed: dict[int, int] = {}
        self._num_workers: int | None = None
        self._resume: dict[int, int] = {}

    # --- distribution --------------------------------------------------------------------------------

    def plan(self, num_workers: int = 1) -> EpochSchedule:
        """Items of every (rank, worker) this epoch."""
        shards = [v.shard for v in self.videos]
        return epoch_plan(shards, self.counts, seed=self.seed, epoch=self.epoch, shuffle=self.shuffle,
                          world_size=self.world_size, num_workers=num_workers, pad=self.pad)  # fmt: skip

    def __len__(self) -> int:
        """Items this rank yields per epoch (equal on every rank when padding)."""
        return rank_counts(self.plan())[self.rank]

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for another epoch, deterministically from `seed`."""
        if epoch != self.epoch:
            self._resume, self._consumed = {}, {}
        self.epoch = epoch

    # --- resumption ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where this rank is: items consumed per worker (counted by iteration or `mark_consumed`)."""
        return {
            "epoch": self.epoch, "seed": self.seed, "rank": self.rank, "world_size": self.world_size,
            "num_workers": self._num_workers or 1, "consumed": {str(k): v for k, v in self._consumed.items()},
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue after the consumed items of `state`, with the same epoch, seed and world size."""
        for key in ("seed", "world_size", "rank"):
            if state[key] != getattr(self, key):
                raise ConfigError(f"state_dict has {key}={state[key]}, this dataset {getattr(self, key)}")
        self.epoch = int(state["epoch"])
        self._num_workers = int(state["num_workers"])
        self._resume = {int(k): int(v) for k, v in state["consumed"].items()}
        self._consumed = dict(self._resume)

    def mark_consumed(self, batch: dict[str, Any] | Sequence[dict[str, Any]]) -> None:
        """Record items (or a collated batch) the training loop has used; needed with DataLoader workers."""
        if isinstance(batch, dict):
            pairs = list(zip(batch["worker"], batch["index"], batch["num_workers"], strict=True))
        else:
            pairs = [(it["worker"], it["index"], it["num_workers"]) for it in batch]
        for worker, index, num_workers in pairs:
            self._num_workers = int(num_workers)
            self._consumed[int(worker)] = max(self._consumed.get(int(worker), 0), int(index) + 1)

    # --- iteration -----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        worker, num_workers = _worker()
        if self._resume and self._num_workers not in (None, num_workers):
            raise ConfigError(
                f"resuming a run with {self._num_workers} workers needs as many, not {num_workers}"
            )
        self._num_workers = num_workers
        plan = self.plan(num_workers)[self.rank]
        source = self._resumed_worker(plan, worker)
        items, skip = plan[source], self._resume.get(source, 0)
        in_process = num_workers == 1
        if in_process:
            self._resume = {}  # a resumed position applies to one pass only
        for index, out in enumerate(self._generate(items[skip:]), start=skip):
            if in_process:
                self._consumed[source] = index + 1
            yield {**out, "worker": source, "num_workers": num_workers, "index": index}

    def _resumed_worker(self, plan: list[list[Item]], worker: int) -> int:
        """Whose items DataLoader worker `worker` yields: itself, except when resuming.

        DataLoader takes batches from its workers in turn, starting with worker 0. A run stopped when
        it was worker k's turn resumes with worker 0 serving the items of k, 1 those of k+1, and so on,
        so the batches come in the order the interrupted run would have given them.
        """
        if not self._resume or len(plan) == 1:
            return worker
        left = [w for w in range(len(plan)) if self._resume.get(w, 0) < len(plan[w])]
        if not left:
            return worker
        turn = min(left, key=lambda w: (self._resume.get(w, 0), w))
        return (turn + worker) % len(plan)

    def _generate(self, items: list[Item]) -> Iterator[dict[str, Any]]:
        store = Store(manifest.locate(self.url)[0], self.storage_options)  # one per process: fork-safe
        cache = ShardCache(self.cache_dir, self.cache_limit) if self.cache_dir is not None else None
        order: list[int] = []
        for item in items:
            if not order or order[-1] != item.video:
                order.append(item.video)
        videos = stream_videos(store, [self.videos[v] for v in order], cache, self.prefetch)
        current: tuple[IndexedVideo, FetchedVideo] | None = None
        for item in items:
            if current is None or current[0] is not self.videos[item.video]:
                current = next(videos)
            yield self.make_item(current[0], current[1], item)

    def make_item(
        self, entry: IndexedVideo, samples: Sequence[dict[str, bytes]], item: Item
    ) -> dict[str, Any]:
        """Decode one clip (or the whole video) from the samples of its video."""
        rng = item_rng(self.seed, self.epoch, entry.video_id, item.clip)
        positions, reversed_ = sample_positions(entry.num_objects, self.options, rng)
        objects = self.objects[entry.video_id]  # per frame, from the masks table: no pixel scan
        masks = [decode_frame_mask(samples[p]["png"], entry.has_mask[p], self.short_side) for p in positions]
        if self.options.clip_length is None:
            ids = sorted({i for p in positions for i in objects[p]})
        else:
            ids = choose_objects(list(objects[positions[0]]), self.options.max_objects, rng)
            masks = [None if m is None else keep_objects(m, ids, self.void_label, objects[p])
                     for m, p in zip(masks, positions, strict=True)]  # fmt: skip
        return {
            "split": self.split,
            "video_id": entry.video_id,
            "frame_names": [entry.frame_names[p] for p in positions],
            "frame_indices": positions,
            "images": [decode_image(samples[p]["jpg"], self.short_side) for p in positions],
            "masks": masks,
            "object_ids": ids,
            "reversed": reversed_,
            "padding": item.padding,
            "clip": item.clip,
            "epoch": self.epoch,
        }


def collate_clips(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch clips: images -> [B, T, H, W, 3] uint8, masks -> [B, T, H, W] plus mask_valid [B, T]
    (False where a frame has no mask), torch tensors when torch is installed and shapes agree; every
    other field becomes a list."""
    out: dict[str, Any] = {k: [it[k] for it in items] for k in items[0] if k not in ("images", "masks")}
    images = [np.stack(it["images"]) for it in items]
    masks = [
        np.stack([_filled(m, i) for m, i in zip(it["masks"], it["images"], strict=True)]) for it in items
    ]
    valid = [np.array([m is not None for m in it["masks"]], dtype=bool) for it in items]
    if len({a.shape for a in images}) == 1:
        images, masks, valid = [_tensor(np.stack(a)) for a in (images, masks, valid)]
    out.update(images=images, masks=masks, mask_valid=valid)
    return out


def _filled(mask: np.ndarray | None, image: np.ndarray) -> np.ndarray:
    return mask if mask is not None else np.zeros(image.shape[:2], np.uint8)


def _tensor(array: np.ndarray) -> Any:
    try:
        import torch
    except ImportError:
        return array
    return torch.from_numpy(array)
