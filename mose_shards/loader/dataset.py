"""ClipDataset: VOS clips (or whole videos) streamed from shards, in equal steps on every rank.

An `IterableDataset` when torch is installed, a plain iterable otherwise. The epoch's items form one
global sequence (distribution.py); each (rank, DataLoader worker) reads only the videos of its own
batches, decodes only the frames of its clips, and yields dicts. `ClipLoader` (clip_loader.py) is
the DataLoader to put around it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from ..core.errors import ConfigError
from ..core.storage import StorageOptions, Store, is_s3_url
from .batches import collate_batch
from .cache import DEFAULT_LIMIT, ShardCache
from .decode import check_short_side, decode_frame_mask, decode_image, keep_objects
from .distribution import EpochSchedule, Items, epoch_items
from .framefetch import PartialVideo, stream_frames
from .index import IndexedVideo, VideoList
from .mixture import MaxSkip, MixedReader, Source, as_sources, max_skip_at, mixture_items, open_sources
from .priming import Primed, claim, prime
from .progress import SharedPosition, check_state
from .retry import RetryPolicy
from .sampling import ClipOptions, choose_objects, item_rng, sample_positions
from .stream import FetchedVideo, Reader, is_s3, stream_videos, with_session

log = logging.getLogger(__name__)


def _torch_base() -> type:
    try:
        from torch.utils.data import IterableDataset
    except ImportError:
        return object
    return IterableDataset


def _worker_info() -> Any:
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return None
    return get_worker_info()


def _worker() -> tuple[int, int]:
    """(worker id, number of workers) inside a DataLoader worker, else (0, 1)."""
    info = _worker_info()
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
    """Clips of `clip_length` frames (or, with None, each whole video once, in order) of one split, or
    of a mixture: `url` is a URL, a `Source` or a list of them (see mixture.py).

    Items are dicts: video_id, frame_names, frame_indices, images (HxWx3 uint8), masks (HxW uint8 or
    None), object_ids, reversed, padding, clip, epoch, source. `batch_size` is the per-rank batch.
    With `short_side`, frames and masks are decoded so that their shorter side is exactly that many
    pixels.
    """

    def __init__(
        self,
        url: str | os.PathLike[str] | Source | Sequence[str | os.PathLike[str] | Source],
        split: str = "train",
        clip_length: int | None = 8,
        max_skip: MaxSkip = 5,
        max_objects: int | None = 3,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        storage_options: StorageOptions | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        batch_size: int = 1,
        drop_last: bool = False,
        cache_limit: int | str = DEFAULT_LIMIT,
        reverse_prob: float = 0.0,
        clips_per_video: int = 1,
        prefetch: int = 4,
        verify: bool = False,
        read_attempts: int = 5,
        read_timeout: float | None = 60.0,
        read_backoff: float = 0.2,
        short_side: int | None = None,
    ) -> None:
        self.sources = as_sources(url, split, storage_options)
        first = self.sources[0]
        self.url, self.split = os.fspath(first.url), first.split
        self.storage_options = dict(first.storage_options or {})
        self.max_skip = max_skip  # an int, or a schedule epoch -> int
        self.options = ClipOptions(
            clip_length, max_skip_at(max_skip, 0), max_objects, reverse_prob, clips_per_video
        )
        self.shuffle, self.seed = shuffle, seed
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size, self.drop_last = batch_size, drop_last
        # Resolved now: DataLoader worker processes do not see the parent's process group.
        dist_rank, dist_world = _distributed() if rank is None or world_size is None else (0, 1)
        self.rank = dist_rank if rank is None else rank
        self.world_size = dist_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ConfigError(
                f"rank must be in [0, world_size), got rank={self.rank}, world_size={self.world_size}"
            )
        self.prefetch, self.verify = prefetch, verify
        self.short_side = check_short_side(short_side)  # decode at training size (decode.py)
        self.retry = RetryPolicy(read_attempts, read_timeout, read_backoff)
        self.cache_dir, self.cache_limit = cache_dir, cache_limit
        # Each source's index and subset, resolved once here (a `where` runs now, never in workers).
        self.opened = open_sources(self.sources, self.options, verify, self.retry)
        # the clients the index was read with serve this process's shard reads: no second session
        self._opened_stores: tuple[int, list[Store | None]] | None = (
            os.getpid(),
            [o.store for o in self.opened],
        )
        for o in self.opened:
            o.store = None  # clients are per process: a pickled dataset carries none
        self.index, self.counts = self.opened[0].index, self.opened[0].counts
        self.void_label = self.opened[0].void_label
        self._position = SharedPosition()
        self._skip = 0  # items of this copy's share to skip on its next pass (same-topology resume)
        self._skip_workers: int | None = None
        self._yielded = 0  # items this copy yielded in its current pass
        self._pass_start = 0
        self._readers: tuple[int, Reader, list[Store]] | None = None  # (pid, reader, its stores)
        self._primed: dict[int, Primed] | None = None  # workers' first videos, read here (priming.py)
        if any(is_s3_url(o.root) for o in self.opened):
            self._warm()

    @property
    def remote(self) -> bool:
        """True when a source is on object storage (or any store behind a network)."""
        return any("://" in o.root and not o.root.startswith(("file://", "memory://")) for o in self.opened)

    @property
    def videos(self) -> VideoList:
        """The videos of the first source (the only one, unless a mixture)."""
        return self.index.videos

    # --- the epoch's items and who yields which ------------------------------------------------------

    @property
    def epoch(self) -> int:
        return self._position.get()[0]

    @property
    def global_batch(self) -> int:
        return self.world_size * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for another epoch, deterministically from `seed`; reaches persistent workers."""
        current, start = self._position.get()
        if epoch != current:
            start, self._skip = 0, 0  # a resume position belongs to its own epoch
        self._position.set(epoch, start)

    def items(self, epoch: int) -> Items:
        """Every item of an epoch, in global order (the same on every rank)."""
        return epoch_items(mixture_items(self.opened, self.seed, epoch), self.seed, epoch, self.shuffle)

    def schedule(self, num_items: int | None = None) -> EpochSchedule:
        """The global batches of the pass that starts now (from a resume position, if any)."""
        epoch, start = self._position.get()
        total = len(self.items(epoch)) if num_items is None else num_items
        return EpochSchedule(total, self.global_batch, start, self.drop_last)

    def __len__(self) -> int:
        """Items this rank yields in the pass that starts now (equal on every rank)."""
        return self.schedule().steps * self.batch_size

    # --- resumption ----------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Where this copy is: {epoch, seed, items_seen, ...}, JSON-serialisable.

        In the main process full batches are counted into `items_seen` (global items, so any topology
        can resume from it); inside a DataLoader worker (torchdata's StatefulDataLoader asks there) the
        items this worker yielded are kept in `skip`, which only the same topology can resume.
        """
        epoch, _ = self._position.get()
        _, workers = _worker()
        seen, skip = self._pass_start, self._yielded
        if workers == 1:
            seen, skip = seen + (skip // self.batch_size) * self.global_batch, skip % self.batch_size
        return {"epoch": epoch, "seed": self.seed, "items_seen": seen, "global_batch": self.global_batch,
                "num_workers": workers, "skip": skip}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state dict: from global item `items_seen` on any topology, plus `skip`
        items of this copy's own share when there is one (same world size, batch size and workers)."""
        epoch, seen = check_state(state, self.seed)
        skip = int(state.get("skip", 0))
        if skip and int(state.get("global_batch", -1)) != self.global_batch:
            raise ConfigError(
                f"this state dict resumes mid-batch, which needs the global batch it was saved with "
                f"({state.get('global_batch')}), not {self.global_batch}"
            )
        self._position.set(epoch, seen)
        self._skip, self._skip_workers = skip, int(state.get("num_workers", 1)) if skip else None

    # --- iteration -----------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        # Read the shared position now, not when the generator first runs.
        worker, num_workers = _worker()
        epoch, start, items, padding = self.share(worker, num_workers)
        ready = claim(self, worker, num_workers, epoch, start, items)  # read by the main process
        return self._run(epoch, items, padding, main=_worker_info() is None, ready=ready)

    def share(self, worker: int, num_workers: int, peek: bool = False) -> tuple[int, int, Items, np.ndarray]:
        """(epoch, start, items, padding) of a DataLoader worker's share of the pass that starts now;
        unless `peek`, the pass starts (a resume's skip is used up)."""
        epoch, start = self._position.get()
        if self._skip and self._skip_workers not in (None, num_workers):
            raise ConfigError(
                f"this state dict resumes inside a DataLoader worker's share, which needs "
                f"{self._skip_workers} workers, not {num_workers}"
            )
        skip = self._skip
        items = self.items(epoch)
        schedule = EpochSchedule(len(items), self.global_batch, start, self.drop_last)
        positions = schedule.positions(self.rank, self.batch_size, worker, num_workers)[skip:]
        index, padding = schedule.resolve(positions)
        if not peek:
            self._skip = 0
            self._pass_start, self._yielded = start, skip
        return epoch, start, items.take(index), padding

    def prime(self, num_workers: int) -> None:
        """Read each of `num_workers` DataLoader workers' first video here, before they start
        (priming.py); ClipLoader does so on object storage."""
        prime(self, num_workers)

    def _run(
        self, epoch: int, items: Items, padding: np.ndarray, main: bool, ready: PartialVideo | None = None
    ) -> Iterator[dict[str, Any]]:
        for item in self._generate(epoch, items, padding, ready):
            self._yielded += 1
            yield item
        if main:  # the pass is over: the next one starts the epoch afresh
            self._position.set(epoch, 0)
            self._pass_start, self._yielded = 0, 0

    def reader(self) -> Reader:
        """Range reads of the sources' outputs, each with its storage options: made once per process
        and kept for its passes. A forked DataLoader worker makes its own filesystem clients (they
        cannot cross a fork) but reuses the parent's S3 session, whose service models are loaded."""
        made = self._readers
        if made is not None and made[0] == os.getpid():
            return made[1]
        opened_here = self._opened_stores is not None and self._opened_stores[0] == os.getpid()
        if made is None and opened_here and self._opened_stores is not None:
            stores = [s for s in self._opened_stores[1] if s is not None]
        else:
            before = made[2] if made is not None else [None] * len(self.opened)
            stores = [
                Store(o.root, with_session(o.source.storage_options, parent))
                for o, parent in zip(self.opened, before, strict=True)
            ]
        cache = ShardCache(self.cache_dir, self.cache_limit) if self.cache_dir is not None else None
        readers = [Reader(store, self.retry, cache) for store in stores]
        reader = (
            readers[0] if len(readers) == 1 else MixedReader(readers, [o.index.shards for o in self.opened])
        )
        self._readers = (os.getpid(), reader, stores)
        return reader

    def _warm(self) -> None:
        """Make this process's reader now, with its S3 client (no request): the first clip then
        starts with a GET, and forked workers inherit the session (service models loaded)."""
        self.reader()
        assert self._readers is not None
        for store in self._readers[2]:
            if is_s3(store.fs):
                store.fs.connect()  # s3fs: the session and its client

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_readers"] = state["_opened_stores"] = None  # clients are per process
        return state

    def _generate(
        self, epoch: int, items: Items, padding: np.ndarray, ready: PartialVideo | None = None
    ) -> Iterator[dict[str, Any]]:
        videos = items.video
        new_video = np.ones(len(videos), bool)  # consecutive items of a video share one read
        new_video[1:] = (videos[1:] != videos[:-1]) | (items.source[1:] != items.source[:-1])
        firsts = zip(items.source[new_video].tolist(), videos[new_video].tolist(), strict=True)
        order = [self.opened[s].index.video(v) for s, v in firsts]
        if self.options.clip_length is None:
            fetched = stream_videos(self.reader(), order, self.prefetch, self.verify)
        else:  # only the frames the clips use (framefetch.py)
            starts = np.flatnonzero(new_video)
            clips = np.split(items.clip, starts[1:]) if len(starts) else []
            groups = zip(clips, items.source[starts].tolist(), strict=True)
            wanted = [
                self.frames_of(e, epoch, c.tolist(), s) for e, (c, s) in zip(order, groups, strict=True)
            ]
            fetched = stream_frames(self.reader(), order, wanted, self.prefetch, self.verify, ready)
        current: FetchedVideo | None = None
        for i in range(len(videos)):
            if current is None or new_video[i]:
                current = next(fetched)
            yield self.make_item(current.entry, current, epoch, int(items.clip[i]), bool(padding[i]),
                                 int(items.source[i]))  # fmt: skip

    def clip_options(self, epoch: int, source: int = 0) -> ClipOptions:
        """How a source's clips are cut in an epoch: the epoch's max_skip over its frame_interval."""
        skip = max_skip_at(self.max_skip, epoch, self.sources[source].frame_interval)
        return self.options if skip == self.options.max_skip else replace(self.options, max_skip=skip)

    def _draw(self, entry: IndexedVideo, epoch: int, clip: int, source: int) -> tuple[Any, ...]:
        """(options, generator, positions, reversed) of one item: the same whoever draws it."""
        options = self.clip_options(epoch, source)
        # A video listed by two sources (one output, two subsets) gets other clips in each.
        rng = item_rng(
            self.seed, epoch, entry.video_id if source == 0 else f"{entry.video_id}\0{source}", clip
        )
        positions, reversed_ = sample_positions(entry.num_objects, options, rng)
        return options, rng, positions, reversed_

    def frames_of(self, entry: IndexedVideo, epoch: int, clips: Sequence[int], source: int = 0) -> list[int]:
        """The frame positions the given clips of a video use, as make_item will draw them."""
        return sorted({p for clip in clips for p in self._draw(entry, epoch, int(clip), source)[2]})

    def make_item(
        self, entry: IndexedVideo, samples: Sequence[dict[str, bytes]], epoch: int, clip: int,
        padding: bool = False, source: int = 0,
    ) -> dict[str, Any]:  # fmt: skip
        """Decode one clip (or the whole video) from the samples of its video."""
        void = self.opened[source].void_label
        options, rng, positions, reversed_ = self._draw(entry, epoch, clip, source)
        objects = entry.objects  # per frame, from the masks table
        assert objects is not None
        masks = [
            decode_frame_mask(samples[p]["png"], bool(entry.has_mask[p]), self.short_side) for p in positions
        ]
        if options.clip_length is None:
            ids = sorted({i for p in positions for i in objects[p]})
        else:
            ids = choose_objects(list(objects[positions[0]]), options.max_objects, rng)
            masks = [None if m is None else keep_objects(m, ids, void, objects[p])
                     for m, p in zip(masks, positions, strict=True)]  # fmt: skip
        return {
            "split": self.sources[source].split,
            "video_id": entry.video_id,
            "frame_names": [str(entry.frame_names[p]) for p in positions],
            "frame_indices": positions,
            "images": [decode_image(samples[p]["jpg"], self.short_side) for p in positions],
            "masks": masks,
            "object_ids": ids,
            "reversed": reversed_,
            "padding": padding,
            "clip": clip,
            "epoch": epoch,
            "source": source,
        }


def collate_clips(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch clips: images -> [B, T, H, W, 3] uint8, masks -> [B, T, H, W] plus mask_valid [B, T]
    (False where a frame has no mask), torch tensors when torch is installed and shapes agree; every
    other field becomes a list. In a DataLoader worker the tensors are made in shared memory (one
    block per batch, batches.py), so handing them to the training process copies nothing."""
    return collate_batch(items)
