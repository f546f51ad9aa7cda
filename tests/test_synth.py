"""Tests of the synthetic MOSE-like dataset generator."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mose_shards.synth.scenes import CATEGORIES, SynthSpec, generate, palette, parse_size

SMALL = {"videos": 2, "frames": 12, "size": (96, 72), "objects": (3, 5), "splits": ("train",)}


def _spec(**changes: object) -> SynthSpec:
    return SynthSpec(**{**SMALL, **changes})  # type: ignore[arg-type]


def _videos(root: Path, split: str = "train") -> list[str]:
    return sorted(p.name for p in (root / split / "JPEGImages").iterdir())


def _masks(root: Path, video: str, split: str = "train") -> dict[str, np.ndarray]:
    folder = root / split / "Annotations" / video
    return {p.stem: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def _ids(mask: np.ndarray) -> set[int]:
    return {int(v) for v in np.unique(mask)} - {0, 255}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_palette_is_davis() -> None:
    """The palette has 256 RGB entries starting with the DAVIS colours."""
    pal = palette()
    assert len(pal) == 768
    assert pal[:15] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0, 0, 0, 128]
    assert pal[255 * 3 : 256 * 3] == [224, 224, 192]


def test_generate_is_byte_identical(tmp_path: Path) -> None:
    """Two generations of the same spec write the same files with the same bytes."""
    spec = _spec(splits=("train", "valid"), categories=True, void_border=True, annotation={"valid": "sparse"})
    first, second = _tree(generate(tmp_path / "a", spec=spec)), _tree(generate(tmp_path / "b", spec=spec))
    assert first and first == second


def test_seed_changes_output(tmp_path: Path) -> None:
    """A different seed gives different video ids and pixels."""
    first, second = (
        _tree(generate(tmp_path / "a", spec=_spec())),
        _tree(generate(tmp_path / "b", spec=_spec(seed=1))),
    )
    assert set(first).isdisjoint(second)


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("all", list(range(12))), ("first", [0]), ("every5", [0, 5, 10]), ("none", [])],
)
def test_annotation_modes_layout(tmp_path: Path, mode: str, expected: list[int]) -> None:
    """Each annotation mode writes PNGs at exactly its frame positions, and JPEGs for every frame."""
    root = generate(tmp_path, spec=_spec(annotation={"train": mode}))
    names = [f"{i:05d}" for i in range(12)]
    for video in _videos(root):
        jpegs = sorted(p.stem for p in (root / "train" / "JPEGImages" / video).iterdir())
        assert jpegs == names
        if mode != "none":
            assert list(_masks(root, video)) == [names[i] for i in expected]
    assert (root / "train" / "Annotations").exists() == (mode != "none")


def test_default_annotation_modes(tmp_path: Path) -> None:
    """Without annotation, train is "all", valid "first", test "none" and other splits "all"."""
    root = generate(tmp_path, spec=_spec(videos=1, splits=("train", "valid", "test", "extra")))
    counts = {s: len(_masks(root, _videos(root, s)[0], s)) for s in ("train", "valid", "extra")}
    assert counts == {"train": 12, "valid": 1, "extra": 12}
    assert not (root / "test" / "Annotations").exists()
    assert len(list((root / "test" / "JPEGImages").rglob("*.jpg"))) == 12


def test_frame_naming_and_video_ids(tmp_path: Path) -> None:
    """Frame names follow start, digits and step; video ids are prefixed, 8 hex digits and unique."""
    spec = _spec(
        videos=5, frames=3, frame_name_start=2058, frame_name_digits=8, frame_step=5, video_prefix="v_"
    )
    root = generate(tmp_path, spec=spec)
    videos = _videos(root)
    assert len(videos) == 5 and all(re.fullmatch(r"v_[0-9a-f]{8}", v) for v in videos)
    for video in videos:
        assert list(_masks(root, video)) == ["00002058", "00002063", "00002068"]
        jpegs = sorted(p.name for p in (root / "train" / "JPEGImages" / video).iterdir())
        assert jpegs == ["00002058.jpg", "00002063.jpg", "00002068.jpg"]


def test_masks_are_palette_pngs_with_contiguous_ids(tmp_path: Path) -> None:
    """Masks are P-mode PNGs with the DAVIS palette whose ids are exactly 1..N, N in the objects range."""
    root = generate(tmp_path, spec=_spec(categories=True))
    meta = json.loads((root / "train" / "meta.json").read_text())["videos"]
    for video in _videos(root):
        with Image.open(next((root / "train" / "Annotations" / video).glob("*.png"))) as img:
            assert img.mode == "P" and img.getpalette()[:768] == palette()
        seen = set().union(*(_ids(m) for m in _masks(root, video).values()))
        assert 3 <= len(seen) <= 5 and seen == set(range(1, len(seen) + 1))
        assert set(meta[video]["objects"]) == {str(i) for i in seen}


@pytest.mark.parametrize("mode", ["all", "first", "sparse", "every5"])
def test_first_frame_has_an_object(tmp_path: Path, mode: str) -> None:
    """The first frame of every video has a visible object, whatever the annotation mode."""
    root = generate(tmp_path, spec=_spec(videos=4, objects=(1, 5), annotation={"train": mode}))
    for video in _videos(root):
        assert _ids(_masks(root, video)["00000"])


def test_some_object_leaves_and_returns(tmp_path: Path) -> None:
    """In every video some object is visible, then absent for some frames, then visible again."""
    root = generate(tmp_path, spec=_spec(videos=4, frames=8))
    for video in _videos(root):
        masks = list(_masks(root, video).values())
        patterns = {oid: "".join("1" if oid in _ids(m) else "0" for m in masks) for oid in _ids(masks[0])}
        assert any(re.fullmatch(r"1+0+1+", p) for p in patterns.values()), patterns


def test_sparse_masks_hold_only_new_objects(tmp_path: Path) -> None:
    """Sparse PNGs sit where objects first appear and hold just those objects, pixel for pixel."""
    sparse_root = generate(tmp_path / "sparse", spec=_spec(videos=3, annotation={"train": "sparse"}))
    full_root = generate(tmp_path / "all", spec=_spec(videos=3))
    for video in _videos(sparse_root):
        full, sparse = _masks(full_root, video), _masks(sparse_root, video)
        assert "00000" in sparse and len(sparse) >= 2
        seen: set[int] = set()
        for name, mask in full.items():
            new = _ids(mask) - seen
            seen |= _ids(mask)
            assert (name in sparse) == bool(new)
            if new:
                expected = np.where(np.isin(mask, list(new)), mask, 0)
                np.testing.assert_array_equal(sparse[name], expected)


def test_meta_json_lists_visible_annotated_frames(tmp_path: Path) -> None:
    """meta.json has a category and the annotated frames where each object is visible."""
    spec = _spec(categories=True, frame_step=5, annotation={"train": "every5"})
    root = generate(tmp_path, spec=spec)
    meta = json.loads((root / "train" / "meta.json").read_text())
    assert set(meta) == {"videos"} and sorted(meta["videos"]) == _videos(root)
    for video, entry in meta["videos"].items():
        masks = _masks(root, video)
        assert list(masks) == ["00000", "00025", "00050"]
        for oid, obj in entry["objects"].items():
            assert obj["category"] in CATEGORIES
            assert obj["frames"] == [name for name, m in masks.items() if int(oid) in _ids(m)]


def test_small_object_present(tmp_path: Path) -> None:
    """At 320x240 every five-object video has one of a few hundred pixels, well under the others."""
    root = generate(tmp_path, spec=_spec(size=(320, 240), objects=(5, 5), frames=4))
    for video in _videos(root):
        areas = np.max(
            [np.bincount(m.ravel(), minlength=6)[1:6] for m in _masks(root, video).values()], axis=0
        )
        assert 100 <= areas.min() <= 600 and areas.min() < 0.6 * np.median(areas), areas


def test_void_border_only_touches_background(tmp_path: Path) -> None:
    """void_border adds 255 pixels but leaves every object's pixels unchanged."""
    plain, void = (
        generate(tmp_path / "p", spec=_spec()),
        generate(tmp_path / "v", spec=_spec(void_border=True)),
    )
    for video in _videos(plain):
        for name, mask in _masks(void, video).items():
            reference = _masks(plain, video)[name]
            assert (mask == 255).any()
            np.testing.assert_array_equal(np.where(mask == 255, 0, mask), reference)


@pytest.mark.parametrize("frames", [1, 2, 3])
def test_tiny_videos_still_work(tmp_path: Path, frames: int) -> None:
    """Very short videos with one object still get a visible object in frame 0."""
    root = generate(tmp_path, spec=_spec(frames=frames, objects=(1, 1)))
    for video in _videos(root):
        masks = _masks(root, video)
        assert len(masks) == frames and _ids(masks["00000"]) == {1}


def test_parse_size_accepts_width_x_height() -> None:
    """parse_size reads WIDTHxHEIGHT, case-insensitive."""
    assert parse_size("1920x1080") == (1920, 1080)
    assert parse_size(" 320X240 ") == (320, 240)


@pytest.mark.parametrize("text", ["1920", "x1080", "0x10", "-5x10", "axb", "1x2x3", "", "1920 x"])
def test_parse_size_rejects_garbage(text: str) -> None:
    """parse_size raises a ValueError that quotes the bad text."""
    with pytest.raises(ValueError, match="WIDTHxHEIGHT|positive"):
        parse_size(text)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"annotation": {"train": "most"}}, "known: all"),
        ({"objects": (3, 2)}, "objects"),
        ({"frames": 0}, "frames"),
    ],
)
def test_spec_rejects_bad_values(changes: dict[str, object], message: str) -> None:
    """SynthSpec refuses values that cannot make a dataset, naming the problem."""
    with pytest.raises(ValueError, match=message):
        _spec(**changes)
