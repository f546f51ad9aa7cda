"""Run shard tasks as Ray remote functions: a local Ray by default, or a cluster (`--ray-address`).

The tasks and results are the same plain objects the other executors use, so the output bytes do not
depend on where the work ran. Ray is imported lazily; without it the user gets the install hint.

On a cluster the default worker count is the cluster's CPUs (not the driver's cores), and a local
SRC or OUT is refused when the cluster has a node on another host: those nodes cannot see it.
"""

from __future__ import annotations

import logging
import socket
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from ..core.errors import ConfigError, MissingDependencyError

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

LOCAL_PATHS_HINT = (
    "put SRC and OUT on storage every node reaches (s3://, gs://, a shared mount given as a URL), "
    "or run without --ray-address on this machine"
)


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "ray") from None
    return ray


def remote_address(address: str | None) -> bool:
    """True when `address` names a cluster on another host (decided without connecting)."""
    if not address or address in ("auto", "local"):
        return False
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    return host not in _this_host()


def _this_host() -> set[str]:
    names = {"localhost", "127.0.0.1", "::1", socket.gethostname(), socket.getfqdn()}
    for name in list(names):
        try:
            names |= {str(info[4][0]) for info in socket.getaddrinfo(name, None)}
        except OSError:
            continue
    return {str(n) for n in names}


def refuse_local_paths(address: str | None, local_paths: list[str]) -> None:
    """ConfigError with a hint when local paths meet a cluster on another host."""
    if local_paths and remote_address(address):
        raise ConfigError(
            f"{local_paths[0]} is a local path, but the Ray cluster at {address} runs elsewhere; "
            + LOCAL_PATHS_HINT
        )


class RayExecutor:
    """Submit each task as a Ray remote call; at most `2 * workers` in flight so memory stays flat.

    `workers=None` means every CPU the cluster has (`in_flight` says how many once connected).
    `local_paths` (SRC or OUT on this machine's disk) are checked against the nodes once connected.
    `nodes` counts the tasks each node ran.
    """

    def __init__(
        self, *, workers: int | None, address: str | None = None, local_paths: list[str] | None = None
    ) -> None:
        self.workers = workers
        self.address = address
        self.local_paths = list(local_paths or [])
        self.nodes: Counter[str] = Counter()
        self.in_flight: int | None = None  # tasks at a time, once known
        refuse_local_paths(address, self.local_paths)

    def run(self, fn: Callable[[T], R], tasks: Iterable[T]) -> Iterator[R]:
        ray = _import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            self._init(ray)
        try:
            self._check_nodes(ray)
            workers = self.in_flight = self.workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            log.info("running shard tasks on Ray, %d at a time", workers)
            # Retried only when a worker or node dies (not on our errors): a task is idempotent, its
            # files are moved into place whole, so a retry writes the same bytes.
            remote_call = ray.remote(num_cpus=1, max_retries=3)(_call)
            yield from self._submit_all(ray, remote_call, fn, list(tasks), workers)
        finally:
            if started_here:
                ray.shutdown()

    def _init(self, ray: Any) -> None:
        if self.address:
            log.info("joining the Ray cluster at %s", self.address)
            ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            log.info("starting a local Ray with %d CPUs", self.workers or 1)
            ray.init(
                num_cpus=self.workers or 1,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )

    def _check_nodes(self, ray: Any) -> None:
        """A local SRC or OUT with a node on another host: refused before any task runs."""
        if not self.local_paths:
            return
        here = _this_host() | {ray.util.get_node_ip_address()}
        elsewhere = sorted(
            {
                n["NodeManagerAddress"]
                for n in ray.nodes()
                if n.get("Alive") and n["NodeManagerAddress"] not in here
            }
        )
        if elsewhere:
            raise ConfigError(
                f"{self.local_paths[0]} is a local path, but the Ray cluster has nodes on other hosts "
                f"({', '.join(elsewhere[:3])}); {LOCAL_PATHS_HINT}"
            )

    def _submit_all(
        self, ray: Any, remote_call: Any, fn: Callable[[T], R], pending: list[T], workers: int
    ) -> Iterator[R]:
        running: list[Any] = []
        pending.reverse()  # pop() from the end submits in plan order
        while pending or running:
            while pending and len(running) < 2 * workers:
                running.append(remote_call.remote(fn, pending.pop()))
            done, running = ray.wait(running, num_returns=1)
            for ref in done:
                result, node = _get(ray, ref)
                self.nodes[node] += 1
                yield result


def _call(fn: Callable[[T], R], task: T) -> tuple[R, str]:
    """The remote function: any callable (a builtin, a partial) runs through this plain function; the
    node it ran on comes back with the result."""
    import ray

    return fn(task), ray.get_runtime_context().get_node_id()


def _get(ray: Any, ref: Any) -> Any:
    """The result of a finished call; our own errors come back as themselves, not wrapped."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise
