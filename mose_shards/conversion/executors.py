"""Executors run shard tasks: in this process, in local processes, or on Ray, behind one interface."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

from ..core.cores import available_cores

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Runs `fn` over tasks and yields the results as they complete (any order)."""

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]: ...


class InlineExecutor:
    """One task after another in this process: the simplest, and the reference for the others."""

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        for task in tasks:
            yield fn(task)


class ProcessExecutor:
    """A pool of local processes (spawned, so no inherited threads or open clients).

    At most `2 * workers` tasks are queued at a time, so memory stays flat and a kill loses little.
    Workers die with the parent (Linux), so a `kill -9` of the command leaves no orphan still writing.
    `start(warm)` spawns the workers ahead of `run` (the caller plans meanwhile); `run` shuts them
    down when it ends, `close` when it is never reached.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def start(self, warm: Callable[[], object] | None = None, count: int | None = None) -> None:
        """Spawn `count` workers now (all by default; the others as tasks come), each running `warm`
        once: a module-level function, so unpickling it imports its module, the task code, in the
        worker while the caller works on."""
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_die_with_parent)
            if warm is not None:
                for _ in range(min(self.workers, count or self.workers)):
                    self._pool.submit(warm)

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        pending = deque(tasks)
        self.start()
        pool = self._pool
        assert pool is not None
        try:
            running: set[Future[R]] = set()
            while pending or running:
                while pending and len(running) < 2 * self.workers:
                    running.add(pool.submit(fn, pending.popleft()))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this worker when its parent dies (PR_SET_PDEATHSIG); elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def make_executor(kind: str, workers: int | None, **options: Any) -> Executor:
    """The executor for `--executor KIND --workers N` (None: every core, or every CPU of the cluster).
    `options` go to the Ray executor (address, local_paths)."""
    if kind == "local":
        count = workers or available_cores()
        return InlineExecutor() if count <= 1 else ProcessExecutor(count)
    if kind == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(workers=workers, **options)
    raise ValueError(f"unknown executor {kind!r}; known: local, ray")
