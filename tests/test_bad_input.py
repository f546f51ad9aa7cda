"""Bad input, one test per class: a one-line error naming the file, exit 1, no traceback, no manifest;
and `--on-error skip` converts the rest and lists what it left out."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from mose_shards.cli import main
from mose_shards.synth import SynthSpec, generate

# Three small videos of four frames, every frame annotated; a 1-byte cap gives each video its own
# shard, so a failure meets shards that already finished beside it.
SPEC = SynthSpec(videos=3, frames=4, size=(64, 48), seed=11, splits=("train",))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fresh raw tree (root holding train/) that the test may break."""
    return generate(tmp_path / "raw", spec=SPEC)


def _videos(tree: Path) -> list[str]:
    return sorted(p.name for p in (tree / "train" / "JPEGImages").iterdir())


def _frame(tree: Path, video: int = 0, frame: str = "00001", kind: str = "jpg") -> Path:
    folder = "JPEGImages" if kind == "jpg" else "Annotations"
    return tree / "train" / folder / _videos(tree)[video] / f"{frame}.{kind}"


def _convert(capsys: pytest.CaptureFixture[str], src: Path, out: Path, *extra: str) -> tuple[int, str]:
    code = main(["convert", str(src), str(out), "--shard-size", "1", "--workers", "1", "-q", *extra])
    return code, capsys.readouterr().err


def _assert_refused(code: int, err: str, out: Path, *needles: str) -> None:
    """Exit 1, only our lines on stderr (no traceback), an error line holding every needle, no commit."""
    assert code == 1
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert all(line.startswith("mose-shards: ") for line in lines), lines
    errors = [line for line in lines if line.startswith("mose-shards: error: ")]
    assert any(all(n in line for n in needles) for line in errors), errors
    _assert_nothing_committed(out)


def _assert_nothing_committed(out: Path) -> None:
    """No manifest; each file in shards/ and tables/ belongs to a shard with a done marker; no temporaries."""
    assert not (out / "manifest.json").exists()
    done = {p.stem for p in (out / ".mose-shards" / "done").glob("*.json")}
    for path in [*(out / "shards").rglob("*"), *(out / "tables").rglob("*")]:
        assert path.is_dir() or path.stem in done, f"{path} is not part of a finished shard"
    assert not any((out / ".mose-shards" / "tmp").rglob("*"))


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (lambda data: data[: len(data) // 2], "truncated JPEG"),
        (lambda data: b"GIF89a" + data[6:], "not a JPEG"),
    ],
    ids=["truncated", "not-jpeg"],
)
def test_broken_frame(
    tree: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: Callable[[bytes], bytes],
    problem: str,
) -> None:
    """A truncated or non-JPEG frame is named with what is wrong."""
    frame = _frame(tree, video=1)
    frame.write_bytes(content(frame.read_bytes()))
    code, err = _convert(capsys, tree, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", str(frame), problem)


def test_mask_size_differs_from_frame(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mask one pixel narrower than its frame is named with both sizes."""
    mask = _frame(tree, video=2, kind="png")
    with Image.open(mask) as img:
        img.crop((0, 0, 63, 48)).save(mask)
    code, err = _convert(capsys, tree, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", str(mask), "mask is 63x48 but its frame is 64x48")


def test_real_judo_mask_size_is_refused(real_data: Path, tmp_path: Path) -> None:
    """The real judo defect (853x480 mask, 854x480 frames) fails a real `mose-shards convert` cleanly."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "mose_shards.cli", "convert", str(real_data / "valid"), str(out), "-q"]
    proc = subprocess.run([*command, "--workers", "1"], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mose-shards: error: ")]
    assert errors == [
        f"mose-shards: error: {real_data / 'valid'}/Annotations/judo/00005.png: "
        "mask is 853x480 but its frame is 854x480"
    ]
    _assert_nothing_committed(out)


def test_rgb_mask(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An RGB mask (not object ids) is refused, naming the PNG and the expected modes."""
    mask = _frame(tree, kind="png")
    with Image.open(mask) as img:
        img.convert("RGB").save(mask)
    code, err = _convert(capsys, tree, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", str(mask), "RGB image", "palette (P) or grayscale (L)")


def test_mask_without_frame(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A mask whose frame is missing is named."""
    _frame(tree, frame="00002").unlink()
    mask = _frame(tree, frame="00002", kind="png")
    code, err = _convert(capsys, tree, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", str(mask), "mask without a frame")


def test_empty_video_folder(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A video folder without frames is named."""
    (tree / "train" / "JPEGImages" / "zz-empty").mkdir()
    code, err = _convert(capsys, tree, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", "train/zz-empty", "empty video folder")


@pytest.mark.parametrize(
    ("name", "problem"),
    [("frame_a.jpg", "frame name 'frame_a' is not numeric"), ("0001.jpg", "duplicate frame number 1")],
    ids=["non-numeric", "duplicate"],
)
def test_bad_frame_names(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, problem: str
) -> None:
    """A non-numeric frame name, or two names with the same number (00001 and 0001), are named."""
    extra = _frame(tree).parent / name
    extra.write_bytes(_frame(tree).read_bytes())
    code, err = _convert(capsys, tree, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", str(extra), problem)


def test_unreadable_frame(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A frame that cannot be opened is named. Tests run as root, where chmod 000 does not stop a read,
    so the unreadable file is a dangling symlink: listed like a file, failing when opened."""
    frame = _frame(tree, video=1)
    frame.unlink()
    os.symlink(tmp_path / "gone.jpg", frame)
    code, err = _convert(capsys, tree, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", str(frame), "unreadable (No such file or directory)")


def test_folder_where_a_frame_should_be(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A folder named like a frame (also a way a file is unreadable) is named, not silently ignored."""
    frame = _frame(tree)
    frame.unlink()
    frame.mkdir()
    code, err = _convert(capsys, tree, tmp_path / "out")
    _assert_refused(
        code, err, tmp_path / "out", str(frame), "a folder where a frame or mask file is expected"
    )


def test_unknown_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder that is no VOS tree says what layout was expected."""
    src = tmp_path / "photos"
    (src / "holiday").mkdir(parents=True)
    (src / "holiday" / "a.jpg").write_bytes(b"\xff\xd8 not really")
    code, err = _convert(capsys, src, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", str(src), "unknown layout", "JPEGImages/<video>/<frame>.jpg")


@pytest.mark.parametrize(
    "evil", ["train/JPEGImages/v/../../../evil.jpg", "/tmp/evil.jpg"], ids=["dotdot", "absolute"]
)
def test_tar_member_escaping(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], evil: str
) -> None:
    """A source tar with a member path that escapes (`../`, absolute) is refused, naming the member."""
    archive = tmp_path / "train.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tree / "train", arcname="train")
        member = tarfile.TarInfo(evil)
        member.size = 4
        tar.addfile(member, io.BytesIO(b"evil"))
    code, err = _convert(capsys, archive, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", f"{archive}:{evil}", "escapes the archive")
    assert not (tmp_path / "evil.jpg").exists()


def test_tar_link_member(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A link inside a source tar (which could point anywhere) is refused, naming the member."""
    archive = tmp_path / "train.tar"
    name = f"train/JPEGImages/{_videos(tree)[0]}/00009.jpg"
    with tarfile.open(archive, "w") as tar:
        tar.add(tree / "train", arcname="train")
        member = tarfile.TarInfo(name)
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(member)
    code, err = _convert(capsys, archive, tmp_path / "out")
    _assert_refused(code, err, tmp_path / "out", f"{archive}:{name}", "links are not allowed")


def test_unwritable_output(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An output the shards cannot be written into gives one line naming the file, not a traceback.
    (Tests run as root, so a file where the shards/ folder must go stands in for a read-only disk.)"""
    out = tmp_path / "out"
    out.mkdir()
    (out / "shards").write_text("not a folder")
    code, err = _convert(capsys, tree, out)
    assert code == 1 and "Traceback" not in err
    assert f"mose-shards: error: {out}/shards/train/train-000000.tar: cannot write (" in err
    assert not (out / "manifest.json").exists()


def test_on_error_skip_converts_the_rest(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--on-error skip leaves the broken videos out, lists each with its reason, and warns at the end."""
    videos = _videos(tree)
    truncated, rgb = _frame(tree, video=0), _frame(tree, video=1, kind="png")
    truncated.write_bytes(truncated.read_bytes()[:100])
    with Image.open(rgb) as img:
        img.convert("RGB").save(rgb)
    (tree / "train" / "JPEGImages" / "zz-empty").mkdir()
    out = tmp_path / "out"
    code, err = _convert(capsys, tree, out, "--on-error", "skip")
    assert code == 0
    assert "mose-shards: warning: skipped 3 broken video(s)" in err
    manifest = json.loads((out / "manifest.json").read_text())
    split = manifest["splits"]["train"]
    reasons = {entry["video_id"]: entry["reason"] for entry in split["skipped"]}
    assert set(reasons) == {videos[0], videos[1], "zz-empty"}
    assert reasons[videos[0]].startswith(f"{truncated}: truncated JPEG")
    assert reasons[videos[1]].startswith(f"{rgb}: mask is a RGB image")
    assert "empty video folder" in reasons["zz-empty"]
    assert all(f"skipped {video}: " in err for video in reasons)
    assert (split["videos"], split["frames"]) == (1, SPEC.frames)
