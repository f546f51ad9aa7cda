"""One writer per output: the lease under OUT/.mose-shards/, locally and on S3 (SeaweedFS)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mose_shards.cli import main
from mose_shards.conversion.lease import LEASE_FILE, Holder, Lease
from mose_shards.core.errors import OutputError
from mose_shards.core.storage import Store
from mose_shards.synth import SynthSpec, generate
from tests.helpers import clean_conversion, tree_bytes
from tests.s3server import S3Server

SPEC = SynthSpec(videos=6, frames=4, size=(64, 48), seed=11)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate(tmp_path_factory.mktemp("raw"), spec=SPEC)


@pytest.fixture(scope="module")
def clean(raw: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clean_conversion(raw, tmp_path_factory)


def _argv(raw: Path, out: Path) -> list[str]:
    return ["convert", str(raw), str(out), "--shard-size", "1", "--workers", "1", "-q"]


def _foreign(out: Path, *, host: str, pid: int, age: float) -> None:
    """A lease file written by another run: `age` seconds since its last heartbeat."""
    now = time.time()
    holder = Holder("someone", host, pid, "0" * 32, now - age - 5, now - age)
    (out / ".mose-shards").mkdir(parents=True, exist_ok=True)
    (out / LEASE_FILE).write_bytes(holder.to_json())


@pytest.mark.slow
def test_second_run_is_refused_then_a_killed_holder_is_taken_over(
    raw: Path,
    clean: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While a real `convert` holds OUT, a second one is refused in one line naming it and touches
    nothing; once the holder is killed (dead pid, same host), the rerun takes over and ends identical."""
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mose_shards.cli", *_argv(raw, out)]
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        done = out / ".mose-shards" / "done"
        while not (done.is_dir() and any(done.iterdir())):
            assert proc.poll() is None and time.monotonic() < deadline, "no shard finished"
            time.sleep(0.005)  # a poll interval, not a timing assumption
        os.kill(proc.pid, signal.SIGSTOP)  # frozen mid-run: its lease is live for the next minute
        before = tree_bytes(out, exclude=())
        assert main(_argv(raw, out)) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert "another conversion is writing here" in err[0]
        assert f"pid {proc.pid}" in err[0] and socket.gethostname() in err[0]
        assert tree_bytes(out, exclude=()) == before  # the refused run deleted and wrote nothing
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with caplog.at_level(logging.WARNING, logger="mose_shards"):
        assert main(_argv(raw, out)) == 0
    assert any(
        "taking over the lease" in r.getMessage() and f"pid {proc.pid}" in r.getMessage()
        for r in caplog.records
    )
    assert tree_bytes(out) == tree_bytes(clean)
    assert not (out / LEASE_FILE).exists()  # released at the end


def test_live_lease_of_another_host_is_refused_stale_one_taken_over(
    raw: Path,
    clean: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another host's lease with a recent heartbeat refuses the run; one silent for longer than the
    stale time is taken over with a warning."""
    out = tmp_path / "out"
    _foreign(out, host="node-7", pid=4242, age=5)
    assert main(_argv(raw, out)) == 1
    err = capsys.readouterr().err
    assert "owner someone, host node-7, pid 4242, last heartbeat 5s ago" in err
    assert not (out / "shards").exists()
    _foreign(out, host="node-7", pid=4242, age=600)
    with caplog.at_level(logging.WARNING, logger="mose_shards"):
        assert main(_argv(raw, out)) == 0
    assert any("taking over the lease" in r.getMessage() for r in caplog.records)
    assert tree_bytes(out) == tree_bytes(clean)


def test_local_create_is_exclusive_and_a_lost_lease_stops_its_holder(tmp_path: Path) -> None:
    """Two leases created at once: one wins (O_EXCL). A holder whose lease was taken over notices at
    its next heartbeat and check() raises naming the new holder."""
    store = Store(tmp_path / "out")
    first, second = Lease(store), Lease(store)
    assert first._create() and not second._create()
    taker = Lease(store, stale_seconds=-1.0)  # every heartbeat counts as too old
    taker.acquire()
    try:
        first.renew()
        with pytest.raises(OutputError, match="lost the lease"):
            first.check()
    finally:
        taker.release()
    assert not store.exists(LEASE_FILE)


@pytest.mark.s3
def test_s3_lease_uses_conditional_puts(s3_server: S3Server) -> None:
    """On SeaweedFS: If-None-Match makes creation exclusive, a live holder is refused by name, a stale
    lease is taken over with If-Match, and the old holder then finds it lost."""
    store = Store(s3_server.url("lease/out"), s3_server.storage_options())
    first, second = Lease(store), Lease(store)
    assert first.conditional
    assert first._create() and not second._create()
    with pytest.raises(OutputError, match=f"pid {os.getpid()}"):
        second.acquire()
    taker = Lease(store, stale_seconds=-1.0)  # every heartbeat counts as too old
    taker.acquire()
    try:
        first.renew()
        with pytest.raises(OutputError, match="lost the lease"):
            first.check()
        taker.renew()
        taker.check()  # the holder renews with If-Match on its own ETag
    finally:
        taker.release()
    assert not store.exists(LEASE_FILE)
