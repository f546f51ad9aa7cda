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


def _tree(root: int, cpu: dict[int, float]) -> tuple[int, int]:
    """(sum, largest) resident bytes over `root` and its descendants; their CPU seconds go into `cpu`."""
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[int, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        pid = int(entry)
        children.setdefault(int(fields[1]), []).append(pid)  # fields[1]: ppid
        # fields[21]: rss in pages; fields[11], [12]: utime, stime in clock ticks
        stats[pid] = (int(fields[21]) * PAGE, (int(fields[11]) + int(fields[12])) / TICKS)
    total = largest = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        rss, seconds = stats.get(pid, (0, 0.0))
        total, largest = total + rss, max(largest, rss)
        if pid in stats:
            cpu[pid] = seconds
        todo += children.get(pid, [])
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
