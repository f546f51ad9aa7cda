"""Shards built by parts (the last shards of a local run): the bytes of one task, errors named once."""

from __future__ import annotations

import multiprocessing
import shutil
from pathlib import Path

import pytest

from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.executors import InlineExecutor, ProcessExecutor
from mose_shards.conversion.orchestrate import convert
from mose_shards.conversion.plan import plan_split
from mose_shards.conversion.sources import discover
from mose_shards.conversion.tasks import PARTS, ShardTask, part_videos, run_shard, split_tail
from mose_shards.core.errors import LayoutError, ProblemsError
from tests.conftest import SMALL_SHARD
from tests.helpers import tree_bytes


def _shards(raw: Path) -> int:
    return sum(len(plan_split(s.name, s.videos, SMALL_SHARD)) for s in discover(str(raw)))


def test_every_shard_by_parts_gives_the_bytes_of_whole_shards(
    raw_tree: Path, converted: Path, tmp_path: Path
) -> None:
    """With as many workers as shards every shard is built by two parts: same files, manifest included."""
    out = tmp_path / "out"
    config = ConvertConfig(str(raw_tree), str(out), shard_size=SMALL_SHARD)
    result = convert(config, executor=ProcessExecutor(_shards(raw_tree)))
    assert result.shards_written > 2
    assert tree_bytes(out) == tree_bytes(converted)
    assert not list((out / ".mose-shards").glob("tmp/*parts*"))  # the parts' folders are gone


def test_parts_cut_the_videos_in_order_without_loss(raw_tree: Path) -> None:
    """Parts are contiguous runs of the shard's videos: joined in order they are the videos, once each."""
    videos = [v for split in discover(str(raw_tree)) for v in split.videos]
    for n in (1, 2, 3, 5):
        parts = [part_videos(videos, k, n) for k in range(n)]
        assert [v.video_id for part in parts for v in part] == [v.video_id for v in videos]


def test_split_tail_parts_only_the_last_shards_largest_first(raw_tree: Path, tmp_path: Path) -> None:
    """Only the last `workers` shards become parts, PARTS each, the larger shard's first; one worker
    splits nothing."""
    (split, *_) = discover(str(raw_tree))
    plans = plan_split(split.name, split.videos, SMALL_SHARD)
    tasks = [ShardTask(p, str(raw_tree), str(tmp_path), None) for p in plans]
    assert len(tasks) >= 3 and split_tail(tasks, 1, "r") == tasks
    parted = split_tail(tasks, 2, "r")
    assert parted[: len(tasks) - 2] == tasks[:-2]
    tail = sorted(tasks[-2:], key=lambda t: -t.plan.estimated_bytes)
    assert tail[0].plan.estimated_bytes > tail[1].plan.estimated_bytes  # the order is really chosen
    expected = [(t.plan.index, (k, PARTS)) for t in tail for k in range(PARTS)]
    assert [(t.plan.index, t.part) for t in parted[len(tasks) - 2 :]] == expected


def test_a_broken_video_in_a_part_fails_its_shard_once_and_publishes_nothing(
    raw_tree: Path, tmp_path: Path
) -> None:
    """Strict mode: the part's error reaches the run once, and its shard has no file in place."""
    raw = tmp_path / "raw"
    shutil.copytree(raw_tree, raw)
    broken = sorted((raw / "train" / "JPEGImages").glob("*/*.jpg"))[-1]
    broken.write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    config = ConvertConfig(str(raw), str(out), shard_size=SMALL_SHARD)
    with pytest.raises(ProblemsError) as info:
        convert(config, executor=ProcessExecutor(_shards(raw)))
    named = [p for p in info.value.problems if f"{broken.parent.name}/{broken.name}" in p]
    assert len(named) == 1 and "not a JPEG" in named[0]
    assert not (out / "manifest.json").exists()
    (train, *_) = discover(str(raw))
    last = plan_split(train.name, train.videos, SMALL_SHARD)[-1]  # holds the broken (last) video
    assert not (out / last.shard_path).exists()
    assert not list((out / ".mose-shards" / "done").glob(f"{last.name}*"))


def test_parts_run_one_after_another_join_on_the_last(raw_tree: Path, tmp_path: Path) -> None:
    """In one process too: each part but the last reports itself done, the last joins the shard."""
    (split, *_) = discover(str(raw_tree))
    plan = plan_split(split.name, split.videos, SMALL_SHARD)[0]
    task = ShardTask(plan, str(raw_tree), str(tmp_path / "out"), None)
    *first, last = list(InlineExecutor().run(run_shard, split_tail([task], 2, "r")))
    assert [type(r).__name__ for r in first] == ["PartDone"] * (PARTS - 1)
    whole = run_shard(ShardTask(plan, str(raw_tree), str(tmp_path / "whole"), None))
    parted, single = (tmp_path / d / plan.shard_path for d in ("out", "whole"))
    assert parted.read_bytes() == single.read_bytes()
    assert last == whole


def test_workers_spawned_before_planning_are_gone_when_planning_fails(tmp_path: Path) -> None:
    """Local workers start while the source is planned; a source refused in planning leaves none."""
    (tmp_path / "empty").mkdir()
    config = ConvertConfig(str(tmp_path / "empty"), str(tmp_path / "out"), workers=2)
    with pytest.raises(LayoutError):
        convert(config)
    assert multiprocessing.active_children() == []
