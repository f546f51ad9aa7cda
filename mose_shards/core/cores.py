"""The cores this process may use: the pipeline's default worker count, the archive readers' threads."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (its affinity: `taskset`, a container's cpuset): the
    default --workers, and the threads that list a .tar.gz."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
