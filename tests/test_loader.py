"""The loader on local outputs: sampler and distribution properties, clip contract, resume, cache."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mose_shards import ClipDataset, read_frame
from mose_shards.core.errors import ConfigError
from mose_shards.loader import ShardCache, collate_clips
from mose_shards.loader.distribution import epoch_plan, rank_counts
from mose_shards.loader.sampling import ClipOptions, clip_count, item_rng, sample_positions


def source_arrays(raw: Path, split: str, video_id: str, frame: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The source frame (RGB) and mask (ids, or None when the frame has no mask) from a raw tree."""
    image = np.asarray(Image.open(raw / split / "JPEGImages" / video_id / f"{frame}.jpg").convert("RGB"))
    png = raw / split / "Annotations" / video_id / f"{frame}.png"
    return image, np.asarray(Image.open(png)) if png.exists() else None


@settings(max_examples=200, deadline=None)
@given(
    objects=st.lists(st.integers(0, 3), min_size=1, max_size=40),
    length=st.integers(1, 8),
    max_skip=st.integers(1, 6),
    reverse_prob=st.sampled_from([0.0, 0.5, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_clip_positions_contract(
    objects: list[int], length: int, max_skip: int, reverse_prob: float, seed: int
) -> None:
    """Sampled clips have T positions, monotone, steps 1..max_skip, first frame with an object."""
    options = ClipOptions(length, max_skip, 3, reverse_prob)
    if clip_count(objects, options) == 0:
        return
    positions, reversed_ = sample_positions(objects, options, item_rng(seed, 0, "v", 0))
    assert len(positions) == length and objects[positions[0]] > 0
    steps = np.diff(positions) * (-1 if reversed_ else 1)
    assert all(1 <= s <= max_skip for s in steps)
    assert min(positions) >= 0 and max(positions) < len(objects)


@settings(max_examples=200, deadline=None)
@given(
    shards=st.lists(st.integers(0, 4), min_size=1, max_size=30).map(sorted),
    counts=st.lists(st.integers(0, 3), min_size=30, max_size=30),
    world=st.integers(1, 4),
    workers=st.integers(1, 3),
    epoch=st.integers(0, 5),
)
def test_distribution_covers_once_and_pads_evenly(
    shards: list[int], counts: list[int], world: int, workers: int, epoch: int
) -> None:
    """Each video's items go to one (rank, worker) exactly; padding evens ranks from own videos."""
    counts = counts[: len(shards)]
    names = [f"s{i}" for i in shards]
    if 0 < sum(1 for c in counts if c) < world:
        with pytest.raises(ConfigError):
            epoch_plan(names, counts, seed=1, epoch=epoch, shuffle=True, world_size=world,
                       num_workers=workers, pad=True)  # fmt: skip
        return
    plan = epoch_plan(names, counts, seed=1, epoch=epoch, shuffle=True, world_size=world,
                      num_workers=workers, pad=True)  # fmt: skip
    owner: dict[int, tuple[int, int]] = {}
    regular: Counter[int] = Counter()
    for rank, ws in enumerate(plan):
        for worker, items in enumerate(ws):
            for item in items:
                assert owner.setdefault(item.video, (rank, worker)) == (rank, worker)
                regular[item.video] += not item.padding
    assert regular == Counter({v: c for v, c in enumerate(counts) if c})
    assert len(set(rank_counts(plan))) == 1
    padded = [sum(i.padding for w in ws for i in w) for ws in plan]
    assert max(padded) <= 2 * max(counts)  # the midpoint cut keeps ranks within two videos' items


def test_clip_contract_on_converted(converted: Path, raw_tree: Path) -> None:
    """Clips: T frames at steps <= max_skip, <= max_objects kept (visible in frame 1), others zeroed."""
    ds = ClipDataset(str(converted), clip_length=4, max_skip=2, max_objects=2, clips_per_video=3)
    items = list(ds)
    assert len(items) == len(ds) == 12
    for item in items:
        idx = item["frame_indices"]
        assert len(item["images"]) == len(item["masks"]) == 4
        assert all(1 <= b - a <= 2 for a, b in zip(idx, idx[1:], strict=False))
        assert 1 <= len(item["object_ids"]) <= 2
        first = item["masks"][0]
        assert set(item["object_ids"]) <= set(np.unique(first).tolist())
        for name, image, mask in zip(item["frame_names"], item["images"], item["masks"], strict=True):
            src_image, src_mask = source_arrays(raw_tree, "train", item["video_id"], name)
            assert np.array_equal(image, src_image)
            assert src_mask is not None and mask is not None
            kept = np.isin(src_mask, [*item["object_ids"], 255])
            assert np.array_equal(mask, np.where(kept, src_mask, 0))


def test_whole_video_mode_matches_source(converted: Path, raw_tree: Path) -> None:
    """clip_length=None yields each valid video once, all frames in order, None for unannotated."""
    items = list(ClipDataset(str(converted), split="valid", clip_length=None, shuffle=False))
    assert sorted(i["video_id"] for i in items) == sorted(
        p.name for p in (raw_tree / "valid/JPEGImages").iterdir()
    )
    for item in items:
        assert item["frame_indices"] == list(range(8))
        for name, image, mask in zip(item["frame_names"], item["images"], item["masks"], strict=True):
            src_image, src_mask = source_arrays(raw_tree, "valid", item["video_id"], name)
            assert np.array_equal(image, src_image)
            assert (mask is None) == (src_mask is None)
            assert src_mask is None or np.array_equal(mask, src_mask)


def _key(item: dict) -> tuple:
    return (item["video_id"], tuple(item["frame_indices"]), tuple(item["object_ids"]), item["padding"])


def test_resume_mid_epoch_is_exact(converted: Path) -> None:
    """state_dict after k items + load_state_dict on a fresh instance gives exactly the rest."""
    make = lambda: ClipDataset(str(converted), clip_length=3, clips_per_video=2, seed=5)  # noqa: E731
    full = make()
    full.set_epoch(2)
    expected = [_key(i) for i in full]
    ds = make()
    ds.set_epoch(2)
    it = iter(ds)
    head = [_key(next(it)) for _ in range(3)]
    state = ds.state_dict()
    fresh = make()
    fresh.load_state_dict(state)
    assert head + [_key(i) for i in fresh] == expected


def test_epochs_reshuffle_deterministically(converted: Path) -> None:
    """Same seed and epoch give the same items; another epoch gives other clips."""
    a, b = (ClipDataset(str(converted), clip_length=3, seed=3) for _ in range(2))
    assert [_key(i) for i in a] == [_key(i) for i in b]
    b.set_epoch(1)
    assert [_key(i) for i in a] != [_key(i) for i in b]


def test_uneven_ranks_are_padded_and_flagged(converted: Path) -> None:
    """3 ranks over 4 videos: every rank yields len() items; the extra ones say padding=True."""
    per_rank = [list(ClipDataset(str(converted), clip_length=3, rank=r, world_size=3)) for r in range(3)]
    assert [len(items) for items in per_rank] == [2, 2, 2]
    regular = [i["video_id"] for items in per_rank for i in items if not i["padding"]]
    assert len(regular) == len(set(regular)) == 4
    assert sum(i["padding"] for items in per_rank for i in items) == 2


def test_read_frame_matches_source(converted: Path, raw_tree: Path) -> None:
    """read_frame returns the source frame and mask; None for a frame without one; errors name it."""
    video = sorted(p.name for p in (raw_tree / "valid/JPEGImages").iterdir())[0]
    for index, has_mask in ((0, True), (5, False)):
        got = read_frame(str(converted), video, index)
        image, mask = source_arrays(raw_tree, "valid", video, got["frame_name"])
        assert np.array_equal(got["image"], image)
        assert (got["mask"] is not None) == has_mask
        assert mask is None or np.array_equal(got["mask"], mask)
    with pytest.raises(ConfigError, match="no frame 99"):
        read_frame(str(converted), video, 99)


def test_cache_dir_is_bounded(converted: Path, tmp_path: Path) -> None:
    """With cache_dir, items are unchanged and the cache never holds more than its limit."""
    limit = 170_000  # about two train shards
    plain = [_key(i) for i in ClipDataset(str(converted), clip_length=3)]
    cached = ClipDataset(str(converted), clip_length=3, cache_dir=tmp_path / "c", cache_limit=limit)
    assert [_key(i) for i in cached] == plain
    cache = ShardCache(tmp_path / "c", limit)
    assert 0 < cache.usage() <= limit
    assert len(list((tmp_path / "c").iterdir())) < 4


def test_bad_options_are_clear(converted: Path) -> None:
    """Unknown split and impossible clips raise ConfigError naming the problem."""
    with pytest.raises(ConfigError, match="no split 'nope'"):
        ClipDataset(str(converted), split="nope")
    with pytest.raises(ConfigError, match="fits a clip of 50 frames"):
        ClipDataset(str(converted), clip_length=50)


@pytest.mark.torch
def test_dataloader_workers_and_collate(converted: Path) -> None:
    """DataLoader(num_workers=2) with collate_clips: every video once, batches [B, T, H, W, 3]."""
    from torch.utils.data import DataLoader

    ds = ClipDataset(str(converted), clip_length=3)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=collate_clips)
    batches = list(loader)
    videos = [v for b in batches for v in b["video_id"]]
    assert sorted(videos) == sorted(v.video_id for v in ds.videos)
    assert tuple(batches[0]["images"].shape[1:]) == (3, 120, 160, 3)
    assert batches[0]["mask_valid"].all()


@pytest.mark.torch
def test_readme_loader_examples_run(converted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's ClipDataset and read_frame examples run against a real conversion."""
    from tests.test_readme import examples

    video = ClipDataset(str(converted), split="valid", clip_length=None).videos[0].video_id
    found = examples("loader-")
    assert set(found) == {"loader-clips", "loader-read-frame"}
    for name, code in found.items():
        code = code.replace('OUT = "demo/out"', f"OUT = {str(converted)!r}").replace(
            '"0a1b2c3d"', repr(video)
        )
        assert str(converted) in code
        exec(compile(code, f"README:{name}", "exec"), {})
    out = capsys.readouterr().out
    assert "(2, 4, 120, 160, 3)" in out and "00000 (120, 160, 3)" in out


@pytest.mark.torch
def test_resume_with_dataloader_workers(converted: Path) -> None:
    """With num_workers=2, mark_consumed + state_dict + load_state_dict continue exactly."""
    from torch.utils.data import DataLoader

    def batches(ds: ClipDataset) -> DataLoader:
        return DataLoader(ds, batch_size=1, num_workers=2, collate_fn=collate_clips)

    key = lambda b: (b["video_id"][0], tuple(b["frame_indices"][0]))  # noqa: E731
    make = lambda: ClipDataset(str(converted), clip_length=3, clips_per_video=2, seed=4)  # noqa: E731
    expected = [key(b) for b in batches(make())]
    first = make()
    head = []
    for batch in batches(first):
        first.mark_consumed(batch)
        head.append(key(batch))
        if len(head) == 3:
            break
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    assert head + [key(b) for b in batches(resumed)] == expected


def test_plain_iterable_without_torch(converted: Path) -> None:
    """With torch unavailable, the package imports light and ClipDataset is a plain iterable."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import mose_shards\n"
        "assert 'pyarrow' not in sys.modules\n"
        f"ds = mose_shards.ClipDataset({str(converted)!r}, clip_length=3)\n"
        "assert type(ds).__mro__[1] is object, type(ds).__mro__\n"
        "print(len(list(ds)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"
