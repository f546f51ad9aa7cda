"""Reads that survive flaky storage: each attempt bounded by a timeout, retried with exponential
backoff and full jitter; a permanent failure names the shard URL and byte range (or the file).

On S3 at scale a 503 SlowDown or a reset connection on one GET is routine; one of them must not stop
an epoch. A missing object, refused credentials or a short read (a truncated shard) are not
transient and fail at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from ..core.errors import ConfigError, MoseShardsError, OutputError
from ..core.storage import Store

log = logging.getLogger(__name__)
T = TypeVar("T")
PERMANENT: tuple[type[BaseException], ...] = (
    FileNotFoundError, PermissionError, IsADirectoryError, MoseShardsError,
)  # fmt: skip


@dataclass(frozen=True)
class RetryPolicy:
    """attempts per read; timeout (seconds) per attempt, None for none; backoff doubles from `backoff`
    up to `max_backoff` seconds, each wait drawn uniformly below it (full jitter)."""

    attempts: int = 5
    timeout: float | None = 60.0
    backoff: float = 0.2
    max_backoff: float = 10.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ConfigError(f"read_attempts must be >= 1, got {self.attempts}")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"read_timeout must be positive or None, got {self.timeout}")
        if self.backoff < 0:
            raise ConfigError(f"read_backoff must be >= 0, got {self.backoff}")

    def wait(self, attempt: int, rng: random.Random) -> float:
        """Seconds to sleep after failed attempt number `attempt` (0-based)."""
        return rng.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))


def _bounded(fn: Callable[[], T], timeout: float | None) -> T:
    """fn() in a helper thread, abandoned (left to finish on its own) after `timeout` seconds."""
    if timeout is None:
        return fn()
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="mose-shards-read")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


def retried(
    fn: Callable[[], T], policy: RetryPolicy, where: str, sleep: Callable[[float], None] = time.sleep
) -> T:
    """fn() under `policy`; OutputError naming `where` (shard URL and byte range) when it keeps failing."""
    rng = random.Random()
    for attempt in range(policy.attempts):
        try:
            return _bounded(fn, policy.timeout)
        except PERMANENT as exc:
            if isinstance(exc, MoseShardsError):
                raise
            raise OutputError(f"{where}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # anything else may be transient: a reset, a 503, a timeout
            if attempt + 1 == policy.attempts:
                raise OutputError(
                    f"{where}: read failed after {policy.attempts} attempts: {type(exc).__name__}: {exc}"
                ) from None
            delay = policy.wait(attempt, rng)
            log.warning("%s: %s: %s; retrying in %.2f s", where, type(exc).__name__, exc, delay)
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class RetryingStore(Store):
    """A Store whose whole-file reads (manifest, table parts) are retried under a policy."""

    def __init__(self, store: Store, policy: RetryPolicy) -> None:
        # the same filesystem client: making another costs a session and a connection (skip_instance_cache)
        self.url, self.storage_options, self.fs, self.root = (
            store.url,
            store.storage_options,
            store.fs,
            store.root,
        )
        self.policy = policy

    def read(self, rel: str) -> bytes:
        return retried(lambda: Store.read(self, rel), self.policy, self.url_of(rel))
