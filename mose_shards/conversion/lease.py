"""One writer per output: a lease file `OUT/.mose-shards/lease.json` held while a conversion runs.

The lease names its holder (owner, host, pid) and carries a heartbeat, renewed by a thread every
HEARTBEAT_SECONDS. A second run finds it and is refused in one line naming the holder. A lease is
stale when its heartbeat is older than STALE_SECONDS, or when its holder ran on this host and its pid
is gone (a killed run); a stale lease is taken over with a warning.

Creating and taking over are atomic where the store allows it:
- local disk: `O_CREAT | O_EXCL` to create; a stale lease is renamed away first (one rename wins);
- S3 (s3fs): conditional PUTs, `If-None-Match: *` to create and `If-Match: <ETag>` to renew and to
  take over, so two runs can never both believe they hold it;
- any other store: write, then read back and compare the token; the heartbeat does the rest (two
  runs starting within the same instant on such a store are not told apart).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from ..core.errors import OutputError
from ..core.layout import LEASE_FILE
from ..core.storage import Store, replace_durably

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 60.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: the content of the lease file."""

    owner: str
    host: str
    pid: int
    token: str
    started: float
    heartbeat: float

    def describe(self, now: float) -> str:
        return (
            f"owner {self.owner}, host {self.host}, pid {self.pid}, "
            f"last heartbeat {max(0.0, now - self.heartbeat):.0f}s ago"
        )

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()


def _parse(data: bytes) -> Holder | None:
    """The holder in a lease file; None when it is unreadable (then it counts as stale)."""
    try:
        doc = json.loads(data)
        return Holder(str(doc["owner"]), str(doc["host"]), int(doc["pid"]), str(doc["token"]),
                      float(doc["started"]), float(doc["heartbeat"]))  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _precondition_failed(exc: BaseException) -> bool:
    text = str(exc)
    return "PreconditionFailed" in text or "pre-condition" in text or "412" in text


class Lease:
    """Hold `OUT/.mose-shards/lease.json` for the duration of a with-block."""

    def __init__(
        self,
        store: Store,
        *,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
        stale_seconds: float = STALE_SECONDS,
    ) -> None:
        self.store = store
        self.heartbeat_seconds = heartbeat_seconds
        self.stale_seconds = stale_seconds
        self.path = store.path(LEASE_FILE)
        now = time.time()
        self.me = Holder(_owner(), socket.gethostname(), os.getpid(), uuid.uuid4().hex, now, now)
        self.conditional = "s3" in _protocols(store.fs)
        self._etag: str | None = None
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the public face -----------------------------------------------------------------------

    def acquire(self) -> None:
        """Take the lease, or take over a stale one (with a warning); OutputError naming a live holder."""
        for _ in range(3):  # a lost race with another taker: look again
            current, etag = self._read()
            if current is None and etag is None:
                if self._create():
                    break
                continue
            if current is not None and not self._stale(current):
                raise OutputError(self._refusal(current))
            if self._take_over(current, etag):
                what = current.describe(time.time()) if current is not None else "unreadable lease file"
                log.warning("%s: taking over the lease of a stopped conversion (%s)", self.store.url, what)
                break
        else:
            raise OutputError(f"{self.store.url}: could not take the lease ({LEASE_FILE}); try again")
        self._thread = threading.Thread(target=self._beat, name="mose-shards-lease", daemon=True)
        self._thread.start()

    def _refusal(self, holder: Holder) -> str:
        return (
            f"{self.store.url}: another conversion is writing here ({holder.describe(time.time())}); "
            f"wait for it or stop it (a stopped run's lease is taken over after {self.stale_seconds:.0f}s)"
        )

    def check(self) -> None:
        """OutputError when the lease was lost (taken over by another run) since it was acquired."""
        if self._lost:
            raise OutputError(self._lost)

    def release(self) -> None:
        """Stop the heartbeat and delete the lease file, if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        current, _ = self._read()
        if current is not None and current.token == self.me.token:
            with contextlib.suppress(FileNotFoundError):
                self.store.fs.rm_file(self.path)

    def renew(self) -> None:
        """Write a fresh heartbeat if the lease is still ours; otherwise remember that it was lost."""
        current, etag = self._read()
        if current is None or current.token != self.me.token:
            holder = current.describe(time.time()) if current else "no lease file"
            self._lost = f"{self.store.url}: lost the lease to another conversion ({holder}); stopped"
            return
        self.me = Holder(**{**asdict(self.me), "heartbeat": time.time()})
        if self.conditional:
            try:
                self._etag = _etag(self.store.fs.pipe_file(self.path, self.me.to_json(), IfMatch=etag))
            except OSError as exc:
                if not _precondition_failed(exc):
                    raise
                self._lost = f"{self.store.url}: lost the lease to another conversion; stopped"
        elif self.store.local:
            _local_replace(self.path, self.me.to_json(), self.me.token)
        else:
            self.store.fs.pipe_file(self.path, self.me.to_json())

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    # --- the mechanics -------------------------------------------------------------------------

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_seconds):
            try:
                self.renew()
            except Exception as exc:  # a network hiccup: try again at the next beat, never crash the run
                log.warning("%s: lease heartbeat failed (%s); retrying", self.store.url, exc)

    def _stale(self, holder: Holder) -> bool:
        if holder.host == self.me.host and not _pid_alive(holder.pid):
            return True
        return time.time() - holder.heartbeat > self.stale_seconds

    def _read(self) -> tuple[Holder | None, str | None]:
        """(holder, version) of the lease file; (None, None) when there is none."""
        fs = self.store.fs
        try:
            etag = "present"
            if self.conditional:  # the version first: a newer content then fails the token check
                fs.invalidate_cache(self.path)
                etag = _etag(fs.info(self.path)) or etag
            data = fs.cat_file(self.path)
        except FileNotFoundError:
            return None, None
        return _parse(data), etag

    def _create(self) -> bool:
        data = self.me.to_json()
        if self.store.local:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            return True
        if self.conditional:
            try:
                self._etag = _etag(self.store.fs.pipe_file(self.path, data, mode="create"))
            except OSError as exc:
                if _precondition_failed(exc) or isinstance(exc, FileExistsError):
                    return False
                raise
            return True
        self.store.fs.pipe_file(self.path, data)
        return self._still_mine()

    def _take_over(self, stale: Holder | None, etag: str | None) -> bool:
        data = self.me.to_json()
        if self.store.local:
            aside = f"{self.path}.stale-{self.me.token}"
            try:
                os.rename(self.path, aside)  # of two takers, one rename wins
            except FileNotFoundError:
                return False
            with open(aside, "rb") as fh:
                moved = _parse(fh.read())
            if stale is not None and (moved is None or moved.token != stale.token):
                with contextlib.suppress(FileExistsError):
                    os.link(aside, self.path)  # a fresh lease slipped in: put it back, look again
                os.unlink(aside)
                return False
            os.unlink(aside)
            return self._create()
        if self.conditional:
            try:
                self._etag = _etag(self.store.fs.pipe_file(self.path, data, IfMatch=etag))
            except OSError as exc:
                if _precondition_failed(exc):
                    return False
                raise
            return True
        self.store.fs.pipe_file(self.path, data)
        return self._still_mine()

    def _still_mine(self) -> bool:
        current, _ = self._read()
        return current is not None and current.token == self.me.token


def _local_replace(path: str, data: bytes, token: str) -> None:
    """Rewrite the local lease atomically (a name of its own: leftover cleaning never touches it)."""
    replace_durably(path, data, f"{path}.beat-{token}")


def _etag(response: Any) -> str | None:
    if isinstance(response, dict):
        value = response.get("ETag") or response.get("etag")
        return str(value) if value else None
    return None


def _protocols(fs: Any) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)


def _owner() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


__all__ = ["HEARTBEAT_SECONDS", "LEASE_FILE", "STALE_SECONDS", "Holder", "Lease"]
