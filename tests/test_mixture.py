"""Mixtures: Source, where/videos subsets through the DuckDB views, repeats, max_skip schedules."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mose_shards.analytics.query import query
from mose_shards.cli import main
from mose_shards.core import manifest
from mose_shards.core.errors import ConfigError
from mose_shards.loader.mixture import (
    Source,
    as_sources,
    max_skip_at,
    repeat_count,
    repeat_items,
    select_videos,
)


def subset(source: Source) -> set[str] | None:
    """select_videos for a source, against its own output."""
    store, doc = manifest.read(source.url, source.storage_options)
    known = query(source.url, f"SELECT video_id FROM videos WHERE split = '{source.split}'")
    return select_videos(source, source.name(0), store, doc, known.column("video_id").to_pylist())


# --- repeat ----------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 4), min_size=1, max_size=12),
    repeat=st.floats(0.05, 3.95),
    seed=st.integers(0, 2**31),
    epoch=st.integers(0, 50),
)
def test_repeat_items_counts_and_distinct_clips(
    counts: list[int], repeat: float, seed: int, epoch: int
) -> None:
    """k + f repeats give k*n + int(f*n + 0.5) items, all distinct (video, clip), clips continuing."""
    videos, clips = repeat_items(counts, repeat, seed=seed, epoch=epoch)
    n, whole = sum(counts), int(repeat)
    assert len(videos) == len(clips) == repeat_count(n, repeat) == whole * n + int((repeat - whole) * n + 0.5)
    pairs = list(zip(videos.tolist(), clips.tolist(), strict=True))
    assert len(set(pairs)) == len(pairs) and pairs == sorted(pairs)  # a video's clips adjacent
    for video, clip in pairs:
        assert 0 <= clip < (whole + 1) * counts[video]
    per_video = Counter(videos.tolist())
    for video, count in enumerate(counts):  # every repeat of the integer part is there
        assert whole * count <= per_video.get(video, 0) <= (whole + 1) * count


def test_integer_repeat_continues_clip_numbers() -> None:
    """repeat=2 gives each video's clips 0..2n-1, the second copy numbered after the first."""
    videos, clips = repeat_items([2, 0, 1], 2.0, seed=0, epoch=0)
    assert sorted(zip(videos.tolist(), clips.tolist(), strict=True)) == [
        (0, 0), (0, 1), (0, 2), (0, 3), (2, 0), (2, 1)
    ]  # fmt: skip


def test_fractional_draw_changes_per_epoch_and_repeats_per_seed() -> None:
    """repeat=0.5 draws int(0.5*n+0.5) items without replacement: anew each epoch, the same per seed."""
    counts = [1] * 41
    draws = {e: repeat_items(counts, 0.5, seed=3, epoch=e)[0].tolist() for e in range(4)}
    assert all(len(d) == 21 == len(set(d)) for d in draws.values())
    assert len({tuple(d) for d in draws.values()}) == 4
    assert repeat_items(counts, 0.5, seed=3, epoch=2)[0].tolist() == draws[2]
    assert repeat_items(counts, 0.5, seed=4, epoch=2)[0].tolist() != draws[2]
    assert repeat_items(counts, 0.5, seed=3, epoch=2, source=1)[0].tolist() != draws[2]


def test_repeat_rounds_half_up() -> None:
    """int(f*n + 0.5): 0.25 of 2 items is 1, 0.2 of 2 items is 0, 1.5 of 3 items is 3 + 2."""
    assert repeat_count(2, 0.25) == 1 and repeat_count(2, 0.2) == 0 and repeat_count(3, 1.5) == 5
    assert len(repeat_items([1, 1], 0.2, seed=0, epoch=0)[0]) == 0


# --- Source ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"repeat": 0}, "repeat must be > 0"),
        ({"repeat": float("nan")}, "repeat must be > 0"),
        ({"repeat": "2"}, "repeat must be a number"),
        ({"where": "  "}, "where must be a non-empty"),
        ({"frame_interval": 0}, "frame_interval must be >= 1"),
        ({"frame_interval": 2.5}, "frame_interval must be an int"),
    ],
)
def test_source_refuses_bad_options(kwargs: dict, message: str) -> None:
    """Nonsense options fail when the Source is made, naming its URL."""
    with pytest.raises(ConfigError, match=message) as info:
        Source("out/", **kwargs)
    assert "out/" in str(info.value) and "\n" not in str(info.value)


def test_source_signature_and_as_sources() -> None:
    """Source(url, split, repeat, where, storage_options) positionally; plain URLs take the defaults."""
    source = Source("a", "valid", 0.5, "num_frames > 3", {"anon": True})
    assert (source.split, source.repeat, source.where, source.storage_options) == (
        "valid", 0.5, "num_frames > 3", {"anon": True}
    )  # fmt: skip
    got = as_sources(["x", Source("y", "valid")], "train", {"k": 1})
    assert [(s.url, s.split, s.storage_options) for s in got] == [
        ("x", "train", {"k": 1}), ("y", "valid", {"k": 1})
    ]  # fmt: skip
    assert as_sources(Path("z"), "valid", None)[0].url == "z"
    with pytest.raises(ConfigError, match="no source"):
        as_sources([], "train", None)


# --- where / videos ----------------------------------------------------------------------------------


def test_where_over_videos_and_objects(converted: Path) -> None:
    """`where` filters by the videos view's columns, or by any predicate over the other views."""
    pytest.importorskip("duckdb")
    out = str(converted)
    rows = query(out, "SELECT video_id, num_objects FROM videos WHERE split='train'").to_pylist()
    objects = {r["video_id"]: r["num_objects"] for r in rows}
    assert subset(Source(out)) is None
    crowded = {v for v, n in objects.items() if n > 3}
    assert crowded and crowded != set(objects)  # the data can tell a filter from none
    assert subset(Source(out, where="num_objects > 3 -- a comment")) == crowded
    many = query(out, "SELECT DISTINCT video_id FROM objects WHERE split='train' AND object_id >= 3")
    want = set(many.column("video_id").to_pylist())
    assert want and want != set(objects) and want != crowded
    got = subset(Source(out, where="video_id IN (SELECT video_id FROM objects WHERE object_id >= 3)"))
    assert got == want
    # the views hold this source's split only
    assert subset(Source(out, "valid", where="true")) == set(
        query(out, "SELECT video_id FROM videos WHERE split='valid'").column("video_id").to_pylist()
    )


def test_bad_where_and_empty_subset_fail_in_one_line(converted: Path) -> None:
    """Invalid SQL fails with DuckDB's message and the source; an empty result names the source."""
    pytest.importorskip("duckdb")
    out = str(converted)
    with pytest.raises(ConfigError) as info:
        subset(Source(out, where="num_frames >= AND 3"))
    text = str(info.value)
    assert "\n" not in text and f"source 0 ({out}, split 'train')" in text and "Parser Error" in text
    with pytest.raises(ConfigError) as info:
        subset(Source(out, where="no_such_column > 1"))
    assert "no_such_column" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        subset(Source(out, where="num_frames < 0"))
    assert str(info.value) == f"source 0 ({out}, split 'train'): where 'num_frames < 0' selects no video"


def test_videos_list_file_and_unknown_ids(converted: Path, tmp_path: Path) -> None:
    """videos= takes a list or a file of ids (comments and blanks skipped); unknown ids are refused."""
    out = str(converted)
    ids = (
        query(out, "SELECT video_id FROM videos WHERE split='train' ORDER BY 1")
        .column("video_id")
        .to_pylist()
    )
    assert subset(Source(out, videos=ids[:2])) == set(ids[:2])
    listing = tmp_path / "ids.txt"
    listing.write_text(f"# picked by hand\n{ids[1]}\n\n  {ids[2]}  \n")
    assert subset(Source(out, videos=listing)) == {ids[1], ids[2]}
    assert subset(Source(out, videos=str(listing), where=f"video_id <> '{ids[1]}'")) == {ids[2]}
    with pytest.raises(ConfigError, match=r"1 id\(s\) of videos= not in the split: nope"):
        subset(Source(out, videos=[ids[0], "nope"]))
    with pytest.raises(ConfigError, match="not found"):
        subset(Source(out, videos=tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="subset is empty"):
        subset(Source(out, videos=[ids[0]], where=f"video_id <> '{ids[0]}'"))


def test_query_video_list_feeds_videos(
    converted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`query --format video-list` prints distinct ids one per line, a file Source(videos=) reads."""
    pytest.importorskip("duckdb")
    out = str(converted)
    sql = "SELECT video_id, object_id FROM objects WHERE split = 'train' ORDER BY video_id, object_id"
    assert main(["query", out, sql, "--format", "video-list"]) == 0
    printed = capsys.readouterr().out
    rows = query(out, sql).column("video_id").to_pylist()
    assert printed.splitlines() == list(dict.fromkeys(rows)) and len(rows) > len(set(rows))
    (tmp_path / "ids.txt").write_text(printed)
    assert subset(Source(out, videos=tmp_path / "ids.txt")) == set(rows)
    assert main(["query", out, "SELECT 1 AS n", "--format", "video-list"]) != 0
    assert "needs a video_id column; the result has: n" in capsys.readouterr().err


# --- max_skip ------------------------------------------------------------------------------------------


def test_max_skip_schedule_and_frame_interval() -> None:
    """A callable max_skip is a per-epoch curriculum; frame_interval divides it, never below 1."""
    schedule = lambda epoch: [5, 10, 15, 5][min(epoch, 3)]  # noqa: E731
    assert [max_skip_at(schedule, e) for e in range(5)] == [5, 10, 15, 5, 5]
    assert [max_skip_at(schedule, e, frame_interval=5) for e in range(4)] == [1, 2, 3, 1]
    assert max_skip_at(3, 7, frame_interval=5) == 1 and max_skip_at(np.int64(4), 0) == 4
    with pytest.raises(ConfigError, match=r"max_skip\(2\) returned 0"):
        max_skip_at(lambda e: 0 if e == 2 else 3, 2)
    with pytest.raises(ConfigError, match="max_skip must be an int >= 1"):
        max_skip_at(2.5, 0)  # type: ignore[arg-type]


def test_where_without_duckdb_gives_the_install_hint(
    converted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`where` needs the [query] extra; without DuckDB the error says how to install it."""
    from mose_shards.core.errors import MissingDependencyError
    from mose_shards.loader import ClipDataset

    monkeypatch.setitem(sys.modules, "duckdb", None)  # `import duckdb` now raises ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'mose-shards\[query\]'"):
        ClipDataset(Source(str(converted), where="num_objects > 1"), clip_length=3)
    assert len(ClipDataset(Source(str(converted)), clip_length=3).items(0)) == 4  # no where, no DuckDB
