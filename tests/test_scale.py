"""Executors: one abstract suite run against each; the output bytes do not depend on where tasks ran."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mose_shards.cli import main
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.executors import Executor, InlineExecutor, ProcessExecutor, make_executor
from mose_shards.conversion.orchestrate import convert
from mose_shards.conversion.records import jpeg_size
from mose_shards.conversion.sources import discover
from mose_shards.conversion.writers import ShardWriter
from mose_shards.core.errors import DataError, LayoutError, MissingDependencyError
from tests.conftest import SMALL_SHARD
from tests.helpers import tree_bytes


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray for the abstract suite (RayExecutor reuses a Ray that is already running)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _executor(kind: str, request: pytest.FixtureRequest) -> Executor:
    if kind == "inline":
        return InlineExecutor()
    if kind == "process":
        return ProcessExecutor(2)
    request.getfixturevalue("local_ray")
    return make_executor("ray", 2)


EXECUTORS = ["inline", "process", pytest.param("ray", marks=[pytest.mark.ray, pytest.mark.slow])]


def test_two_worker_processes_give_the_bytes_of_one(raw_tree: Path, converted: Path, tmp_path: Path) -> None:
    """workers=2 (local processes) writes every file byte-identical to workers=1, manifest included."""
    out = tmp_path / "out"
    result = convert(ConvertConfig(str(raw_tree), str(out), shard_size=SMALL_SHARD, workers=2))
    assert result.shards_written > 2  # several tasks really ran side by side
    assert tree_bytes(out) == tree_bytes(converted)


@pytest.mark.ray
@pytest.mark.slow
def test_ray_gives_the_bytes_of_one_worker(raw_tree: Path, converted: Path, tmp_path: Path) -> None:
    """`convert --executor ray` (a local Ray started by the command) writes the same bytes as workers=1."""
    pytest.importorskip("ray")
    out = tmp_path / "out"
    args = ["convert", str(raw_tree), str(out), "--shard-size", str(SMALL_SHARD), "--executor", "ray"]
    assert main([*args, "--workers", "2", "-q"]) == 0
    assert tree_bytes(out) == tree_bytes(converted)


@pytest.mark.parametrize("kind", EXECUTORS)
def test_executor_yields_every_result_once(kind: str, request: pytest.FixtureRequest) -> None:
    """Each executor returns one result per task, whatever the order they finish in."""
    tasks = [b"x" * n for n in range(9)]
    assert sorted(_executor(kind, request).run(len, tasks)) == list(range(9))


@pytest.mark.parametrize("kind", EXECUTORS)
def test_executor_raises_our_errors_as_themselves(kind: str, request: pytest.FixtureRequest) -> None:
    """A DataError raised in a worker reaches the caller as a DataError naming the file, not wrapped."""
    fn = functools.partial(jpeg_size, where="train/JPEGImages/v/00003.jpg")
    with pytest.raises(DataError) as info:
        list(_executor(kind, request).run(fn, [b"not a jpeg"]))
    assert info.value.path == "train/JPEGImages/v/00003.jpg"
    assert info.value.problem == "not a JPEG file"


@pytest.mark.parametrize("kind", EXECUTORS)
def test_executor_raises_single_message_errors(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A one-message error (LayoutError) survives the trip back from a worker with its text."""
    with pytest.raises(LayoutError, match="no such file or folder"):
        list(_executor(kind, request).run(discover, [str(tmp_path / "missing")]))


def test_unknown_executor_lists_the_known_ones() -> None:
    """An unknown executor name is refused with the list of known ones."""
    with pytest.raises(ValueError, match="known: local, ray"):
        make_executor("dask", 2)


def test_shard_writer_matches_webdataset_tarwriter(tmp_path: Path) -> None:
    """The stdlib shard writer (no torch import in workers) writes webdataset TarWriter's exact bytes."""
    wds = pytest.importorskip("webdataset")
    samples = [
        ("a" * 150 + "/00000", {"jpg": b"x" * 1000, "png": b"y" * 3, "json": b"{}"}),  # PAX long name
        ("vid\u00e9%2E1/00001", {"jpg": b"z", "png": b"", "json": b"[]"}),
    ]
    with ShardWriter(path=tmp_path / "ours.tar") as writer:
        for key, members in samples:
            writer.write(key, members)
    with open(tmp_path / "wds.tar", "wb") as fh:
        reference = wds.TarWriter(fh, user="", group="", mode=0o444, mtime=0, encoder=False)
        for key, members in samples:
            reference.write({"__key__": key, **members})
        reference.close()
    assert (tmp_path / "ours.tar").read_bytes() == (tmp_path / "wds.tar").read_bytes()
    assert writer.members[("a" * 150 + "/00000", "jpg")][1] == 1000


def test_ray_missing_gives_the_install_hint(
    monkeypatch: pytest.MonkeyPatch, raw_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without ray installed, `--executor ray` fails with the pip hint (exit 1), not an ImportError."""
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install 'mose-shards\[ray\]'"):
        list(make_executor("ray", 2).run(len, [b""]))
    assert main(["convert", str(raw_tree), str(tmp_path / "out"), "--executor", "ray", "-q"]) == 1
    assert (
        "mose-shards: error: ray is not installed: pip install 'mose-shards[ray]'" in capsys.readouterr().err
    )
    assert not (tmp_path / "out" / "manifest.json").exists()
