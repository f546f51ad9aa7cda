"""A local cache of whole shards under a size bound, for multi-epoch runs from object storage.

Files are named by the shard's sha256 from the manifest, so a re-conversion to the same URL is
never served from old bytes, and a download is checked against that hash before it is used. One
process downloads a shard while the others wait on a file lock (`fcntl.flock`), so concurrent
DataLoader workers on a machine fetch each shard once. A shard larger than the bound is not cached
(the caller streams it with range reads). When the total exceeds the bound, the least recently used
shards are deleted (a reader that has one open keeps reading it).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from ..core.errors import ConfigError, OutputError
from ..core.sizes import parse_size
from .index import Shard

log = logging.getLogger(__name__)

DEFAULT_LIMIT = "20GB"
CHUNK = 8 * 1024 * 1024  # download in ranged reads of this size (each retried on its own)
ReadRange = Callable[[Shard, int, int], bytes]  # (shard, start, size) -> bytes


class ShardCache:
    """Whole shards kept in `directory`, at most `limit` bytes in all, named by content hash."""

    def __init__(self, directory: str | os.PathLike[str], limit: int | str = DEFAULT_LIMIT) -> None:
        self.directory = Path(directory)
        self.limit = parse_size(limit)
        if self.limit <= 0:
            raise ConfigError(f"cache limit must be positive, got {limit!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.downloads = 0  # shards this instance fetched (the others came from disk)

    def __repr__(self) -> str:
        return f"ShardCache({str(self.directory)!r}, limit={self.limit})"

    def name(self, shard: Shard) -> Path:
        return self.directory / f"{shard.sha256}.tar"

    @contextlib.contextmanager
    def _locked(self, shard: Shard) -> Iterator[None]:
        with open(self.directory / f".{shard.sha256}.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # released when the file is closed
            yield

    def get(self, shard: Shard, read: ReadRange) -> Path | None:
        """The local copy of a shard, downloaded once when missing; None when it exceeds the bound."""
        if shard.bytes > self.limit:
            return None
        path = self.name(shard)
        if self._touch(path):
            return path
        with self._locked(shard):
            if self._touch(path):  # another process fetched it while this one waited
                return path
            self._download(shard, read, path)
        self.evict(keep=path)
        return path

    @staticmethod
    def _touch(path: Path) -> bool:
        try:
            os.utime(path)  # mark as recently used
        except FileNotFoundError:
            return False
        return True

    def _download(self, shard: Shard, read: ReadRange, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as fh:
                for start in range(0, shard.bytes, CHUNK):
                    data = read(shard, start, min(CHUNK, shard.bytes - start))
                    digest.update(data)
                    fh.write(data)
            if digest.hexdigest() != shard.sha256:
                raise OutputError(
                    f"{shard.path}: downloaded bytes have sha256 {digest.hexdigest()[:12]}…, "
                    f"the manifest says {shard.sha256[:12]}…"
                )
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        self.downloads += 1
        log.debug("cached %s as %s", shard.path, path)

    def read_range(self, shard: Shard, start: int, size: int, read: ReadRange) -> bytes | None:
        """`size` bytes at `start` of a shard through the cache; None when the shard is not cached.

        Another reader may evict the file between fetching and opening it: then it is fetched again.
        """
        for _ in range(3):
            path = self.get(shard, read)
            if path is None:
                return None
            try:
                with open(path, "rb") as fh:  # once open, an eviction no longer matters
                    fh.seek(start)
                    data = fh.read(size)
            except FileNotFoundError:
                continue
            if len(data) == size:
                return data
        return None

    def usage(self) -> int:
        return sum(p.stat().st_size for p in self._entries())

    def _entries(self) -> list[Path]:
        return [p for p in self.directory.iterdir() if not p.name.startswith(".") and p.is_file()]

    def evict(self, keep: Path | None = None) -> None:
        """Delete least recently used shards until the total fits the bound (never `keep`)."""
        entries = []
        for p in self._entries():
            with contextlib.suppress(FileNotFoundError):
                st = p.stat()
                entries.append((st.st_mtime, p.name, st.st_size, p))
        total = sum(e[2] for e in entries)
        for _, _, size, path in sorted(entries):
            if total <= self.limit:
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            total -= size
