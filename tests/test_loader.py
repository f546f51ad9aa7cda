"""The loader on local outputs: sampler and distribution properties, clip contract, resume, cache."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mose_shards import ClipDataset, read_frame
from mose_shards.core.errors import ConfigError
from mose_shards.loader import ShardCache
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
    assert len([p for p in (tmp_path / "c").iterdir() if not p.name.startswith(".")]) < 4


def test_bad_options_are_clear(converted: Path) -> None:
    """Unknown split and impossible clips raise ConfigError naming the problem."""
    with pytest.raises(ConfigError, match="no split 'nope'"):
        ClipDataset(str(converted), split="nope")
    with pytest.raises(ConfigError, match="fits a clip of 50 frames"):
        ClipDataset(str(converted), clip_length=50)


@pytest.mark.torch
def test_clip_loader_workers_and_collate(converted: Path) -> None:
    """ClipLoader(num_workers=2): batch size from the dataset, every video once, [B, T, H, W, 3]."""
    from mose_shards.loader import ClipLoader

    ds = ClipDataset(str(converted), clip_length=3, batch_size=2)
    loader = ClipLoader(ds, num_workers=2)
    batches = list(loader)
    assert len(batches) == len(loader) == 2
    videos = [v for b in batches for v in b["video_id"]]
    assert sorted(videos) == sorted(v.video_id for v in ds.videos)
    assert tuple(batches[0]["images"].shape) == (2, 3, 120, 160, 3)
    assert batches[0]["mask_valid"].all() and batches[0]["padding"] == [False, False]
    with pytest.raises(ConfigError, match="batch_size"):
        ClipLoader(ds, batch_size=4)


@pytest.mark.torch
def test_readme_loader_examples_run(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's ClipLoader, DDP training loop and read_frame examples run against a conversion."""
    from tests.s3server import free_ports
    from tests.test_readme import examples

    video = ClipDataset(str(converted), split="valid", clip_length=None).videos[0].video_id
    found = examples("loader-")
    assert set(found) == {"loader-clips", "loader-ddp", "loader-read-frame"}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the DDP example's checkpoint goes there
    port = free_ports(("master",))["master"]
    env = {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name, code in found.items():
        code = code.replace('OUT = "demo/out"', f"OUT = {str(converted)!r}").replace(
            '"72191143"', repr(video)
        )
        assert str(converted) in code
        scope: dict = {}
        exec(compile(code, f"README:{name}", "exec"), scope)
        if name == "loader-ddp":
            scope["train"]()
            assert not (tmp_path / "checkpoint.json").exists()  # not in the working directory
            saved = json.loads((tmp_path / "mose-shards-ddp" / "checkpoint.json").read_text())["loader"]
            assert saved["epoch"] == 1 and saved["global_batch"] == 2
            scope["train"]()  # resumes from the checkpoint
    out = capsys.readouterr().out
    assert "(2, 4, 120, 160, 3)" in out and "00000 (120, 160, 3)" in out


@pytest.mark.torch
def test_resume_with_other_workers_and_batch_size(converted: Path) -> None:
    """ClipLoader state after 2 steps (2 workers, batch 2) continues on 3 workers x batch 1: exact."""
    from mose_shards.loader import ClipLoader

    key = lambda b: list(zip(b["video_id"], b["clip"], b["padding"], strict=True))  # noqa: E731

    def make(batch: int) -> ClipDataset:
        return ClipDataset(str(converted), clip_length=3, clips_per_video=3, seed=4, batch_size=batch)

    expected = [k for b in ClipLoader(make(2), num_workers=2) for k in key(b)]
    first = ClipLoader(make(2), num_workers=2)
    head = []
    for batch in first:
        head += key(batch)
        if len(head) == 4:
            break
    state = first.state_dict()
    assert state["items_seen"] == 4 and json.loads(json.dumps(state)) == state
    resumed = ClipLoader(make(1), num_workers=3)
    resumed.load_state_dict(state)
    assert len(resumed) == len(expected) - 4
    assert head + [k for b in resumed for k in key(b)] == expected
    assert len(resumed) == len(expected)  # the pass is over: the next one is a whole epoch


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


def test_whole_videos_over_three_ranks_equal_steps_each_once(converted: Path) -> None:
    """clip_length=None over 3 ranks: equal counts (= len), every video once, extra ones flagged."""
    per_rank = [
        list(ClipDataset(str(converted), split="valid", clip_length=None, rank=r, world_size=3, batch_size=1))
        for r in range(3)
    ]
    assert [len(items) for items in per_rank] == [2, 2, 2]
    regular = sorted(i["video_id"] for items in per_rank for i in items if not i["padding"])
    assert len(regular) == len(set(regular)) == 4
    padded = [i for items in per_rank for i in items if i["padding"]]
    assert len(padded) == 2 and all(len(i["frame_indices"]) == 8 for i in padded)
