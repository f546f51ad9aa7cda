"""Run shard tasks as Ray remote functions: a local Ray by default, or a cluster (`--ray-address`).

The tasks and results are the same plain objects the other executors use, so the output bytes do not
depend on where the work ran. Ray is imported lazily; without it the user gets the install hint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ..core.errors import MissingDependencyError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "ray") from None
    return ray


class RayExecutor:
    """Submit each task as a Ray remote call; at most `2 * workers` in flight so memory stays flat."""

    def __init__(self, *, workers: int, address: str | None = None) -> None:
        self.workers = workers
        self.address = address

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            self._init(ray)
        try:
            # Retried only when a worker or node dies (not on our errors): a task is idempotent, its
            # files are moved into place whole, so a retry writes the same bytes.
            remote_call = ray.remote(num_cpus=1, max_retries=3)(_call)
            yield from self._submit_all(ray, remote_call, fn, list(tasks))
        finally:
            if started_here:
                ray.shutdown()

    def _init(self, ray: Any) -> None:
        if self.address:
            log.info("joining the Ray cluster at %s", self.address)
            ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            log.info("starting a local Ray with %d CPUs", self.workers)
            ray.init(
                num_cpus=self.workers,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )

    def _submit_all(self, ray: Any, remote_call: Any, fn: Callable[[T], R], pending: list[T]) -> Iterator[R]:
        running: list[Any] = []
        pending.reverse()  # pop() from the end submits in plan order
        while pending or running:
            while pending and len(running) < 2 * self.workers:
                running.append(remote_call.remote(fn, pending.pop()))
            done, running = ray.wait(running, num_returns=1)
            for ref in done:
                yield _get(ray, ref)


def _call(fn: Callable[[T], R], task: T) -> R:
    """The remote function: any callable (a builtin, a partial) runs through this plain function."""
    return fn(task)


def _get(ray: Any, ref: Any) -> Any:
    """The result of a finished call; our own errors come back as themselves, not wrapped."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise
