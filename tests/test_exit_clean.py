"""The read-side commands exit 0, every time, under CPU load (issue 21: SIGABRT after "ok").

The abort came at interpreter exit: a worker of Arrow's global thread pool, started by pq.read_table's
dataset scanner, was still alive when the process ended, and a joinable std::thread destroyed at exit
calls std::terminate ("terminate called without an active exception"). It struck a few runs in a
hundred, more under load, so one run proves nothing: this runs the commands 200 times.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.torch]

LOADER = """
import sys
from mose_shards.loader import ClipDataset, ClipLoader
dataset = ClipDataset(sys.argv[1], split="train", clip_length=2, max_objects=2, seed=0, batch_size=2)
batches = sum(1 for _ in ClipLoader(dataset, num_workers=0))
assert batches > 0, batches
"""
BUSY = "while True: pass"
RUNS = {"verify": 70, "info": 60, "stats": 60, "loader": 10}  # 200 in all
AT_A_TIME = 3


def _command(kind: str, out: Path, script: Path) -> list[str]:
    if kind == "loader":
        return [sys.executable, str(script), str(out)]
    extra = {"verify": ["-q"], "stats": ["--json"], "info": []}[kind]
    return [sys.executable, "-m", "mose_shards.cli", kind, str(out), *extra]


def _run(command: list[str]) -> tuple[int, str]:
    done = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "PYTHONFAULTHANDLER": "1"}, timeout=300
    )
    return done.returncode, done.stderr[-400:]


def test_read_commands_never_abort_at_exit_under_load(converted: Path, tmp_path: Path) -> None:
    """verify, info, stats and a loader script: 200 subprocesses beside a busy loop, all exit 0."""
    pytest.importorskip("torch")
    script = tmp_path / "loader.py"
    script.write_text(LOADER)
    commands = [_command(kind, converted, script) for kind, n in RUNS.items() for _ in range(n)]
    commands = commands[::2] + commands[1::2]  # the kinds interleaved, so they overlap each other
    assert len(commands) >= 200
    load = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        with ThreadPoolExecutor(AT_A_TIME) as pool:
            results = list(pool.map(_run, commands))
    finally:
        load.kill()
        load.wait()
    failed = [(" ".join(c[-3:]), code, err) for c, (code, err) in zip(commands, results, strict=True) if code]
    assert not failed, f"{len(failed)} of {len(commands)} runs failed, e.g. {failed[:3]}"
