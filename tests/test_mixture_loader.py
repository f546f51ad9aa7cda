"""Mixtures in ClipDataset / ClipLoader: items per source and epoch, subsets, curricula, ranks x workers,
locally and from SeaweedFS."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.core.errors import ConfigError
from mose_shards.loader import ClipDataset, Source
from mose_shards.loader.mixture import repeat_count
from mose_shards.synth import SynthSpec, generate
from tests.s3server import S3Server

SECOND = SynthSpec(videos=3, frames=10, size=(96, 64), seed=11, splits=("train",), video_prefix="b-")


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A second, different output (other videos, other frame size) to mix with `converted`."""
    root = tmp_path_factory.mktemp("second")
    raw = generate(root / "raw", spec=SECOND)
    convert(ConvertConfig(source=str(raw), output=str(root / "out")))
    return str(root / "out")


def items_of(ds: ClipDataset) -> list[dict[str, Any]]:
    return list(ds)


def key(item: dict[str, Any]) -> tuple[int, str, int]:
    return item["source"], item["video_id"], item["clip"]


def real_keys(batch: dict[str, Any]) -> list[tuple[int, str, int]]:
    """(source, video id, clip) of a collated batch's items that are not padding."""
    keys = zip(batch["source"], batch["video_id"], batch["clip"], strict=True)
    return [k for k, pad in zip(keys, batch["padding"], strict=True) if not pad]


def test_single_url_items_have_source_zero(converted: Path) -> None:
    """A plain URL is a mixture of one: every item carries source 0."""
    items = items_of(ClipDataset(str(converted), clip_length=3))
    assert items and {i["source"] for i in items} == {0}


def test_per_source_counts_over_epochs(converted: Path, second: str) -> None:
    """repeat=2 gives every clip twice as distinct clips; repeat=0.5 half the items, drawn anew per epoch."""
    base = [len(items_of(ClipDataset(u, clip_length=3, clips_per_video=2))) for u in (str(converted), second)]
    assert base[0] == 8 and base[1] == 6
    ds = ClipDataset([Source(str(converted), repeat=2), Source(second, repeat=0.5)], clip_length=3,
                     clips_per_video=2, seed=5)  # fmt: skip
    halves = []
    for epoch in range(3):
        ds.set_epoch(epoch)
        items = items_of(ds)
        assert {i["epoch"] for i in items} == {epoch}
        per_source = Counter(i["source"] for i in items)
        assert per_source == {0: 2 * base[0], 1: repeat_count(base[1], 0.5)} == {0: 16, 1: 3}
        assert len({key(i) for i in items}) == len(items)  # repeats are distinct clips
        assert {i["clip"] for i in items if i["source"] == 0} == {0, 1, 2, 3}
        assert all(i["video_id"].startswith("b-") for i in items if i["source"] == 1)
        halves.append(sorted(key(i) for i in items if i["source"] == 1))
    assert len({tuple(h) for h in halves}) > 1  # the fractional draw changes with the epoch
    again = ClipDataset([Source(str(converted), repeat=2), Source(second, repeat=0.5)], clip_length=3,
                        clips_per_video=2, seed=5)  # fmt: skip
    again.set_epoch(2)
    assert sorted(key(i) for i in items_of(again) if i["source"] == 1) == halves[2]  # same seed, same draw


def test_where_subset_in_the_dataset(converted: Path, second: str) -> None:
    """Only the videos `where` selects are read, per source; the others are untouched."""
    pytest.importorskip("duckdb")
    where = "video_id IN (SELECT video_id FROM objects WHERE object_id >= 3)"
    ds = ClipDataset([Source(str(converted), where=where), second], clip_length=3)
    from mose_shards.analytics.query import query

    want = set(query(str(converted), f"SELECT video_id FROM videos WHERE split='train' AND {where}")
               .column("video_id").to_pylist())  # fmt: skip
    items = items_of(ds)
    assert {i["video_id"] for i in items if i["source"] == 0} == want
    assert len({i["video_id"] for i in items if i["source"] == 1}) == 3


def test_bad_where_fails_at_construction_naming_the_source(converted: Path, second: str) -> None:
    """Bad SQL and an empty subset fail when the dataset is made, naming the source by index and URL."""
    pytest.importorskip("duckdb")
    with pytest.raises(ConfigError) as info:
        ClipDataset([second, Source(str(converted), where="num_objects >")], clip_length=3)
    assert str(info.value).startswith(f"source 1 ({converted}, split 'train'): where") and "\n" not in str(
        info.value
    )
    with pytest.raises(ConfigError, match=r"^source 0 .* selects no video$"):
        ClipDataset(Source(second, where="num_frames > 1000"), clip_length=3)


def test_max_skip_schedule_and_frame_interval(converted: Path, second: str) -> None:
    """A callable max_skip sets each epoch's skip; a source's frame_interval divides it."""
    schedule = lambda epoch: [1, 4][epoch]  # noqa: E731
    ds = ClipDataset([str(converted), Source(second, frame_interval=4)], clip_length=3, max_skip=schedule,
                     clips_per_video=4)  # fmt: skip
    skips: dict[tuple[int, int], set[int]] = {}
    for epoch in range(2):
        ds.set_epoch(epoch)
        for item in items_of(ds):
            steps = np.abs(np.diff(item["frame_indices"])).tolist()
            skips.setdefault((epoch, item["source"]), set()).update(steps)
    assert skips[(0, 0)] == skips[(0, 1)] == {1}
    assert max(skips[(1, 0)]) > 1 and max(skips[(1, 0)]) <= 4
    assert skips[(1, 1)] == {1}  # 4 // frame_interval 4


def rank_batches(sources: list[Any], rank: int, epochs: int, opts: dict[str, Any] | None = None) -> list[Any]:
    """What one of 3 ranks gets from a ClipLoader with 2 persistent workers, per epoch:
    (len(loader), [(source, video_id, clip, padding, epoch) per batch])."""
    from mose_shards.loader import ClipLoader

    options = {"clip_length": 3, "clips_per_video": 2, "seed": 1, "batch_size": 2, "storage_options": opts}
    loader = ClipLoader(sources, num_workers=2, persistent_workers=True, rank=rank, world_size=3, **options)
    out = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        batches = [list(zip(b["source"], b["video_id"], b["clip"], b["padding"], b["epoch"], strict=True))
                   for b in loader]  # fmt: skip
        out.append((len(loader), batches))
    return out


def check_three_ranks(sources: list[Any], opts: dict[str, Any] | None = None) -> None:
    """Equal steps on 3 ranks x 2 workers, each item of an epoch once (per repeat), a new draw per epoch."""
    ranks = [rank_batches(sources, r, 2, opts) for r in range(3)]
    draws = []
    for epoch in range(2):
        lengths = {ranks[r][epoch][0] for r in range(3)}
        steps = {len(ranks[r][epoch][1]) for r in range(3)}
        assert lengths == steps and len(steps) == 1  # equal steps, and len() says so
        items = [i for r in range(3) for b in ranks[r][epoch][1] for i in b]
        assert {i[4] for i in items} == {epoch}  # set_epoch reached the persistent workers
        real = [i[:3] for i in items if not i[3]]
        assert len(real) == len(set(real))
        per_source = Counter(i[0] for i in real)
        assert per_source == {0: 2 * 8, 1: repeat_count(6, 0.5)}
        draws.append(sorted(i for i in real if i[0] == 1))
    assert draws[0] != draws[1]


@pytest.mark.torch
@pytest.mark.slow
def test_mixture_three_ranks_two_workers(converted: Path, second: str) -> None:
    """A two-output mixture over 3 ranks x 2 DataLoader workers: equal steps, exactly once per repeat."""
    check_three_ranks([Source(str(converted), repeat=2), Source(second, repeat=0.5)])


@pytest.mark.torch
def test_mixture_resumes_on_another_world_size(converted: Path, second: str) -> None:
    """A mixture stopped after 2 steps on 3 ranks continues on 2 ranks: each item once over both runs."""
    from mose_shards.loader import ClipLoader

    sources = [Source(str(converted), repeat=1.5), Source(second, repeat=0.5)]
    options = {"clip_length": 3, "clips_per_video": 2, "seed": 2, "batch_size": 2}

    def loader(rank: int, world: int) -> ClipLoader:
        loader = ClipLoader(sources, rank=rank, world_size=world, **options)
        loader.set_epoch(1)
        return loader

    head, state = [], None
    for rank in range(3):
        first = loader(rank, 3)
        for step, batch in enumerate(first):
            head += real_keys(batch)
            if step == 1:
                state = first.state_dict()
                break
    tail = []
    for rank in range(2):
        resumed = loader(rank, 2)
        resumed.load_state_dict(state)
        tail += [k for batch in resumed for k in real_keys(batch)]
    everything = head + tail
    assert len(everything) == len(set(everything)) == repeat_count(8, 1.5) + repeat_count(6, 0.5)


@pytest.fixture(scope="module")
def s3_second(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The second output, converted straight to SeaweedFS."""
    raw = generate(tmp_path_factory.mktemp("second-raw"), spec=SECOND)
    url = s3_server.url("second")
    convert(ConvertConfig(source=str(raw), output=url, storage_options=s3_server.storage_options()))
    return url


@pytest.mark.s3
@pytest.mark.torch
@pytest.mark.slow
def test_mixture_three_ranks_two_workers_from_s3(
    s3_converted: str, s3_second: str, s3_server: S3Server
) -> None:
    """The same mixture read from SeaweedFS, with `where` through the S3 views: the same guarantees."""
    sources = [Source(s3_converted, repeat=2), Source(s3_second, repeat=0.5, where="num_frames > 0")]
    check_three_ranks(sources, s3_server.storage_options())


@pytest.mark.torch
def test_readme_subset_examples_run(converted: Path, second: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's "Train on a subset" examples run against two real conversions."""
    from mose_shards.analytics.query import query
    from tests.test_readme import examples

    found = examples("subset-")
    assert set(found) == {"subset-reappearing", "subset-mixture"}
    for name in sorted(found, reverse=True):  # reappearing first
        code = (
            found[name].replace('"demo/out"', repr(str(converted))).replace('"demo/davis/out"', repr(second))
        )
        assert str(converted) in code
        exec(compile(code, f"README:{name}", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    sql = "SELECT DISTINCT video_id FROM objects WHERE split = 'train' AND reappears ORDER BY 1"
    assert lines[0] == str(query(str(converted), sql).column("video_id").to_pylist())
    sources = {
        (int(line[0]), s) for line in lines[1:] for s in line.split("[", 1)[1].split("]")[0].split(", ")
    }
    assert sources == {(0, "0"), (0, "1"), (1, "0"), (1, "1")}  # both epochs, both sources
