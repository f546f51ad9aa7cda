"""Decoding at full size (pixels equal to Pillow's) and at training size (`short_side`: exact shorter
side, PSNR against full decode + bilinear resize, mask agreement with a nearest resize)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mose_shards import ClipDataset, read_frame
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.core.errors import ConfigError
from mose_shards.loader import decode, pngids
from mose_shards.loader.decode import decode_frame_mask, decode_image, keep_objects, target_size
from mose_shards.synth import SynthSpec, generate
from tests.test_loader import source_arrays


def pil_rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(params=["fast", "pillow"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the fast decoders (simplejpeg, libdeflate) and again with Pillow/zlib only."""
    if request.param == "pillow":
        monkeypatch.setattr(decode, "_simplejpeg", None)
        monkeypatch.setattr(pngids, "_deflate", None)
    elif decode._simplejpeg is None or pngids._deflate is None:
        pytest.skip("simplejpeg or deflate not installed")
    return str(request.param)


@pytest.fixture(scope="module")
def real_tree(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real valid split without its defective mask (judo/00005.png is 853x480)."""
    tree = tmp_path_factory.mktemp("real") / "valid"
    shutil.copytree(real_data / "valid", tree)
    (tree / "Annotations" / "judo" / "00005.png").unlink()
    return tree


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A generated 640x360 tree (several objects per frame) and its conversion."""
    raw = generate(tmp_path_factory.mktemp("wide"), spec=SynthSpec(videos=2, frames=6, size=(640, 360),
                   objects=(3, 6), seed=3, splits=("train",)))  # fmt: skip
    out = raw.parent / "out"
    convert(ConvertConfig(source=str(raw), output=str(out)))
    return raw, out


def test_full_size_equals_pillow_on_real_footage(real_data: Path, path: str) -> None:
    """Real frames and masks decode to exactly Pillow's pixels and ids (fast path and fallback)."""
    frames = sorted((real_data / "valid" / "JPEGImages").glob("*/*.jpg"))
    masks = sorted((real_data / "valid" / "Annotations").glob("*/*.png"))
    assert frames and masks
    for jpg in frames:
        assert np.array_equal(decode_image(jpg.read_bytes()), pil_rgb(jpg.read_bytes())), jpg
    for png in masks:
        got = decode_frame_mask(png.read_bytes(), True)
        assert got is not None and np.array_equal(got, np.asarray(Image.open(png))), png


def test_masks_of_other_kinds_fall_back_to_pillow(tmp_path: Path) -> None:
    """Filtered (grayscale, optimised) and 4-bit palette PNGs decode to Pillow's ids."""
    rng = np.random.default_rng(0)
    ids = np.zeros((37, 53), np.uint8)
    ids[5:30, 10:40] = 3
    ids[rng.random(ids.shape) < 0.1] = 7
    for mode, options in (("L", {"optimize": True}), ("P", {"bits": 4})):
        buf = io.BytesIO()
        Image.fromarray(ids, "L").convert(mode).save(buf, "PNG", **options)
        want = np.asarray(Image.open(io.BytesIO(buf.getvalue())))
        got = decode_frame_mask(buf.getvalue(), True)
        assert got is not None and np.array_equal(got, want), (mode, options)


def test_broken_mask_is_an_error_not_garbage() -> None:
    """A truncated mask PNG raises (from Pillow) instead of decoding to something."""
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 40), 2, np.uint8), "L").convert("P").save(buf, "PNG")
    with pytest.raises(Exception):  # noqa: B017 - Pillow's own error types vary by damage
        decode_frame_mask(buf.getvalue()[:-30], True)


def test_target_size_has_the_exact_shorter_side() -> None:
    """The shorter side is the target, landscape or portrait; the aspect ratio is kept (rounded)."""
    assert target_size(1920, 1080, 480) == (853, 480)
    assert target_size(1080, 1920, 480) == (480, 853)
    assert target_size(854, 480, 480) == (854, 480)
    assert target_size(320, 240, None) == (320, 240)
    with pytest.raises(ConfigError):
        decode.check_short_side(0)


@pytest.mark.parametrize("short_side", [120, 240, 200, 400])
def test_reduced_size_images_and_masks(wide: tuple[Path, Path], short_side: int, path: str) -> None:
    """short_side: exact shorter side, >= 30 dB against full decode + bilinear, masks >= 99% equal
    to a nearest resize of the full mask, objects filtered as at full size."""
    raw, out = wide
    full = {it["video_id"]: it for it in ClipDataset(str(out), clip_length=4, shuffle=False, seed=2)}
    small = list(ClipDataset(str(out), clip_length=4, shuffle=False, seed=2, short_side=short_side))
    assert small and len(small) == len(full)
    for item in small:
        ref = full[item["video_id"]]
        assert item["frame_indices"] == ref["frame_indices"] and item["object_ids"] == ref["object_ids"]
        for name, image, mask, ref_mask in zip(
            item["frame_names"], item["images"], item["masks"], ref["masks"], strict=True
        ):
            source, _ = source_arrays(raw, "train", item["video_id"], name)
            size = target_size(source.shape[1], source.shape[0], short_side)
            assert min(image.shape[:2]) == short_side and image.shape[:2] == (size[1], size[0])
            want = np.asarray(Image.fromarray(source).resize(size, Image.Resampling.BILINEAR))
            assert psnr(image, want) >= 30.0
            nearest = np.asarray(Image.fromarray(ref_mask).resize(size, Image.Resampling.NEAREST))
            assert mask.shape == nearest.shape and np.mean(mask == nearest) >= 0.99


def test_reduced_size_on_real_footage(real_tree: Path, tmp_path: Path) -> None:
    """Real frames at short_side 240 and 360 through read_frame: size, PSNR and mask agreement."""
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(real_tree), output=str(out)))
    for video, frame in (("bike", 0), ("judo", 0), ("judo", 13)):
        full = read_frame(str(out), video, frame)
        for short_side in (240, 360):
            got = read_frame(str(out), video, frame, short_side=short_side)
            size = target_size(854, 480, short_side)
            assert got["image"].shape == (size[1], size[0], 3) and got["mask"].shape == (size[1], size[0])
            want = np.asarray(Image.fromarray(full["image"]).resize(size, Image.Resampling.BILINEAR))
            assert psnr(got["image"], want) >= 30.0
            nearest = np.asarray(Image.fromarray(full["mask"]).resize(size, Image.Resampling.NEAREST))
            assert np.mean(got["mask"] == nearest) >= 0.99


def test_full_size_clips_equal_pillow_and_pixel_scan(wide: tuple[Path, Path], path: str) -> None:
    """Full-size clips: Pillow's pixels, ids from the tables equal to those in the first mask's pixels,
    and other objects zeroed exactly as a lookup over every pixel would."""
    raw, out = wide
    items = list(ClipDataset(str(out), clip_length=4, max_objects=2, shuffle=False, clips_per_video=3))
    assert items
    for item in items:
        sources = [source_arrays(raw, "train", item["video_id"], n) for n in item["frame_names"]]
        first = sources[0][1]
        assert first is not None
        present = sorted(set(np.unique(first).tolist()) - {0, 255})
        assert set(item["object_ids"]) <= set(present) and len(item["object_ids"]) == min(2, len(present))
        for (image, mask), got_image, got_mask in zip(sources, item["images"], item["masks"], strict=True):
            assert np.array_equal(got_image, image)
            assert mask is not None
            assert np.array_equal(got_mask, np.where(np.isin(mask, [*item["object_ids"], 255]), mask, 0))


def test_keep_objects_skips_only_when_nothing_is_dropped() -> None:
    """With the frame's objects given, the lookup is skipped only when every one of them is kept."""
    mask = np.array([[0, 1, 2], [3, 255, 1]], np.uint8)
    assert keep_objects(mask, [1, 2, 3], 255, present=[1, 2, 3]) is mask
    assert np.array_equal(keep_objects(mask, [1, 3], 255, present=[1, 2, 3]), [[0, 1, 0], [3, 255, 1]])
    assert np.array_equal(keep_objects(mask, [2], None), [[0, 0, 2], [0, 0, 0]])


def test_sam2_adapter_at_training_size(converted: Path) -> None:
    """ShardRawDataset(short_side=...): SAM 2 opens frames at that size and gets masks resized alike."""
    pytest.importorskip("torch")
    iopath = pytest.importorskip("iopath.common.file_io")
    from mose_shards.sam2 import ShardRawDataset

    full, small = ShardRawDataset(str(converted)), ShardRawDataset(str(converted), short_side=60)
    video, loader = small.get_video(0)
    ref_video, ref_loader = full.get_video(0)
    for frame, ref in zip(video.frames[:3], ref_video.frames[:3], strict=True):
        with iopath.g_pathmgr.open(frame.image_path, "rb") as fh:
            image = np.asarray(Image.open(fh).convert("RGB"))
        with iopath.g_pathmgr.open(ref.image_path, "rb") as fh:
            reference = Image.open(fh).convert("RGB")
        assert image.shape == (60, 80, 3)
        assert psnr(image, np.asarray(reference.resize((80, 60), Image.Resampling.BILINEAR))) >= 30.0
        got, want = loader.load(frame.frame_idx), ref_loader.load(ref.frame_idx)
        for object_id, mask in got.items():
            nearest = Image.fromarray(want[object_id].numpy()).resize((80, 60), Image.Resampling.NEAREST)
            assert mask.shape == (60, 80) and np.mean(mask.numpy() == np.asarray(nearest)) >= 0.99
    with pytest.raises(ConfigError):
        ShardRawDataset(str(converted), short_side=-1)


def test_decoded_masks_are_writable(wide: tuple[Path, Path]) -> None:
    """Masks handed out can be changed in place (filtered or not), as Pillow-era masks could."""
    _, out = wide
    item = next(iter(ClipDataset(str(out), clip_length=4, max_objects=1, shuffle=False)))
    for mask in item["masks"]:
        mask[0, 0] = 9
        assert mask[0, 0] == 9


def test_readme_short_side_example_runs(converted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's short_side example runs against a conversion and prints the reduced shapes."""
    from tests.test_readme import examples

    code = examples("short-side")["short-side"].replace('OUT = "demo/out"', f"OUT = {str(converted)!r}")
    code = code.replace("short_side=120", "short_side=60")  # the fixture's frames are 160x120
    assert str(converted) in code and "short_side=60" in code
    scope: dict = {}
    exec(compile(code, "README:short-side", "exec"), scope)
    assert "(60, 80, 3) (60, 80)" in capsys.readouterr().out
    assert scope["frame"]["image"].shape == (60, 80, 3) and scope["frame"]["mask"].shape == (60, 80)
