"""Who yields what in an epoch: one global item sequence, cut into global batches, dealt to ranks
and DataLoader workers. Pure functions of (seed, epoch, global batch); numpy arrays throughout.

1. Each source lists its items: (source, video, clip) for every clip of every video that has one
   (`source_items`). A mixture of outputs is several such lists.
2. `epoch_items` lays them end to end and shuffles them by video (the clips of a video stay
   together, so a loader reads a video once for all its clips), seeded by (seed, epoch).
3. `EpochSchedule` cuts the sequence, from a start position, into global batches of
   G = world_size x batch_size items; the last one is filled with repeats of the first items,
   flagged padding (or dropped with `drop_last`). Rank r takes items [r*B, (r+1)*B) of every global
   batch; its batches are dealt round-robin to its DataLoader workers (worker w gets the rank's
   batches w, w+W, ...), which is the order in which DataLoader takes batches from its workers.

So every rank takes the same number of steps, each item of the epoch is yielded once over all
ranks, and the global batches depend only on (seed, epoch, G): a run resumed at global item
k x G_old on another world size, worker count or batch size loses and repeats nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.errors import ConfigError


@dataclass(frozen=True)
class Items:
    """A sequence of items as parallel arrays: source index, video index in it, clip number."""

    source: np.ndarray  # int32
    video: np.ndarray  # int32
    clip: np.ndarray  # int32

    def __len__(self) -> int:
        return len(self.video)

    def take(self, order: np.ndarray) -> Items:
        return Items(self.source[order], self.video[order], self.clip[order])

    @staticmethod
    def concat(parts: Sequence[Items]) -> Items:
        if not parts:
            return Items(*(np.zeros(0, np.int32) for _ in range(3)))
        return Items(*(np.concatenate([getattr(p, f) for p in parts]) for f in ("source", "video", "clip")))


def source_items(counts: np.ndarray, source: int = 0) -> Items:
    """Every item of one source: clips 0..counts[v]-1 of each video v, grouped by video, in video order."""
    counts = np.asarray(counts, dtype=np.int64)
    video = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    starts = np.cumsum(counts) - counts  # first item of each video
    clip = (np.arange(len(video), dtype=np.int64) - np.repeat(starts, counts)).astype(np.int32)
    return Items(np.full(len(video), source, np.int32), video, clip)


def epoch_items(per_source: Sequence[Items], seed: int, epoch: int, shuffle: bool) -> Items:
    """The sources' items end to end; with `shuffle`, whole videos in a (seed, epoch) order."""
    items = Items.concat(per_source)
    if not shuffle or len(items) < 2:
        return items
    # runs of one (source, video): a video's clips stay adjacent and in clip order
    change = (np.diff(items.source) != 0) | (np.diff(items.video) != 0)
    starts = np.concatenate([[0], np.flatnonzero(change) + 1])
    lengths = np.diff(np.append(starts, len(items)))
    rng = np.random.default_rng([seed, epoch, 0x5EED])
    perm = rng.permutation(len(starts))
    placed = np.cumsum(lengths[perm]) - lengths[perm]  # where each run lands in the new order
    order = np.arange(len(items)) + np.repeat(starts[perm] - placed, lengths[perm])
    return items.take(order)


@dataclass(frozen=True)
class EpochSchedule:
    """The global batches of one pass over an epoch's items, from global position `start`.

    Position p < len(items) is item p; positions past the end (padding) repeat items from the start
    of the sequence and are flagged.
    """

    num_items: int
    global_batch: int
    start: int = 0
    drop_last: bool = False

    def __post_init__(self) -> None:
        if self.global_batch < 1:
            raise ConfigError(f"world size x batch size must be >= 1, got {self.global_batch}")
        if self.start < 0:
            raise ConfigError(f"a resume position must be >= 0, got {self.start}")

    @property
    def steps(self) -> int:
        """Batches every rank yields in this pass."""
        left = max(0, self.num_items - self.start)
        return left // self.global_batch if self.drop_last else -(-left // self.global_batch)

    def positions(self, rank: int, batch_size: int, worker: int = 0, num_workers: int = 1) -> np.ndarray:
        """Global positions a (rank, worker) yields, in order: its batches' items, batch after batch."""
        if self.global_batch % batch_size or not 0 <= rank < self.global_batch // batch_size:
            raise ConfigError(
                f"rank {rank} with batch {batch_size} does not fit a global batch of {self.global_batch}"
            )
        batches = np.arange(worker, self.steps, max(1, num_workers), dtype=np.int64)
        first = self.start + batches * self.global_batch + rank * batch_size
        return (first[:, None] + np.arange(batch_size, dtype=np.int64)[None, :]).reshape(-1)

    def resolve(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(item index, padding flag) of global positions."""
        padding = positions >= self.num_items
        index = np.where(padding, (positions - self.num_items) % max(1, self.num_items), positions)
        return index, padding
