"""Split files read as one stream, and the checksums shipped beside them.

Datasets ship cut into parts (`train.tar.gz.aa`, `.ab`, ... or `.001`, `.002`, ...) beside a
`SHA256SUMS` (or one `<file>.sha256` per file). `PartsFile` is one seekable binary file over the
parts, on any fsspec filesystem; while it is read front to back it hashes each part (a streaming hash,
not an extra pass) so `check_sums` can name the part whose bytes are not what the sums say.

Each part is hashed on its own, as the sums list them, so a listing checkpoint can record the parts
already hashed by their digest: hashlib's state cannot be saved, so a resumed listing hashes again
only the part it stopped in, from that part's start to where it resumes (compressed bytes, read and
hashed, not decompressed).
"""

from __future__ import annotations

import hashlib
import io
import logging
import posixpath
import queue
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ..core.errors import LayoutError

T = TypeVar("T")

log = logging.getLogger(__name__)

SUMS_FILES = ("SHA256SUMS", "SHA256SUMS.txt", "sha256sums.txt")
_PART = re.compile(r"^(?P<stem>.+)\.(?P<suffix>[a-z]{2,3}|\d{2,4})$")
_ARCHIVE_STEMS = (".tar", ".tar.gz", ".tgz", ".zip")
_PENDING_LIMIT = 64 << 20  # out-of-order reads kept for the hash, at most (a parallel decoder reads ahead)


def part_of(name: str) -> tuple[str, str] | None:
    """(archive name, suffix) when `name` is one part of a split archive, e.g. train.tar.gz.ab."""
    if name.endswith(_ARCHIVE_STEMS):
        return None  # valid.tar.gz is an archive, not part "gz" of valid.tar
    match = _PART.match(name)
    if match and match.group("stem").endswith(_ARCHIVE_STEMS):
        return match.group("stem"), match.group("suffix")
    return None


def _suffix_number(suffix: str) -> int:
    if suffix.isdigit():
        return int(suffix)
    value = 0
    for char in suffix:
        value = value * 26 + ord(char) - ord("a")
    return value


def order_parts(stem_url: str, suffixes: Iterable[str]) -> list[str]:
    """The suffixes in stream order; LayoutError naming the first missing part (a gap in the sequence)."""
    ordered = sorted(suffixes, key=lambda s: (not s.isdigit(), len(s), _suffix_number(s)))
    kinds = {(s.isdigit(), len(s)) for s in ordered}
    if len(kinds) > 1:
        raise LayoutError(f"{stem_url}: parts with mixed suffixes ({', '.join(ordered)})")
    first = _suffix_number(ordered[0])
    start = first if ordered[0].isdigit() and first in (0, 1) else 0
    for expected, suffix in enumerate(ordered, start):
        if _suffix_number(suffix) != expected:
            missing = _suffix_name(expected, suffix)
            raise LayoutError(f"{stem_url}.{missing}: missing part (found {', '.join(ordered)})")
    return ordered


def _suffix_name(number: int, like: str) -> str:
    if like.isdigit():
        return str(number).zfill(len(like))
    chars = []
    for _ in like:
        number, rem = divmod(number, 26)
        chars.append(chr(ord("a") + rem))
    return "".join(reversed(chars))


def parse_sums(text: str, where: str) -> dict[str, str]:
    """file name -> sha256 hex, from `sha256sum` output (`HEX  name` or `HEX *name`)."""
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        if len(digest) != 64 or not name or any(c not in "0123456789abcdefABCDEF" for c in digest):
            raise LayoutError(f"{where}: line {number} is not 'SHA256  NAME'")
        sums[posixpath.normpath(name.removeprefix("./"))] = digest.lower()
    return sums


def find_sums(fs: Any, folder: str, url: str, names: Iterable[str]) -> dict[str, str]:
    """Expected sha256 per file name in `folder`: SHA256SUMS there, then `<name>.sha256` files."""
    listing = {posixpath.basename(p.rstrip("/")) for p in fs.ls(folder, detail=False)}
    sums: dict[str, str] = {}
    names = list(names)
    for candidate in SUMS_FILES:
        if candidate in listing:
            where = f"{url.rstrip('/')}/{candidate}"
            listed = parse_sums(
                fs.cat_file(posixpath.join(folder, candidate)).decode("utf-8", "replace"), where
            )
            by_base: dict[str, list[str]] = {}
            for name, digest in listed.items():  # sums made one folder up name "MOSEv2/train.tar.gz.aa"
                by_base.setdefault(posixpath.basename(name), []).append(digest)
            sums.update({base: d[0] for base, d in by_base.items() if len(d) == 1})
            sums.update({n: d for n, d in listed.items() if "/" not in n})
            if names and not any(n in sums for n in names):
                log.warning("%s lists none of %s; they are not checked", where, ", ".join(names[:3]))
            break
    for name in names:
        if f"{name}.sha256" in listing:
            text = fs.cat_file(posixpath.join(folder, f"{name}.sha256")).decode("utf-8", "replace")
            where = f"{url.rstrip('/')}/{name}.sha256"
            digest = text.split()[0] if text.split() else ""
            sums[name] = parse_sums(f"{digest}  {name}", where)[name]
    return sums


class ChecksumError(LayoutError):
    """A file's sha256 is not the one its checksum file gives."""


class _PartHash:
    """sha256 of one part from reads that may come out of order (kept up to a limit) or twice."""

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.done: str | None = None  # the hex digest, when an earlier run hashed the whole part
        self.frontier = 0
        self.pending: dict[int, bytes] = {}
        self.pending_bytes = 0

    def feed(self, pos: int, data: bytes) -> None:
        end = pos + len(data)
        if end <= self.frontier:
            return
        if pos > self.frontier:
            if self.pending_bytes + len(data) <= _PENDING_LIMIT and pos not in self.pending:
                self.pending[pos] = data
                self.pending_bytes += len(data)
            return
        self.digest.update(memoryview(data)[self.frontier - pos :])
        self.frontier = end
        while self.pending:
            ready = [p for p in self.pending if p <= self.frontier]
            if not ready:
                break
            for p in sorted(ready):
                chunk = self.pending.pop(p)
                self.pending_bytes -= len(chunk)
                if p + len(chunk) > self.frontier:
                    self.digest.update(memoryview(chunk)[self.frontier - p :])
                    self.frontier = p + len(chunk)


class SeekableRaw(io.RawIOBase):
    """A read-only binary stream with a position `pos` that `seek` moves within [0, `end()`]; a
    subclass reads at `pos` in `readinto`."""

    pos = 0

    def end(self) -> int:
        raise NotImplementedError

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.end()}[whence]
        self.pos = max(0, base + offset)
        return self.pos


class PartsFile(SeekableRaw):
    """The concatenation of files (one or more parts) as one seekable, read-only binary file."""

    def __init__(self, fs: Any, paths: list[str], sizes: list[int], urls: list[str], hashing: bool) -> None:
        super().__init__()
        self.fs = fs
        self.paths = paths
        self.sizes = sizes
        self.urls = urls
        self.starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.total = sum(sizes)
        self.pos = 0
        self.frontier = 0  # the furthest byte read so far
        self.hashes = [_PartHash() for _ in paths] if hashing else None
        self.hashed_again = 0  # bytes hashed again to resume a listing (resume_hashes)
        self._handles: dict[int, Any] = {}
        # The bytes read, hashed in a thread of their own: inline, sha256 took a third of a two-thread
        # listing's time (benchmarks/archives.py), the decoder waiting on it for its next input.
        self._to_hash: queue.Queue[tuple[int, int, bytes] | None] = queue.Queue(maxsize=64)
        self._hasher: threading.Thread | None = None

    def end(self) -> int:
        return self.total

    def part_at(self, offset: int) -> int:
        """The index of the part holding byte `offset` (the last part past the end)."""
        for index in range(len(self.starts) - 1, -1, -1):
            if offset >= self.starts[index]:
                return index
        return 0

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view) and self.pos < self.total:
            index = self.part_at(self.pos)
            local = self.pos - self.starts[index]
            want = min(len(view) - done, self.sizes[index] - local)
            data = self._read(index, local, want)
            if len(data) != want:
                raise LayoutError(f"{self.urls[index]}: shorter than listed (changed while reading?)")
            view[done : done + want] = data
            if self.hashes is not None:
                self._hash(index, local, data)
            done += want
            self.pos += want
        self.frontier = max(self.frontier, self.pos)
        return done

    def _read(self, index: int, local: int, size: int) -> bytes:
        handle = self._handles.get(index)
        if handle is None:
            for old in self._handles.values():  # one part open at a time
                old.close()
            self._handles = {index: self.fs.open(self.paths[index], "rb")}
            handle = self._handles[index]
        handle.seek(local)
        data: bytes = handle.read(size)
        return data

    def _hash(self, index: int, local: int, data: bytes) -> None:
        if self._hasher is None:
            self._hasher = threading.Thread(target=self._hash_queued, name="mose-shards-sha256", daemon=True)
            self._hasher.start()
        self._to_hash.put((index, local, data))

    def _hash_queued(self) -> None:
        while (item := self._to_hash.get()) is not None:
            index, local, data = item
            assert self.hashes is not None
            self.hashes[index].feed(local, data)
            self._to_hash.task_done()
        self._to_hash.task_done()

    def _hashed(self) -> None:
        """Wait until every byte read so far is hashed."""
        if self._hasher is not None:
            self._to_hash.join()

    def part_digests(self) -> list[str | None]:
        """The sha256 of each part hashed whole so far (None for the others, and when not hashing)."""
        if self.hashes is None:
            return [None] * len(self.paths)
        self._hashed()
        return [
            state.done or (state.digest.hexdigest() if state.frontier >= size else None)
            for state, size in zip(self.hashes, self.sizes, strict=True)
        ]

    def resume_hashes(self, digests: list[str | None], upto: int) -> None:
        """Hash state for reading on from compressed byte `upto`: parts an earlier run hashed whole
        take their saved digest; the bytes before `upto` of the others are read and hashed now."""
        if self.hashes is None:
            return
        self._hashed()
        self.hashes = [_PartHash() for _ in self.paths]
        for index, state in enumerate(self.hashes):
            if digests[index] is not None:
                state.done, state.frontier = digests[index], self.sizes[index]
                continue
            stop = min(self.sizes[index], upto - self.starts[index])
            while state.frontier < stop:
                data = self._read(index, state.frontier, min(8 << 20, stop - state.frontier))
                if not data:
                    break
                state.feed(state.frontier, data)
                self.hashed_again += len(data)
        if self.hashed_again:
            log.info("hashed %d bytes again to resume (the part a checkpoint stopped in)", self.hashed_again)

    def finish_hashes(self) -> list[str]:
        """The sha256 of each part; bytes the reads skipped are read now (logged, normally none)."""
        assert self.hashes is not None
        self._hashed()
        out = []
        for index, state in enumerate(self.hashes):
            if state.done is not None:
                out.append(state.done)
                continue
            if state.frontier < self.sizes[index]:
                left = self.sizes[index] - state.frontier
                log.info("%s: hashing %d bytes not read yet", self.urls[index], left)
                state.pending.clear()
                position = state.frontier
                while position < self.sizes[index]:
                    data = self._read(index, position, min(8 << 20, self.sizes[index] - position))
                    if not data:
                        break
                    state.feed(position, data)
                    position += len(data)
            out.append(state.digest.hexdigest())
        return out

    def close(self) -> None:
        if self._hasher is not None:
            self._to_hash.put(None)
            self._hasher.join()
            self._hasher = None
        for handle in self._handles.values():
            handle.close()
        self._handles = {}
        super().close()


def check_sums(
    urls: list[str], names: list[str], digests: Sequence[str | None], sums: dict[str, str]
) -> None:
    """ChecksumError naming the first file whose sha256 is not the one its checksum file gives
    (a None digest: a part not hashed whole yet, not checked)."""
    for url, name, digest in zip(urls, names, digests, strict=True):
        expected = sums.get(name)
        if digest is not None and expected is not None and expected != digest:
            message = f"sha256 mismatch ({digest[:12]}…, the checksums say {expected[:12]}…)"
            raise ChecksumError(f"{url}: {message}")


Listed = Callable[[int, int], None]  # (compressed bytes read so far, total): a listing's progress
_REPORT_EVERY = 32 << 20


def reporting(items: Iterable[T], raw: PartsFile, listed: Listed | None) -> Iterator[T]:
    """`items` (a listing's members, read from `raw`), telling `listed` how far `raw` has been read
    every 32 MB and once at the end."""
    if listed is None:
        yield from items
        return
    reported = 0
    for item in items:
        yield item
        if raw.frontier >= reported + _REPORT_EVERY:
            reported = raw.frontier
            listed(reported, raw.total)
    listed(raw.total, raw.total)
