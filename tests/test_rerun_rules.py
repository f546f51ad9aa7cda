"""Reruns never mix: damaged done markers, same-size edits of the source, and fsync before done."""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

import pytest

from mose_shards.cli import main
from mose_shards.core import storage
from mose_shards.synth import SynthSpec, generate
from tests.helpers import clean_conversion, tree_bytes

SPEC = SynthSpec(videos=3, frames=4, size=(64, 48), seed=5, categories=True)
SHARD = "1"  # one video per shard


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small videos with a YouTube-VOS meta.json per split."""
    return generate(tmp_path_factory.mktemp("raw"), spec=SPEC)


@pytest.fixture(scope="module")
def clean(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clean_conversion(raw, tmp_path_factory)


def _unfinished(clean: Path, out: Path) -> None:
    shutil.copytree(clean, out)
    (out / "manifest.json").unlink()


def _convert(src: Path, out: Path) -> int:
    return main(["convert", str(src), str(out), "--shard-size", SHARD, "-q", "--workers", "1"])


def test_unreadable_done_marker_means_the_shard_is_redone(
    raw: Path, clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated and an empty done marker (a crash mid-write without atomic rename) are not trusted:
    the rerun builds those shards again, warns, and ends byte-identical to a clean run."""
    out = tmp_path / "out"
    _unfinished(clean, out)
    markers = sorted((out / ".mose-shards" / "done").iterdir())
    markers[0].write_bytes(markers[0].read_bytes()[:40])
    markers[1].write_bytes(b"")
    shard = out / "shards" / "train" / f"{markers[0].stem}.tar"
    shard.write_bytes(b"\0" * shard.stat().st_size)  # what a power loss can leave: the size, no bytes
    assert _convert(raw, out) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert tree_bytes(out, exclude=()) == tree_bytes(clean, exclude=())


def _same_size_edit(path: Path) -> None:
    """Change a file's content in place without changing its size."""
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))


def test_same_size_edit_of_meta_json_is_seen(
    raw: Path, clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """meta.json edited in place, same size, mtime put back: the content digest still refuses the rerun."""
    out, src = tmp_path / "out", tmp_path / "src"
    _unfinished(clean, out)
    shutil.copytree(raw, src)
    meta = src / "train" / "meta.json"
    before = meta.stat()
    text = meta.read_text()
    category = text.split('"category": "', 1)[1].split('"', 1)[0]
    edited = text.replace(f'"category": "{category}"', f'"category": "{category[::-1]}"', 1)
    assert edited != text and len(edited) == len(text)
    meta.write_text(edited)
    os.utime(meta, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _convert(src, out) == 2
    assert "started with other input (" in capsys.readouterr().err
    assert not (out / "manifest.json").exists()


def test_same_size_edit_of_a_frame_is_seen_by_its_mtime(
    raw: Path, clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A frame rewritten with other bytes of the same size has a new mtime: the rerun is refused."""
    out, src = tmp_path / "out", tmp_path / "src"
    _unfinished(clean, out)
    shutil.copytree(raw, src)
    frame = sorted((src / "train" / "JPEGImages").glob("*/00001.jpg"))[0]
    mtime = frame.stat().st_mtime_ns
    _same_size_edit(frame)
    os.utime(frame, ns=(mtime + 10**9, mtime + 10**9))  # not left to the clock's granularity
    assert _convert(src, out) == 2
    assert "started with other input (" in capsys.readouterr().err


def test_a_rewritten_tar_source_is_seen(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """For a .tar source the archive's own size and mtime are in the fingerprint."""
    tar, out = tmp_path / "train.tar", tmp_path / "out"
    with tarfile.open(tar, "w") as archive:
        archive.add(raw / "train", arcname="train")
    assert _convert(tar, out) == 0
    (out / "manifest.json").unlink()
    assert _convert(tar, out) == 0  # unchanged: the rerun is accepted
    (out / "manifest.json").unlink()
    stat = tar.stat()
    os.utime(tar, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert _convert(tar, out) == 2
    assert "the source changed since: " in capsys.readouterr().err


def test_local_files_are_fsynced_before_their_done_marker(
    raw: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every shard and table part is fsynced (bytes, then its folder) before its done marker lands."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = storage.fsync_path, os.replace

    def fsync_path(path: str | os.PathLike[str], directory: bool = False) -> None:
        events.append(("fsync", os.fspath(path)))
        real_fsync(path, directory)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(("replace", os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(storage, "fsync_path", fsync_path)
    monkeypatch.setattr(storage.os, "replace", replace)
    out = tmp_path / "out"
    assert _convert(raw, out) == 0
    placed = [i for i, (kind, path) in enumerate(events) if kind == "replace" and "/done/" in path]
    assert placed
    for index in placed:
        name = Path(events[index][1]).stem
        tar_moved = max(
            i
            for i, (kind, path) in enumerate(events[:index])
            if kind == "replace" and path.endswith(f"{name}.tar")
        )
        assert events[tar_moved - 1][0] == "fsync"  # the staged tar's bytes, before the rename
        assert events[tar_moved + 1] == ("fsync", str(Path(events[tar_moved][1]).parent))
        assert events[index + 1] == ("fsync", str(out / ".mose-shards" / "done"))


def test_same_size_edit_of_meta_split_json_beside_a_tar_is_seen(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MOSEv2's shipped form (train.tar with meta_train.json beside it): an in-place edit of the
    meta file, same size and mtime, refuses the rerun of the unfinished output."""
    src, out = tmp_path / "src", tmp_path / "out"
    src.mkdir()
    with tarfile.open(src / "train.tar", "w") as archive:
        for path in sorted((raw / "train").rglob("*")):
            if path.name != "meta.json":
                archive.add(path, arcname=f"train/{path.relative_to(raw / 'train')}", recursive=False)
    meta = src / "meta_train.json"
    meta.write_bytes((raw / "train" / "meta.json").read_bytes())
    assert _convert(src, out) == 0
    (out / "manifest.json").unlink()
    assert _convert(src, out) == 0  # unchanged: the rerun is accepted
    (out / "manifest.json").unlink()
    before = meta.stat()
    text = meta.read_text()
    category = text.split('"category": "', 1)[1].split('"', 1)[0]
    edited = text.replace(f'"category": "{category}"', f'"category": "{category}X"', 1).replace("\n", "", 1)
    assert edited != text and len(edited) == len(text)
    meta.write_text(edited)
    os.utime(meta, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert _convert(src, out) == 2
    assert "the source changed since: " in capsys.readouterr().err
