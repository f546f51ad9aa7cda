"""A local cache of whole shards under a size bound, for multi-epoch runs from object storage.

Files are named after a hash of the shard's URL, written to a temporary name and renamed into place,
so several DataLoader workers (processes) can share one cache directory. When the total exceeds the
bound, the least recently used shards are deleted (a reader that has one open keeps reading it).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import uuid
from pathlib import Path

from ..core.errors import ConfigError
from ..core.sizes import parse_size
from ..core.storage import Store

log = logging.getLogger(__name__)

DEFAULT_LIMIT = "20GB"


class ShardCache:
    """Whole shards kept in `directory`, at most `limit` bytes in all."""

    def __init__(self, directory: str | os.PathLike[str], limit: int | str = DEFAULT_LIMIT) -> None:
        self.directory = Path(directory)
        self.limit = parse_size(limit)
        if self.limit <= 0:
            raise ConfigError(f"cache limit must be positive, got {limit!r}")
        self.directory.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"ShardCache({str(self.directory)!r}, limit={self.limit})"

    def name(self, store: Store, rel: str) -> Path:
        digest = hashlib.sha256(store.url_of(rel).encode()).hexdigest()[:20]
        return self.directory / f"{digest}-{rel.rsplit('/', 1)[-1]}"

    def get(self, store: Store, rel: str, size: int | None = None) -> Path | None:
        """The local copy of a shard, fetched when missing; None when the shard exceeds the bound."""
        path = self.name(store, rel)
        if path.exists():
            with contextlib.suppress(FileNotFoundError):
                os.utime(path)  # mark as recently used
                return path
        if size is not None and size > self.limit:
            return None
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            store.fs.get_file(store.path(rel), str(tmp))
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        log.debug("cached %s as %s", store.url_of(rel), path)
        self.evict(keep=path)
        return path

    def read_range(self, store: Store, rel: str, start: int, size: int) -> bytes | None:
        """`size` bytes at `start` of a shard through the cache; None when it cannot hold the shard.

        Another reader may evict the file between fetching and opening it: then it is fetched again.
        """
        for _ in range(3):
            path = self.get(store, rel)
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
        out = []
        for p in self.directory.iterdir():
            if not p.name.startswith(".") and p.is_file():
                out.append(p)
        return out

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
