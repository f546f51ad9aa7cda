"""Ray at cluster scale: a real two-node cluster on this host, a node killed mid-run, remote refusal."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mose_shards.cli import main
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.executors import make_executor
from mose_shards.conversion.orchestrate import convert
from mose_shards.synth import SynthSpec, generate
from tests import raycluster
from tests.helpers import clean_conversion, tree_bytes

pytestmark = pytest.mark.ray
SPEC = SynthSpec(videos=8, frames=6, size=(96, 72), seed=13)  # sixteen one-video shards


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("raw"), spec=SPEC)


@pytest.fixture(scope="module")
def clean(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clean_conversion(raw, tmp_path_factory)


@pytest.mark.slow
def test_two_node_cluster_spreads_tasks_and_survives_a_lost_node(
    raw: Path, clean: Path, tmp_path: Path
) -> None:
    """On `ray start --head` + one `ray start --address` node: the default worker count is the
    cluster's 2 CPUs, tasks run on both nodes, and a run whose worker node is SIGKILLed mid-run still
    ends byte-identical to a local run."""
    pytest.importorskip("ray")
    if raycluster.ray_binary() is None:
        pytest.skip("the `ray` command is not installed")
    with raycluster.running() as cluster:
        executor = make_executor("ray", None, address=cluster.address)
        out = tmp_path / "spread"
        convert(ConvertConfig(str(raw), str(out), shard_size=1, workers=None, executor="ray",
                              ray_address=cluster.address), executor=executor)  # fmt: skip
        assert executor.in_flight == 2  # type: ignore[attr-defined]
        assert len(executor.nodes) == 2, executor.nodes  # type: ignore[attr-defined]
        assert tree_bytes(out) == tree_bytes(clean)

        out = tmp_path / "killed"
        cmd = [sys.executable, "-m", "mose_shards.cli", "convert", str(raw), str(out), "--shard-size", "1",
               "--ray-address", cluster.address, "-q"]  # fmt: skip
        proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE, text=True)
        try:
            done, deadline = out / ".mose-shards" / "done", time.monotonic() + 180
            while not (done.is_dir() and any(done.iterdir())):
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "no shard finished"
                time.sleep(0.005)  # a poll interval, not a timing assumption
            still_running = proc.poll() is None
            cluster.workers[0].kill()
            _, err = proc.communicate(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        assert still_running
        assert proc.returncode == 0, err
        assert tree_bytes(out) == tree_bytes(clean)


def test_local_paths_with_a_remote_cluster_are_refused(
    raw: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A local SRC or OUT with a cluster on another host is refused in one line with a hint, before
    anything is written (no connection is attempted)."""
    out = tmp_path / "out"
    assert main(["convert", str(raw), str(out), "--ray-address", "ray://ray-head.invalid:10001", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a local path" in err[0] and "s3://" in err[0]
    assert not out.exists()
