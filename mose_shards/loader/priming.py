"""The first clip of every DataLoader worker, read by the main process while the workers start.

On object storage a worker's first clip would wait for its own client (a few hundred ms of botocore
on a busy machine) and then a round trip. The main process has a connected client and the index, so
`prime` reads the first video of each worker's share (the frames its clips use, one request each,
all at once) just before the workers are made; a worker finds them in its copy of the dataset and
starts decoding, making its client while it does (its next videos are requested then). Nothing is
read twice: a worker uses primed bytes only for exactly the video and frames it would have read,
and the main process drops its copy once the workers have theirs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .distribution import Items
from .framefetch import PartialVideo, fetch_frames


@dataclass(frozen=True)
class Primed:
    """A worker's first video as read by the main process, and what it was read for."""

    epoch: int
    start: int
    workers: int
    source: int
    video: int
    positions: tuple[int, ...]
    data: PartialVideo


def first_video(ds: Any, epoch: int, items: Items) -> tuple[int, int, list[int]] | None:
    """(source, video, frame positions) of the first video a share of items reads, if any."""
    if not len(items.video) or ds.options.clip_length is None:
        return None
    source, video = int(items.source[0]), int(items.video[0])
    same = (items.source == source) & (items.video == video)
    run = int(np.argmin(same)) if not same.all() else len(same)  # the first video's consecutive items
    entry = ds.opened[source].index.video(video)
    return source, video, ds.frames_of(entry, epoch, items.clip[:run].tolist(), source)


def prime(ds: Any, num_workers: int) -> None:
    """Read, in this (main) process, the first video of each of `num_workers` workers' shares."""
    ds._primed = {}
    wanted = {}
    for worker in range(num_workers):
        epoch, start, items, _ = ds.share(worker, num_workers, peek=True)
        first = first_video(ds, epoch, items)
        if first is not None:
            wanted[worker] = (epoch, start, *first)
    if not wanted:
        return
    reader = ds.reader()
    with ThreadPoolExecutor(len(wanted), thread_name_prefix="mose-shards-prime") as pool:
        reads = {
            w: pool.submit(fetch_frames, reader, ds.opened[s].index.video(v), p, None, ds.verify)
            for w, (_, _, s, v, p) in wanted.items()
        }
        for w, (epoch, start, s, v, p) in wanted.items():
            ds._primed[w] = Primed(epoch, start, num_workers, s, v, tuple(p), reads[w].result())


def claim(
    ds: Any, worker: int, num_workers: int, epoch: int, start: int, items: Items
) -> PartialVideo | None:
    """The primed first video of this worker's share, when it is exactly what the share reads first;
    the dataset's primed reads are dropped either way (in a worker, its copy of them)."""
    primed, ds._primed = (ds._primed or {}).get(worker), None
    if primed is None or (primed.epoch, primed.start, primed.workers) != (epoch, start, num_workers):
        return None
    first = first_video(ds, epoch, items)
    expected = (primed.source, primed.video, primed.positions)
    if first is None or (first[0], first[1], tuple(first[2])) != expected:
        return None
    return primed.data
