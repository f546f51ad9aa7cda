"""The epoch schedule as pure functions, property-tested over topologies: equal steps, exactly once,
true lengths, elastic invariance of the global batches, and resume on another topology."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mose_shards.core.errors import ConfigError
from mose_shards.loader.distribution import EpochSchedule, epoch_items, source_items
from mose_shards.loader.sampling import ClipOptions, clip_count, clip_counts


def dataloader_order(schedule: EpochSchedule, rank: int, batch: int, workers: int) -> list[list[int]]:
    """The batches a DataLoader yields for a rank: it takes one batch from each worker in turn,
    skipping workers that are done (torch's _MultiProcessingDataLoaderIter for iterable datasets)."""
    per_worker = []
    for w in range(workers):
        flat = schedule.positions(rank, batch, w, workers).tolist()
        assert len(flat) % batch == 0  # whole batches only: DataLoader never sees a partial one
        per_worker.append([flat[i : i + batch] for i in range(0, len(flat), batch)])
    out, turn = [], 0
    while any(per_worker):
        if per_worker[turn % workers]:
            out.append(per_worker[turn % workers].pop(0))
        turn += 1
    return out


def global_batches(schedule: EpochSchedule, world: int, batch: int, workers: int) -> list[list[int]]:
    """Step k's items over all ranks, in rank order: what one optimizer step sees."""
    ranks = [dataloader_order(schedule, r, batch, workers) for r in range(world)]
    steps = {len(r) for r in ranks}
    assert len(steps) == 1, f"ranks take different step counts: {[len(r) for r in ranks]}"
    return [[p for r in ranks for p in r[k]] for k in range(steps.pop())]


topology = st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 4))  # world, batch, workers


@settings(max_examples=300, deadline=None)
@given(
    counts=st.lists(st.integers(0, 4), min_size=1, max_size=40),
    topo=topology,
    drop_last=st.booleans(),
    seed=st.integers(0, 3),
    epoch=st.integers(0, 3),
)
def test_equal_steps_exactly_once_and_true_len(
    counts: list[int], topo: tuple[int, int, int], drop_last: bool, seed: int, epoch: int
) -> None:
    """Every rank takes the same steps (= len); each (video, clip) once; extra items flagged padding."""
    world, batch, workers = topo
    items = epoch_items([source_items(np.array(counts))], seed, epoch, shuffle=True)
    schedule = EpochSchedule(len(items), world * batch, drop_last=drop_last)
    batches = global_batches(schedule, world, batch, workers)
    assert len(batches) == schedule.steps
    flat = np.array([p for b in batches for p in b], dtype=np.int64)
    index, padding = schedule.resolve(flat)
    regular = Counter((int(items.video[i]), int(items.clip[i])) for i in index[~padding])
    assert all(n == 1 for n in regular.values())
    expected = {(v, c) for v, n in enumerate(counts) for c in range(n)}
    if drop_last:
        assert not padding.any() and len(regular) == len(items) // (world * batch) * world * batch
        assert set(regular) <= expected
    else:
        assert set(regular) == expected
        assert padding.sum() == (-len(items)) % (world * batch)


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.integers(0, 3), min_size=1, max_size=30),
    g=st.sampled_from([(1, 4), (2, 2), (4, 1)]),
    other=st.sampled_from([(1, 4), (2, 2), (4, 1)]),
    workers=st.tuples(st.integers(1, 3), st.integers(1, 3)),
)
def test_global_batches_do_not_depend_on_topology(
    counts: list[int], g: tuple[int, int], other: tuple[int, int], workers: tuple[int, int]
) -> None:
    """Same global batch size, any (world, batch, workers): the same global batches, item for item."""
    items = epoch_items([source_items(np.array(counts))], 1, 2, shuffle=True)
    schedule = EpochSchedule(len(items), 4)
    a = global_batches(schedule, g[0], g[1], workers[0])
    b = global_batches(schedule, other[0], other[1], workers[1])
    assert [sorted(x) for x in a] == [sorted(x) for x in b]


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.integers(0, 3), min_size=1, max_size=30),
    before=topology,
    after=topology,
    stop=st.integers(0, 20),
)
def test_resume_on_another_topology_is_exactly_once(
    counts: list[int], before: tuple[int, int, int], after: tuple[int, int, int], stop: int
) -> None:
    """k steps on one topology, the rest from global item k*G on another: each item once, in all."""
    items = epoch_items([source_items(np.array(counts))], 0, 1, shuffle=True)
    first = EpochSchedule(len(items), before[0] * before[1])
    head = global_batches(first, *before)[:stop]
    seen = len(head) * first.global_batch
    second = EpochSchedule(len(items), after[0] * after[1], start=seen)
    tail = global_batches(second, *after)
    used = []
    for schedule, batches in ((first, head), (second, tail)):
        index, padding = schedule.resolve(np.array([p for b in batches for p in b], dtype=np.int64))
        used += [int(i) for i in index[~padding]]
    assert sorted(used) == list(range(len(items)))


def test_shuffle_keeps_videos_together_and_depends_on_seed_and_epoch() -> None:
    """A video's clips stay adjacent and in order; the video order changes with seed and epoch."""
    counts = np.array([3, 0, 2, 1, 4, 2, 3, 1])
    orders = {}
    for seed, epoch in [(0, 0), (0, 1), (1, 0), (0, 0)]:
        items = epoch_items([source_items(counts)], seed, epoch, shuffle=True)
        videos = items.video.tolist()
        runs = [v for i, v in enumerate(videos) if i == 0 or videos[i - 1] != v]
        assert sorted(runs) == [0, 2, 3, 4, 5, 6, 7]  # each video one run
        for v in runs:
            assert items.clip[items.video == v].tolist() == list(range(counts[v]))
        orders[(seed, epoch)] = tuple(runs)
    assert orders[(0, 0)] != orders[(0, 1)] and orders[(0, 0)] != orders[(1, 0)]
    plain = epoch_items([source_items(counts)], 0, 0, shuffle=False)
    assert plain.video.tolist() == [0, 0, 0, 2, 2, 3, 4, 4, 4, 4, 5, 5, 6, 6, 6, 7]


def test_sources_are_kept_apart() -> None:
    """Items of several sources carry their source index; the same video number in two sources differs."""
    items = epoch_items([source_items(np.array([2, 1]), 0), source_items(np.array([1, 2]), 1)], 0, 0, True)
    pairs = Counter(zip(items.source.tolist(), items.video.tolist(), strict=True))
    assert pairs == Counter({(0, 0): 2, (0, 1): 1, (1, 0): 1, (1, 1): 2})


def test_mose_scale_example_has_equal_steps() -> None:
    """The issue's MOSE case: 1,507 videos, 3% without a clip, 64 ranks x 8 workers, 4 clips, batch 4."""
    counts = np.where(np.arange(1507) % 33 == 0, 0, 4)
    items = epoch_items([source_items(counts)], 0, 0, shuffle=True)
    schedule = EpochSchedule(len(items), 64 * 4)
    lengths = {sum(len(schedule.positions(r, 4, w, 8)) for w in range(8)) // 4 for r in range(64)}
    assert lengths == {schedule.steps} == {-(-len(items) // 256)}


def test_schedule_refuses_a_rank_outside_the_global_batch() -> None:
    """A rank or batch size that does not fit the global batch is a ConfigError."""
    with pytest.raises(ConfigError):
        EpochSchedule(10, 4).positions(rank=2, batch_size=2)
    with pytest.raises(ConfigError):
        EpochSchedule(10, 0)


@settings(max_examples=200, deadline=None)
@given(
    videos=st.lists(st.lists(st.integers(0, 2), min_size=1, max_size=12), min_size=1, max_size=8),
    length=st.one_of(st.none(), st.integers(1, 6)),
    reverse=st.sampled_from([0.0, 0.5]),
    per=st.integers(1, 3),
)
def test_vectorised_clip_counts_match_the_per_video_rule(
    videos: list[list[int]], length: int | None, reverse: float, per: int
) -> None:
    """clip_counts over the frames arrays equals clip_count video by video."""
    options = ClipOptions(length, 2, 3, reverse, per)
    first = np.concatenate([[0], np.cumsum([len(v) for v in videos])])
    got = clip_counts(np.concatenate([np.array(v) for v in videos]), first, options)
    assert got.tolist() == [clip_count(v, options) for v in videos]
