"""The shard plan: whole videos, in id order, under the cap, deterministic, with a fingerprint."""

from __future__ import annotations

import logging
from array import array
from pathlib import Path

import pytest

from mose_shards.conversion.plan import fingerprint, plan_split, video_cost
from mose_shards.conversion.sources import SourceVideo, discover
from mose_shards.conversion.videos import Files


def fake_video(video_id: str, frames: int, size: int) -> SourceVideo:
    names = tuple(f"{i:05d}" for i in range(frames))
    jpgs = Files(f"/src/{video_id}", "", tuple(f"{n}.jpg" for n in names), array("q", [size] * frames))
    pngs = Files(f"/src/{video_id}", "", tuple(f"{n}.png" for n in names), array("q", [size] * frames))
    return SourceVideo("train", video_id, names, jpgs, pngs)


def test_plan_fills_shards_in_id_order_under_the_cap() -> None:
    """Videos go in id order; each shard's estimate stays under the cap; every video once."""
    videos = [fake_video(f"v{i:02d}", 5, 10_000 + 500 * i) for i in range(12)]  # each under the cap
    cap = 200_000
    plans = plan_split("train", reversed(videos), cap)
    order = [v.video_id for p in plans for v in p.videos]
    assert order == sorted(v.video_id for v in videos)
    assert len(plans) > 2
    for plan in plans:
        assert plan.estimated_bytes <= cap
        assert plan.estimated_bytes >= sum(video_cost(v) for v in plan.videos)


def test_video_larger_than_the_cap_gets_its_own_shard_and_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """An oversized video is never split: one shard for it, one warning line for the split."""
    videos = [fake_video("a", 2, 1000), fake_video("big", 50, 100_000), fake_video("c", 2, 1000)]
    with caplog.at_level(logging.WARNING, logger="mose_shards.conversion.plan"):
        plans = plan_split("train", videos, 1_000_000)
    assert [[v.video_id for v in p.videos] for p in plans] == [["a"], ["big"], ["c"]]
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "1 video(s)" in warnings[0] and "big" in warnings[0]


def test_fingerprint_follows_options_and_sources(raw_tree: Path) -> None:
    """Same plan and options, same digest; another option or another file size, another digest."""
    splits = discover(str(raw_tree))
    plans = [p for s in splits for p in plan_split(s.name, s.videos, 150_000)]
    again = [p for s in discover(str(raw_tree)) for p in plan_split(s.name, s.videos, 150_000)]
    options = {"void_label": 255}
    assert fingerprint(plans, options) == fingerprint(again, options)
    assert fingerprint(plans, options) != fingerprint(plans, {"void_label": None})
    grown = [fake_video("x", 1, 10)]
    assert fingerprint(plan_split("t", grown, 10**6), options) != fingerprint(
        plan_split("t", [fake_video("x", 1, 11)], 10**6), options
    )
