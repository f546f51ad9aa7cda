"""Statistics from the tables, checked against an independent computation from the source PNGs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from mose_shards.analytics import stats
from mose_shards.cli import main
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.core.errors import ConfigError, OutputError

VOID = 255


# --- the independent reference: decode every PNG of the raw tree ---------------------------------


def _frame_number(path: Path) -> int:
    return int(path.stem)


def reference(
    split_dir: Path, fps: float = stats.DEFAULT_FPS, only: set[str] | None = None
) -> dict[str, Any]:
    """The statistics of one raw split folder (or of the videos `only`), from its JPEG names and PNGs."""
    videos = sorted(
        p for p in (split_dir / "JPEGImages").iterdir() if p.is_dir() and (not only or p.name in only)
    )
    meta_file = split_dir / "meta.json"
    meta = json.loads(meta_file.read_text())["videos"] if meta_file.exists() else {}
    frames = masks = annotated = 0
    per_video, mask_areas, object_means, bors, categories = [], [], [], [], []
    disappear = reappear = 0
    for video in videos:
        jpgs = sorted(video.glob("*.jpg"), key=_frame_number)
        frames += len(jpgs)
        visible: dict[int, list[int]] = {}  # object id -> annotated frame positions where visible
        areas: dict[int, list[int]] = {}
        annotated_positions = []
        for position, jpg in enumerate(jpgs):
            png = split_dir / "Annotations" / video.name / f"{jpg.stem}.png"
            if not png.exists():
                continue
            annotated_positions.append(position)
            ids = np.asarray(Image.open(png))
            boxes = []
            for oid in np.unique(ids):
                if oid in (0, VOID):
                    continue
                ys, xs = np.nonzero(ids == oid)
                visible.setdefault(int(oid), []).append(position)
                areas.setdefault(int(oid), []).append(len(xs))
                boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
            masks += len(boxes)
            if boxes:
                bors.append(raster_bor(boxes, ids.shape))
        annotated += len(annotated_positions)
        per_video.append(len(visible))
        for oid, seen in visible.items():
            after = [p for p in annotated_positions if p >= seen[0]]
            gaps = [p for p in after if p not in seen]
            disappear += bool(gaps)
            reappear += any(p > gaps[0] for p in seen) if gaps else False
            mask_areas += areas[oid]
            object_means.append(np.mean(areas[oid]))
            if meta:
                categories.append(meta[video.name]["objects"][str(oid)]["category"])
    objects = len(object_means)
    return {
        "videos": len(videos),
        "frames": frames,
        "annotated_frames": annotated,
        "objects": objects,
        "masks": masks,
        "categories": len(set(categories)) if categories else None,
        "mean_frames_per_video": frames / len(videos),
        "duration_seconds": frames / fps,
        "disappearance_rate": disappear / objects,
        "reappearance_rate": reappear / objects,
        "mbor": float(np.mean(bors)),
        "mbor_frames": len(bors),
        "mask_sizes": _coco(mask_areas),
        "object_sizes": _coco(object_means),
        "objects_per_video": per_video,
    }


def raster_bor(boxes: list[tuple[int, int, int, int]], shape: tuple[int, ...]) -> float:
    """BOR by painting the boxes on a pixel grid: pixels in >= 2 boxes over pixels in >= 1."""
    count = np.zeros(shape[:2], dtype=np.int32)
    for x0, y0, x1, y1 in boxes:
        count[y0:y1, x0:x1] += 1
    return float((count >= 2).sum() / (count >= 1).sum())


def _coco(areas: list[float]) -> dict[str, int]:
    a = np.asarray(areas, dtype=float)
    return {"small": int((a < 1024).sum()), "medium": int(((a >= 1024) & (a < 9216)).sum()),
            "large": int((a >= 9216).sum())}  # fmt: skip


def assert_matches(got: dict[str, Any], want: dict[str, Any]) -> None:
    for key in ("videos", "frames", "annotated_frames", "objects", "masks", "categories", "mbor_frames",
                "mask_sizes", "object_sizes"):  # fmt: skip
        assert got[key] == want[key], key
    for key in (
        "mean_frames_per_video",
        "duration_seconds",
        "disappearance_rate",
        "reappearance_rate",
        "mbor",
    ):
        assert got[key] == pytest.approx(want[key], abs=1e-12), key
    counts = want["objects_per_video"]
    assert got["objects_per_video"]["mean"] == pytest.approx(np.mean(counts))
    assert got["objects_per_video"]["histogram"] == {str(k): counts.count(k) for k in sorted(set(counts))}


# --- a hand-made tree with answers computed on paper ---------------------------------------------


def _save_mask(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ids.astype(np.uint8), mode="L").save(path)


def _save_jpg(path: Path, size: tuple[int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path, format="JPEG")


def _corners(ids: np.ndarray, oid: int, x0: int, y0: int, x1: int, y1: int) -> None:
    """Two pixels at opposite corners give the object exactly the box [x0, x1) x [y0, y1)."""
    ids[y0, x0] = ids[y1 - 1, x1 - 1] = oid


def hand_tree(root: Path) -> Path:
    """Three videos of train whose statistics are worked out in test_hand_tree_known_answers."""
    split = root / "train"
    a = [np.zeros((10, 10), np.uint8) for _ in range(3)]
    a[0][0:4, 0:4] = 1  # box [0,4)^2
    a[0][2:6, 2:6][a[0][2:6, 2:6] == 0] = 2  # an L whose box is [2,6)^2; boxes share 4 px of 28
    a[0][9, 9] = VOID  # void pixels are no object
    a[1][0:4, 0:4] = 1  # object 2 gone
    a[2][6:10, 6:10] = 2  # object 2 back, object 1 gone for good
    a[2][0:2, 0:2] = 3  # object 3 enters on the last annotated frame
    for i, ids in enumerate(a):
        _save_mask(split / "Annotations" / "a" / f"{i:05d}.png", ids)
    for i in range(4):  # frame 3 has no mask
        _save_jpg(split / "JPEGImages" / "a" / f"{i:05d}.jpg", (10, 10))
    b = np.zeros((12, 12), np.uint8)
    _corners(b, 1, 0, 0, 4, 4)  # box [0,4)^2
    b[0, 3] = b[3, 0] = 2  # the same box, by the other diagonal
    _corners(b, 3, 2, 1, 6, 3)  # box [2,6) x [1,3): 16 px covered twice (1 and 2) of a union of 20
    _save_mask(split / "Annotations" / "b" / "00000.png", b)
    _save_jpg(split / "JPEGImages" / "b" / "00000.jpg", (12, 12))
    c = np.zeros((100, 128), np.uint8)
    c[0:96, 0:96] = 1  # 9216 px: large, just
    c[0:32, 96:128] = 2  # 1024 px: medium, just; its box touches object 1's without overlap
    c[32:63, 96:128] = 3  # 992 px: small
    _save_mask(split / "Annotations" / "c" / "00000.png", c)
    _save_jpg(split / "JPEGImages" / "c" / "00000.jpg", (128, 100))
    meta = {"a": {"1": "cat", "2": "dog", "3": "cat"}, "b": {"1": "cat", "2": "cat", "3": "cat"},
            "c": {"1": "emu", "2": "emu", "3": "emu"}}  # fmt: skip
    doc = {v: {"objects": {k: {"category": c, "frames": []} for k, c in o.items()}} for v, o in meta.items()}
    (split / "meta.json").write_text(json.dumps({"videos": doc}))
    return root


@pytest.fixture(scope="module")
def hand_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = hand_tree(tmp_path_factory.mktemp("hand"))
    out = raw.parent / "hand-out"
    convert(ConvertConfig(source=str(raw), output=str(out)))
    return out


def test_hand_tree_known_answers(hand_out: Path) -> None:
    """Every statistic of the hand-made tree equals its value worked out on paper."""
    got = stats.compute(str(hand_out), fps=2)["splits"]["train"]
    assert (got["videos"], got["frames"], got["annotated_frames"]) == (3, 6, 5)
    assert (got["objects"], got["masks"]) == (9, 2 + 1 + 2 + 3 + 3)
    assert got["categories"] == 3
    assert got["objects_per_category"] == {"cat": 5, "emu": 3, "dog": 1}
    assert got["mean_frames_per_video"] == 2.0
    assert got["duration_seconds"] == 3.0
    # Object a/1 leaves for good, a/2 leaves and returns, the rest never leave an annotated frame.
    assert got["disappearance_rate"] == pytest.approx(2 / 9)
    assert got["reappearance_rate"] == pytest.approx(1 / 9)
    # Frames: a0 = 4/28, a1 = 0 (one box), a2 = 0 (apart), b = 16/20, c = 0 (boxes only touch).
    assert got["mbor"] == pytest.approx((4 / 28 + 0.8) / 5)
    assert got["mbor_frames"] == 5
    assert got["mask_sizes"] == {"small": 9, "medium": 1, "large": 1}
    assert got["object_sizes"] == {"small": 7, "medium": 1, "large": 1}
    assert got["objects_per_video"] == {"mean": 3.0, "min": 3, "max": 3, "histogram": {"3": 3}}


def test_hand_tree_matches_reference(hand_out: Path) -> None:
    """The PNG-decoding reference agrees with the table statistics on the hand-made tree too."""
    source = Path(json.loads((hand_out / "manifest.json").read_text())["source"])
    want = reference(source / "train", fps=2)
    assert_matches(stats.compute(str(hand_out), fps=2)["splits"]["train"], want)


# --- the generated tree --------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["train", "valid"])
def test_generated_splits_match_png_reference(converted: Path, raw_tree: Path, split: str) -> None:
    """On the generated tree, every number equals the one computed by decoding the source PNGs."""
    got = stats.compute(str(converted), splits=[split])["splits"]
    assert list(got) == [split]
    assert_matches(got[split], reference(raw_tree / split))


def test_generated_train_exercises_every_statistic(converted: Path) -> None:
    """The generated train split has objects that leave and return and boxes that overlap."""
    train = stats.compute(str(converted))["splits"]["train"]
    assert 0 < train["reappearance_rate"] <= train["disappearance_rate"] < 1
    assert 0 < train["mbor"] < 1


def test_valid_first_frame_only(converted: Path) -> None:
    """With only first frames annotated nobody can disappear, and the masks are the first frames'."""
    valid = stats.compute(str(converted))["splits"]["valid"]
    assert valid["annotated_frames"] == valid["videos"] == valid["mbor_frames"]
    assert valid["disappearance_rate"] == valid["reappearance_rate"] == 0.0


def test_real_samples_match_reference(real_data: Path, tmp_path: Path) -> None:
    """On the real DAVIS-style samples (judo's bad mask skipped), the numbers match the PNGs."""
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(real_data), output=str(out), on_error="skip"))
    doc = json.loads((out / "manifest.json").read_text())
    assert [s["video_id"] for s in doc["splits"]["valid"]["skipped"]] == ["judo"]
    got = stats.compute(str(out))["splits"]["valid"]
    assert_matches(got, reference(real_data / "valid", only={"bike"}))
    assert got["objects"] == 2 and got["mbor_frames"] == 1


@pytest.mark.s3
def test_s3_same_as_local(s3_converted: str, s3_server: Any, converted: Path) -> None:
    """Read from S3 (other shard sizes), the statistics are those of the local conversion."""
    assert stats.compute(s3_converted, s3_server.storage_options()) == stats.compute(str(converted))


def test_split_without_rows(converted: Path, tmp_path: Path) -> None:
    """A split whose tables have no part gives zero counts and null averages, not a crash."""
    out = tmp_path / "out"
    shutil.copytree(converted, out)
    doc = json.loads((out / "manifest.json").read_text())
    for table in doc["splits"]["valid"]["tables"]:
        doc["splits"]["valid"]["tables"][table] = []
    (out / "manifest.json").write_text(json.dumps(doc))
    valid = stats.compute(str(out), splits=["valid"])["splits"]["valid"]
    assert (valid["videos"], valid["frames"], valid["objects"], valid["masks"], valid["mbor_frames"]) == (
        0,
    ) * 5
    assert valid["mbor"] is valid["disappearance_rate"] is valid["mean_frames_per_video"] is None
    assert valid["objects_per_video"]["histogram"] == {}
    assert "-" in stats.format_text({"splits": {"valid": valid}})


# --- the BOR kernel ------------------------------------------------------------------------------

_box = st.tuples(st.integers(0, 12), st.integers(0, 12), st.integers(1, 8), st.integers(1, 8)).map(
    lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3])
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_box, min_size=3, max_size=3), min_size=1, max_size=6))
def test_bor_batch_equals_raster(frames: list[list[tuple[int, int, int, int]]]) -> None:
    """Coordinate compression gives exactly the pixel-raster BOR, for any boxes."""
    got = stats.bor_batch(np.asarray(frames, dtype=np.int64))
    want = [raster_bor(boxes, (20, 20)) for boxes in frames]
    assert got.tolist() == pytest.approx(want, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(st.lists(_box, min_size=0, max_size=7), st.integers(1, 3))
def test_union_area_equals_raster(boxes: list[tuple[int, int, int, int]], at_least: int) -> None:
    """union_area counts exactly the pixels covered by at least `at_least` boxes."""
    count = np.zeros((20, 20), dtype=np.int32)
    for x0, y0, x1, y1 in boxes:
        count[y0:y1, x0:x1] += 1
    assert stats.union_area(np.asarray(boxes).reshape(-1, 4), at_least) == int((count >= at_least).sum())


def test_bor_small_chunks_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    """Splitting a batch into chunks (for memory) does not change any frame's BOR."""
    rng = np.random.default_rng(1)
    xy = rng.integers(0, 50, size=(40, 5, 2))
    rects = np.concatenate([xy, xy + rng.integers(1, 30, size=(40, 5, 2))], axis=2)
    whole = stats.bor_batch(rects)
    monkeypatch.setattr(stats, "_CHUNK_CELLS", 1)
    assert stats.bor_batch(rects).tolist() == whole.tolist()


# --- the command ---------------------------------------------------------------------------------


def test_cli_json(converted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`stats --json` prints the documented shape for every split."""
    assert main(["stats", str(converted), "--json", "--fps", "4"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc["splits"]) == {"train", "valid"}
    train = doc["splits"]["train"]
    for key in ("videos", "frames", "objects", "masks", "disappearance_rate", "reappearance_rate", "mbor"):
        assert key in train
    assert train["duration_seconds"] == train["frames"] / 4


def test_cli_text_one_split(converted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --json, a readable table with one column for the chosen split."""
    assert main(["stats", str(converted), "--split", "valid"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["statistic", "valid"]
    assert "mBOR" in out and "disappearance rate" in out


def test_cli_unknown_split(converted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown split is a one-line error naming the known ones, not a traceback."""
    assert main(["stats", str(converted), "--split", "nope"]) != 0
    err = capsys.readouterr().err
    assert "nope" in err and "train" in err and "Traceback" not in err


def test_cli_not_an_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder without a manifest gives a one-line error naming it."""
    assert main(["stats", str(tmp_path)]) == 1
    assert str(tmp_path) in capsys.readouterr().err


def test_library_errors(converted: Path, tmp_path: Path) -> None:
    """The library raises our error types for a bad fps and a missing output."""
    with pytest.raises(ConfigError):
        stats.compute(str(converted), fps=0)
    with pytest.raises(OutputError):
        stats.compute(str(tmp_path))
