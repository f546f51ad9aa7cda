"""Survive a kill: a rerun finishes only what is missing and ends byte-identical to a clean run."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import fsspec
import pytest

from mose_shards.cli import main
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.synth import SynthSpec, generate
from tests.helpers import clean_conversion, tree_bytes
from tests.s3server import S3Server

# Twenty one-video shards (a 1-byte cap gives every video a shard of its own): a run lasts long
# enough to be killed between its first and its last shard.
SPEC = SynthSpec(videos=10, frames=6, size=(96, 72), seed=3)
SHARD = "1"


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A raw tree of twenty small videos."""
    return generate(tmp_path_factory.mktemp("raw"), spec=SPEC)


@pytest.fixture(scope="module")
def clean(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: one uninterrupted conversion."""
    return clean_conversion(raw, tmp_path_factory)


def _command(raw: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "mose_shards.cli",
        "convert",
        str(raw),
        str(out),
        "--shard-size",
        SHARD,
        *extra,
    ]


def _wait_for_first_done_marker(proc: subprocess.Popen[bytes], done: Path) -> None:
    """Poll the filesystem (bounded) until one shard is finished; fail if the run ends first."""
    deadline = time.monotonic() + 120
    while not (done.is_dir() and any(p.suffix == ".json" for p in done.iterdir())):
        assert proc.poll() is None, "the conversion ended before its first shard was done"
        assert time.monotonic() < deadline, "no shard finished within two minutes"
        time.sleep(0.005)  # a poll interval, not a timing assumption


def _group_ends(pgid: int) -> bool:
    """Poll (bounded) until no process of the group is left alive."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.01)
    return False


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # the group may be gone already
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_kill_9_then_rerun_equals_a_clean_run(raw: Path, clean: Path, tmp_path: Path) -> None:
    """kill -9 of a real `convert` once its first shard is done; the rerun reuses it and ends identical."""
    out = tmp_path / "out"
    proc = subprocess.Popen(_command(raw, out, "--workers", "2", "-q"), start_new_session=True)
    try:
        _wait_for_first_done_marker(proc, out / ".mose-shards" / "done")
        still_running = proc.poll() is None
        os.kill(proc.pid, signal.SIGKILL)  # only the parent: its workers must die with it
        assert proc.wait() == -signal.SIGKILL
        workers_died = _group_ends(proc.pid)
    finally:
        _kill_group(proc)
    assert still_running
    assert workers_died  # no orphan worker goes on writing into the output
    assert not (out / "manifest.json").exists()
    # The worker count does not shape the bytes, so the rerun may use another one.
    rerun = subprocess.run(_command(raw, out, "--workers", "1", "-q"), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert "reused" in rerun.stdout
    assert tree_bytes(out) == tree_bytes(clean)
    assert not any((out / ".mose-shards" / "tmp").rglob("*"))


def test_rerun_after_a_kill_at_any_moment_cleans_up_and_matches(
    raw: Path, clean: Path, tmp_path: Path
) -> None:
    """Leftovers of every kind a kill can leave (temporaries, staged files, a shard without its done
    marker, a half-written shard) are cleaned or rebuilt; the rerun's bytes equal a clean run's."""
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    (out / "manifest.json").unlink()
    done = sorted((out / ".mose-shards" / "done").iterdir())
    for marker in done[5:]:
        marker.unlink()  # these shards were not finished
    unfinished = sorted((out / "shards").rglob("*.tar"))[5:]
    unfinished[0].write_bytes(unfinished[0].read_bytes()[:1000])  # moved in, marker not yet written
    unfinished[1].unlink()
    staged = out / ".mose-shards" / "tmp" / "train-000007-x1y2"
    staged.mkdir(parents=True)
    (staged / "shard.tar").write_bytes(b"half a shard")
    (out / "manifest.json.tmp-0badc0de").write_bytes(b"{")
    (out / ".mose-shards" / "done" / "train-000009.json.tmp-12345678").write_bytes(b"{")
    assert main(["convert", str(raw), str(out), "--shard-size", SHARD, "--workers", "1", "-q"]) == 0
    assert tree_bytes(out) == tree_bytes(clean)
    assert not any((out / ".mose-shards").rglob("*.tmp-*"))
    assert not any((out / ".mose-shards" / "tmp").rglob("*"))


def _partial(clean: Path, out: Path) -> None:
    """An unfinished output: the clean one without its manifest and its last done markers."""
    shutil.copytree(clean, out)
    (out / "manifest.json").unlink()
    for marker in sorted((out / ".mose-shards" / "done").iterdir())[3:]:
        marker.unlink()


def test_rerun_with_other_options_is_refused(
    raw: Path, clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A rerun with another shard size than the unfinished output was started with is refused, naming it."""
    out = tmp_path / "out"
    _partial(clean, out)
    before = tree_bytes(out, exclude=())
    assert main(["convert", str(raw), str(out), "--shard-size", "5MB", "-q"]) == 2
    err = capsys.readouterr().err
    assert "started with other options" in err and "shard_size 1 -> 5000000" in err
    assert "--overwrite" in err and "Traceback" not in err
    assert tree_bytes(out, exclude=()) == before  # nothing touched


def test_rerun_with_changed_input_is_refused(
    raw: Path, clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """When the source changed since the unfinished run began, the rerun says so instead of mixing them."""
    out, src = tmp_path / "out", tmp_path / "src"
    _partial(clean, out)
    shutil.copytree(raw, src)
    video = sorted((src / "train" / "JPEGImages").iterdir())[0]
    replacement = (video / "00001.jpg").read_bytes()
    assert len(replacement) != (video / "00000.jpg").stat().st_size  # the listing really changes
    (video / "00000.jpg").write_bytes(replacement)
    assert main(["convert", str(src), str(out), "--shard-size", SHARD, "-q"]) == 2
    assert "started with other input (the source changed since: " in capsys.readouterr().err


def test_overwrite_starts_from_scratch(raw: Path, tmp_path: Path) -> None:
    """--overwrite replaces an unfinished output made with other options by a clean one of the new options."""
    out, reference = tmp_path / "out", tmp_path / "reference"
    args = [str(raw), "--workers", "1", "-q"]
    assert main(["convert", args[0], str(reference), "--shard-size", "200KB", *args[1:]]) == 0
    assert main(["convert", args[0], str(out), "--shard-size", SHARD, *args[1:]]) == 0
    (out / "manifest.json").unlink()
    assert main(["convert", args[0], str(out), "--shard-size", "200KB", "--overwrite", *args[1:]]) == 0
    assert tree_bytes(out) == tree_bytes(reference)
    assert len(list((out / ".mose-shards" / "done").iterdir())) == len(list((out / "shards").rglob("*.tar")))


def test_rerun_of_a_finished_output_changes_nothing(
    raw: Path, clean: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rerunning a finished conversion reuses every shard and leaves every byte as it was."""
    out = tmp_path / "out"
    shutil.copytree(clean, out)
    before = tree_bytes(out, exclude=())
    assert main(["convert", str(raw), str(out), "--shard-size", SHARD, "-q"]) == 0
    shards = len(json.loads((out / "manifest.json").read_text())["splits"]["train"]["shards"])
    assert shards == SPEC.videos
    assert "reused 20 finished shard(s)" in capsys.readouterr().out
    assert tree_bytes(out, exclude=()) == before


def test_done_shard_whose_files_changed_is_built_again(raw: Path, clean: Path, tmp_path: Path) -> None:
    """A done marker is trusted only while its files are there at their size: a truncated tar and a
    missing table part (a kill during --overwrite, a careless rm) are rebuilt, and the rerun matches."""
    out = tmp_path / "out"
    _partial(clean, out)
    first, second = sorted((out / "shards" / "train").iterdir())[:2]
    first.write_bytes(first.read_bytes()[:-1024])
    (out / "tables" / "objects" / f"{second.stem}.parquet").unlink()
    assert main(["convert", str(raw), str(out), "--shard-size", SHARD, "--workers", "1", "-q"]) == 0
    assert tree_bytes(out) == tree_bytes(clean)


@pytest.mark.s3
def test_rerun_on_s3_finishes_what_is_missing(raw: Path, clean: Path, s3_server: S3Server) -> None:
    """On S3 (SeaweedFS) the done markers drive the rerun too: objects end byte-identical to a clean run."""
    url = s3_server.url("resume")
    config = ConvertConfig(str(raw), url, shard_size=1, storage_options=s3_server.storage_options())
    convert(config)
    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    root = url.removeprefix("s3://")
    fs.rm(f"{root}/manifest.json")
    for marker in sorted(fs.ls(f"{root}/.mose-shards/done"))[4:]:
        fs.rm(marker)
    fs.rm(f"{root}/shards/valid/valid-000009.tar")
    result = convert(config)
    assert (result.shards_reused, result.shards_written) == (4, 16)
    remote = {
        path.removeprefix(f"{root}/"): fs.cat_file(path)
        for path in fs.find(root)
        if not path.removeprefix(f"{root}/").startswith(".mose-shards/")
    }
    assert remote == tree_bytes(clean)  # the manifest too: nothing in it depends on where it was written
