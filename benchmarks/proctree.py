"""Wall time, CPU seconds and peak RSS of a command and all its descendants, sampled from /proc.

Shared by the benchmarks that run `mose-shards convert` as a subprocess (scale, archives, rehearsal).
Sampled rather than taken from `ru_maxrss`: a forked child's `ru_maxrss` starts at its parent's RSS.
Linux only.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from dataclasses import dataclass

PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    seconds: float
    cpu_seconds: float  # user + system of the command and its descendants, as last seen alive
    rss_tree: int  # peak bytes resident over the whole process tree
    rss_largest: int  # peak bytes resident in its largest single process (what `time -v` reports)
    returncode: int
    stderr: str


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a running process has used so far, its threads included."""
    return _cpu(_stat(pid))


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()


def _cpu(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime in clock ticks


def _tree(root: int, cpu: dict[int, float]) -> tuple[int, int]:
    """(sum, largest) resident bytes over `root` and its descendants; their CPU seconds go into `cpu`.

    The tree is walked through /proc/<pid>/task/<tid>/children, so a sample reads a few files for a
    few processes: scanning all of /proc every 20 ms took ~15% of a core, stolen from the command
    when it keeps every core busy (a 2-worker run), and not when a core is idle (a 1-worker run)."""
    total = largest = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        try:
            fields = _stat(pid)
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # the process ended while we looked
        rss = int(fields[21]) * PAGE  # fields[21]: rss in pages
        cpu[pid] = _cpu(fields)
        total, largest = total + rss, max(largest, rss)
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    todo += [int(child) for child in fh.read().split()]
            except OSError:
                continue
    return total, largest


def measure(command: list[str], interval: float = 0.01) -> Measured:
    """Run `command` (stdout discarded, stderr kept) and sample its process tree every `interval` s."""
    cpu: dict[int, float] = {}
    peak_tree = peak_one = 0
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak_tree, peak_one
        while not stop.is_set():
            total, largest = _tree(proc.pid, cpu)
            peak_tree, peak_one = max(peak_tree, total), max(peak_one, largest)
            stop.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, err = proc.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    sampler.join()
    return Measured(
        seconds, sum(cpu.values()), peak_tree, peak_one, proc.returncode, err.decode(errors="replace")
    )


def convert_command(source: str, out: str, workers: int, shard_size: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "mose_shards.cli", "convert", source, out, "-q",
            "--workers", str(workers), "--shard-size", shard_size]  # fmt: skip
