"""Executors run shard tasks: in this process, in local processes, or on Ray, behind one interface."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Protocol, TypeVar

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
    """A pool of local processes (spawned, so no inherited threads or open clients)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        pending = list(tasks)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=self.workers, mp_context=context) as pool:
            running: set[Future[R]] = set()
            while pending or running:
                # Keep a short queue so a kill loses little and memory stays flat.
                while pending and len(running) < 2 * self.workers:
                    running.add(pool.submit(fn, pending.pop(0)))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()


def make_executor(kind: str, workers: int, **options: Any) -> Executor:
    """The executor for `--executor KIND --workers N`."""
    if kind == "local":
        return InlineExecutor() if workers <= 1 else ProcessExecutor(workers)
    if kind == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(workers=workers, **options)
    raise ValueError(f"unknown executor {kind!r}; known: local, ray")
