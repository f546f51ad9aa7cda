"""Who reads what in an epoch: videos -> ranks -> DataLoader workers. Pure and deterministic.

Shards are shuffled per epoch (seed, epoch), their videos laid end to end, and that sequence cut into
contiguous, item-balanced pieces: one per rank, then one per worker of the rank. So every video is
read by exactly one (rank, worker), each loader touches few shards (good for `cache_dir`), and this
works with fewer shards than loaders: the cut is by video, never by shard.

Ranks must yield equally many items or DDP hangs. With `pad`, a rank short of the largest rank's count
gets extra items, flagged `padding`, drawn from the last video of one of its own workers (a further
clip of it, or the whole video again in whole-video mode): no extra reads, no video shared by two
loaders, and at most (one video's items) padded per rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.errors import ConfigError

EpochSchedule = list[list[list["Item"]]]  # [rank][worker] -> items in yield order


@dataclass(frozen=True)
class Item:
    """One item to yield: a video (index into the video list), its clip number, padding or not."""

    video: int
    clip: int
    padding: bool = False


def cut(weights: Sequence[int], parts: int) -> list[list[int]]:
    """Contiguous pieces of range(len(weights)) with near-equal weight: each element goes to the piece
    holding its weight's midpoint, nudged so that no piece is empty while there are enough elements."""
    total, n = sum(weights), len(weights)
    pieces: list[list[int]] = [[] for _ in range(parts)]
    before, previous = 0, -1
    for i, w in enumerate(weights):
        part = min(parts - 1, (2 * before + w) * parts // (2 * total)) if total else 0
        if n >= parts:  # no skipped piece, and room left for the pieces still to fill
            part = max(part, previous, i - (n - parts))
            part = min(part, previous + 1)
        pieces[part].append(i)
        before, previous = before + w, part
    return pieces


def video_order(
    shards: Sequence[str], counts: Sequence[int], seed: int, epoch: int, shuffle: bool
) -> list[int]:
    """Videos with items, grouped by shard, shards shuffled per epoch when asked."""
    groups: dict[str, list[int]] = {}
    for i, shard in enumerate(shards):
        if counts[i] > 0:
            groups.setdefault(shard, []).append(i)
    names = list(groups)
    if shuffle:
        rng = np.random.default_rng([seed, epoch, 0])
        names = [names[int(i)] for i in rng.permutation(len(names))]
    return [v for name in names for v in groups[name]]


def epoch_plan(
    shards: Sequence[str],
    counts: Sequence[int],
    *,
    seed: int,
    epoch: int,
    shuffle: bool,
    world_size: int,
    num_workers: int,
    pad: bool,
) -> EpochSchedule:
    """The items of every (rank, worker) for one epoch."""
    order = video_order(shards, counts, seed, epoch, shuffle)
    plan: EpochSchedule = []
    for rank, rank_piece in enumerate(cut([counts[v] for v in order], world_size)):
        videos = [order[i] for i in rank_piece]
        workers = []
        for worker, piece in enumerate(cut([counts[v] for v in videos], num_workers)):
            mine = [videos[i] for i in piece]
            if shuffle:
                rng = np.random.default_rng([seed, epoch, 1, rank, worker])
                mine = [mine[int(i)] for i in rng.permutation(len(mine))]
            workers.append([Item(v, k) for v in mine for k in range(counts[v])])
        plan.append(workers)
    if pad:
        _pad(plan)
    return plan


def _pad(plan: EpochSchedule) -> None:
    target = max(sum(len(w) for w in workers) for workers in plan)
    for rank, workers in enumerate(plan):
        missing = target - sum(len(w) for w in workers)
        if missing and not any(workers):
            raise ConfigError(
                f"rank {rank} has no video to read: the split has fewer videos with items than ranks"
            )
        for _ in range(missing):
            worker = min((w for w in workers if w), key=len)  # the shortest worker that has videos
            last = worker[-1].video
            clip = sum(1 for item in worker if item.video == last)  # continues after its regular clips
            worker.append(Item(last, clip, True))


def rank_counts(plan: EpochSchedule) -> list[int]:
    return [sum(len(w) for w in workers) for workers in plan]
