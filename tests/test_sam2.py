"""mose_shards.sam2.ShardRawDataset against the raw tree read the way SAM 2's PNGRawDataset reads it.

SAM 2 is not installed: the reference (tests/sam2_like.py) follows PNGRawDataset and
PalettisedPNGSegmentLoader (listdir, sorted glob of *.jpg, int of the file name, a PNG per frame),
and images are opened the way SAM 2's load_images opens them (iopath's g_pathmgr, then PIL).
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.core.errors import ConfigError, MissingMaskError, OutputError
from mose_shards.synth import SynthSpec, generate

torch = pytest.importorskip("torch")
iopath_file_io = pytest.importorskip("iopath.common.file_io")
g_pathmgr = iopath_file_io.g_pathmgr

from mose_shards.sam2 import SCHEME, ShardRawDataset  # noqa: E402
from tests.sam2_like import FirstFrames, reference_mask, reference_videos  # noqa: E402
from tests.test_readme import examples, text  # noqa: E402


def reference_masks(gt_folder: Path, video: str) -> dict[int, dict[int, np.ndarray]]:
    """frame number -> PalettisedPNGSegmentLoader's {object id: HxW bool} (it keeps 255 as an object)."""
    return {
        int(os.path.splitext(f)[0]): reference_mask(gt_folder / video / f)
        for f in os.listdir(gt_folder / video)
    }


def sam2_load_image(path: str) -> np.ndarray:
    """What SAM 2's load_images does with a frame whose data is None."""
    with g_pathmgr.open(path, "rb") as fopen:
        return np.asarray(Image.open(fopen).convert("RGB"))


def assert_equivalent(ds: ShardRawDataset, split_dir: Path, void: int | None = 255, **kwargs: Any) -> int:
    """Same videos in the same order, same frame numbers, images, objects and pixels; masks compared."""
    expected = reference_videos(split_dir / "JPEGImages", **kwargs)
    assert [name for name, _ in expected] == ds.video_names and len(ds) == len(expected)
    compared = 0
    for idx, (name, frames) in enumerate(expected):
        video, loader = ds.get_video(idx)
        assert (video.video_name, video.video_id, len(video)) == (name, idx, len(frames))
        assert [f.frame_idx for f in video.frames] == [n for n, _ in frames]
        masks = reference_masks(split_dir / "Annotations", name)
        for frame, (number, path) in zip(video.frames, frames, strict=True):
            assert frame.image_path.startswith(SCHEME) and frame.data is None
            assert not frame.is_conditioning_only
            assert np.array_equal(sam2_load_image(frame.image_path), sam2_load_image(path))
            if number not in masks:
                with pytest.raises(MissingMaskError, match=f"{name}.*{Path(path).stem}"):
                    loader.load(number)
                continue
            want = {k: v for k, v in masks[number].items() if k != void}
            got = loader.load(number)
            assert list(got) == list(want)  # same order too: SAM 2's sampler draws objects by position
            for object_id, binary in got.items():
                assert binary.dtype == torch.bool and np.array_equal(binary.numpy(), want[object_id])
            compared += 1
    return compared


def test_demo_set_equals_png_raw_dataset(raw_tree: Path, converted: Path) -> None:
    """On the demo set, every split: the raw tree's videos, frame numbers, images, objects and pixels."""
    for split in ("train", "valid"):
        assert assert_equivalent(ShardRawDataset(str(converted), split=split), raw_tree / split) > 0


@pytest.fixture(scope="module")
def every5(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A YouTube-VOS-like tree: frames named 00000, 00005, ..., masks on every 5th one, void (255) borders."""
    spec = SynthSpec(videos=3, frames=6, size=(64, 48), seed=3, splits=("train",), frame_step=5,
                     void_border=True, annotation={"train": "every5"})  # fmt: skip
    raw = generate(tmp_path_factory.mktemp("every5"), spec=spec)
    out = tmp_path_factory.mktemp("every5-out") / "out"
    convert(ConvertConfig(source=str(raw), output=str(out)))
    return raw, out


def test_every_5th_names_sparse_masks_and_void(every5: tuple[Path, Path]) -> None:
    """frame_idx keeps YouTube-VOS numbering (0, 5, 10, ...); 255 is dropped; unannotated frames raise."""
    raw, out = every5
    ds = ShardRawDataset(str(out))
    video, _ = ds.get_video(0)
    assert [f.frame_idx for f in video.frames] == [0, 5, 10, 15, 20, 25]
    assert assert_equivalent(ds, raw / "train") > 0
    voids = [
        n
        for v in ds.video_names
        for n, m in reference_masks(raw / "train/Annotations", v).items()
        if 255 in m
    ]
    assert voids  # the void label really occurs in the source masks


def test_file_lists_sample_rate_and_truncation(raw_tree: Path, converted: Path, tmp_path: Path) -> None:
    """file_list_txt (extensions dropped), excluded_videos_list_txt, truncate_video, sample_rate."""
    names = sorted(os.listdir(raw_tree / "train/JPEGImages"))
    listed = tmp_path / "list.txt"
    listed.write_text(f"{names[2]}.mp4\n{names[0]}\n\n{names[1]}\n")
    excluded = tmp_path / "excluded.txt"
    excluded.write_text(f"{names[1]}\n")
    options = {"sample_rate": 2, "truncate_video": 5}
    ds = ShardRawDataset(str(converted), file_list_txt=str(listed), excluded_videos_list_txt=str(excluded),
                         **options)  # fmt: skip
    assert ds.video_names == [names[0], names[2]]
    assert [f.frame_idx for f in ds.get_video(1)[0].frames] == [0, 2, 4]
    assert_equivalent(ds, raw_tree / "train", file_list=[names[2], names[0], names[1]], excluded=[names[1]],
                      **options)  # fmt: skip


def test_bad_arguments_name_what_is_wrong(converted: Path, tmp_path: Path) -> None:
    """An unknown split, a listed video that is absent, a missing list, a frame number the video lacks."""
    with pytest.raises(ConfigError, match="no split 'test'"):
        ShardRawDataset(str(converted), split="test")
    listed = tmp_path / "list.txt"
    listed.write_text("nosuchvideo\n")
    with pytest.raises(ConfigError, match=r"list\.txt: 1 video\(s\) not in the train split.*'nosuchvideo'"):
        ShardRawDataset(str(converted), file_list_txt=str(listed))
    with pytest.raises(ConfigError, match="missing.txt: video list not found"):
        ShardRawDataset(str(converted), file_list_txt=str(tmp_path / "missing.txt"))
    with pytest.raises(ConfigError, match="sample_rate"):
        ShardRawDataset(str(converted), sample_rate=0)
    video, loader = ShardRawDataset(str(converted)).get_video(0)
    with pytest.raises(MissingMaskError, match=f"{video.video_name}' has no frame numbered 999"):
        loader.load(999)


def test_real_sequences(real_data: Path, tmp_path: Path) -> None:
    """Real DAVIS-style data: what converts (judo's 853x480 mask is skipped) equals the raw tree."""
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(real_data / "valid"), output=str(out), on_error="skip"))
    ds = ShardRawDataset(str(out), split="valid")
    assert ds.video_names == ["bike"]  # judo: skipped by the conversion, see the manifest
    assert assert_equivalent(ds, real_data / "valid", excluded=["judo"]) == 1
    listed = tmp_path / "list.txt"
    listed.write_text("bike\njudo\n")
    with pytest.raises(ConfigError, match=r"'judo' \(skipped by the conversion\)"):
        ShardRawDataset(str(out), split="valid", file_list_txt=str(listed))


@pytest.mark.slow
def test_pickles_with_its_index_so_a_worker_reads_no_table(converted: Path, tmp_path: Path) -> None:
    """A pickled dataset carries its manifest and index: a fresh process serves frames with the
    output's tables and manifest gone (only the shards left), and becomes that process's reader."""
    out = tmp_path / "out"
    shutil.copytree(converted, out)
    ds = ShardRawDataset(str(out))
    data = pickle.dumps(ds)
    shutil.rmtree(out / "tables")
    (out / "manifest.json").unlink()
    script = (
        "import pickle, sys\n"
        "from mose_shards.loader import random_access\n"
        "ds = pickle.loads(sys.stdin.buffer.read())\n"
        "video, loader = ds.get_video(1)\n"
        "from iopath.common.file_io import g_pathmgr\n"
        "with g_pathmgr.open(video.frames[0].image_path, 'rb') as f: head = f.read(2)\n"
        "print(len(random_access._SHARED), video.video_name, head.hex(), *sorted(loader.load(0)), sep=',')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    video, loader = ds.get_video(1)
    expected = ["1", video.video_name, "ffd8", *map(str, sorted(loader.load(0)))]
    assert done.stdout.decode().strip().split(",") == expected


@pytest.mark.slow
def test_needs_iopath_and_never_imports_sam2() -> None:
    """Without iopath the import names the extra; with it, no module of SAM 2 is ever imported."""
    missing = "import sys; sys.modules['iopath'] = None\nimport mose_shards.sam2"
    done = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True)
    assert done.returncode == 1
    assert "MissingDependencyError: iopath is not installed: pip install 'mose-shards[sam2]'" in done.stderr
    clean = "import sys, mose_shards.sam2\nprint([m for m in sys.modules if m.startswith(('sam2', 'train'))])"
    done = subprocess.run([sys.executable, "-c", clean], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def readme_yaml(name: str) -> Any:
    yaml = pytest.importorskip("yaml")
    found = re.search(rf"```yaml\n# yaml: {name}\n(.*?)```", text(), re.S)
    assert found is not None, name
    return yaml.safe_load(found.group(1))


def test_readme_config_lines_build_the_dataset(raw_tree: Path, converted: Path, tmp_path: Path) -> None:
    """The README's YAML, its ${dataset.*} filled in as Hydra would, builds a ShardRawDataset."""
    dataset = readme_yaml("sam2-dataset")["dataset"]
    node = readme_yaml("sam2-video-dataset")["video_dataset"]
    listed = tmp_path / "list.txt"
    listed.write_text(sorted(os.listdir(raw_tree / "train" / "JPEGImages"))[1] + "\n")
    dataset.update(url=str(converted), file_list_txt=str(listed), storage_options=MappingProxyType({}))
    module, _, name = node.pop("_target_").rpartition(".")
    values = {k: dataset[re.fullmatch(r"\$\{dataset\.(\w+)\}", v).group(1)] for k, v in node.items()}
    assert set(values) == {"url", "split", "file_list_txt", "storage_options"}
    built = getattr(importlib.import_module(module), name)(**values)
    assert isinstance(built, ShardRawDataset) and built.video_names == [listed.read_text().strip()]
    assert pickle.loads(pickle.dumps(built)).storage_options == {}  # a Mapping from Hydra became a dict


def test_readme_python_example_runs(converted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's ShardRawDataset example runs against a conversion and prints the fourth frame."""
    (code,) = examples("sam2-").values()
    exec(compile(code.replace('OUT = "demo/out"', f"OUT = {str(converted)!r}"), "README:sam2", "exec"), {})
    words = capsys.readouterr().out.split()
    assert words[:4] == [ShardRawDataset(str(converted)).video_names[0], "3", "(160,", "120)"]


def test_frame_paths_through_iopath(converted: Path) -> None:
    """exists() reads nothing; a wrong frame, an unknown output or a write mode fail naming the path."""
    ds = ShardRawDataset(str(converted))
    video, _ = ds.get_video(0)
    path = video.frames[2].image_path
    ds._reader.ahead.clear()
    assert g_pathmgr.exists(path) and g_pathmgr.isfile(path) and not ds._reader.ahead.held()
    assert not g_pathmgr.exists(path.replace("/00002.jpg", "/99999.jpg"))
    with pytest.raises(FileNotFoundError, match="no frame 99999 in train video"):
        g_pathmgr.open(path.replace("/00002.jpg", "/99999.jpg"), "rb")
    with pytest.raises(OutputError, match="no ShardRawDataset of this output"):
        g_pathmgr.open(f"{SCHEME}0123456789abcdef/train/v/00000.jpg", "rb")
    with pytest.raises(ValueError, match="'rb' mode only"):
        g_pathmgr.open(path, "wb")


def test_dataloader_with_two_forked_workers(raw_tree: Path, converted: Path) -> None:
    """Forked DataLoader workers (Linux's default) keep the loaded index and read equal frames."""
    ds = ShardRawDataset(str(converted), split="valid")
    ctx = torch.multiprocessing.get_context("fork")
    items = list(torch.utils.data.DataLoader(FirstFrames(ds, 1), batch_size=None, num_workers=2,
                                             multiprocessing_context=ctx))  # fmt: skip
    assert [i["video_name"] for i in items] == ds.video_names
    for item in items:
        first = sam2_load_image(str(raw_tree / "valid/JPEGImages" / item["video_name"] / "00000.jpg"))
        assert np.array_equal(item["images"][0], first)
        want = reference_mask(raw_tree / "valid/Annotations" / item["video_name"] / "00000.png")
        assert list(item["masks"][0]) == list(want)
