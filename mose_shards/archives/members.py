"""Reading members of a listed archive by byte range.

A plain `.tar` and a `.zip` are read in place by byte range (one open handle per local file,
concurrent ranged GETs on object stores; a zip member is then inflated and CRC-checked). Members of
split parts and of a `.tar.gz` are read through the archive's stream: the gzip decoder starts from
the nearest point of the seek index (`listing.seek_index`, loaded from the output in a worker) and
stays open for the process's next task. Nearby members are read in one go.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from ..core.cores import available_cores
from ..core.errors import DataError
from ..core.storage import is_local
from . import zipsource
from .archive import Archive
from .gzseek import GzipRanges
from .listing import chunk_size, seek_index

_DECODERS = 2  # threads per reading process that decode the stretches a read needs next
_GAP = 256 << 10  # read through gaps up to this size rather than seek (a video's frames are close)
_RUN = 64 << 20

Codec = tuple[int, int, int, int]  # a zip member: method, packed size, CRC-32, header


class Member(NamedTuple):
    """One member to read: its data offset (a zip member: its local header), size, zip codec and
    name (for messages: `ARCHIVE_URL:name`)."""

    offset: int
    size: int
    codec: Codec | None = None
    name: str = ""


class MemberReader:
    """Reads members of archives of one filesystem by byte range; `cache` (a Store: OUT) holds the
    .tar.gz seek indexes this process has not built or loaded itself."""

    def __init__(self, fs: Any, cache: Any | None = None) -> None:
        self.fs = fs
        self._local = is_local(fs)
        self._cache = cache
        self._handles: dict[str, Any] = {}
        self._streams: dict[str, Any] = {}
        self._expected: dict[str, list[tuple[int, int]]] = {}  # by archive key: the ranges to come

    def expect(self, wanted: Iterable[tuple[Archive, Member]]) -> None:
        """The members about to be read (a task's): each .tar.gz stream is told when this reader
        first uses it, so that it decodes no further than they need."""
        self._expected.clear()
        for archive, member in wanted:
            if archive.kind == "tar.gz":
                ranges = self._expected.setdefault(archive.key, [])
                ranges.append((member.offset, member.offset + member.size))

    def read(self, archive: Archive, members: Sequence[Member]) -> list[bytes]:
        """The bytes of each member, in order (as many as read: the caller checks the size);
        DataError naming an unreadable member."""
        if archive.seekable_in_place:
            return self._read_ranges(archive, members)
        out: list[bytes] = [b""] * len(members)
        order = sorted(range(len(members)), key=lambda i: members[i].offset)
        for run in _runs(order, members):
            for i, data in zip(run, self._read_run(archive, [members[i] for i in run]), strict=True):
                out[i] = data
        return out

    def _read_ranges(self, archive: Archive, members: Sequence[Member]) -> list[bytes]:
        path = archive.paths[0]
        spans = [_span(m) for m in members]
        if self._local:
            raw = [self._read_local(archive, m, *span) for m, span in zip(members, spans, strict=True)]
        else:
            starts, ends = [s for s, _ in spans], [e for _, e in spans]
            paths = [path] * len(members)
            raw = self.fs.cat_ranges(paths, starts, ends, on_error="return") if members else []
            for member, item in zip(members, raw, strict=True):
                if isinstance(item, Exception):
                    raise _unreadable(archive, member, item)
        return [self._decoded(archive, m, data) for m, data in zip(members, raw, strict=True)]

    def _decoded(self, archive: Archive, member: Member, data: bytes) -> bytes:
        if member.codec is None:
            return data
        path = archive.paths[0]

        def read_at(start: int, size: int) -> bytes:
            if self._local:
                return self._read_local(archive, member, start, start + size)
            more: bytes = self.fs.cat_file(path, start=start, end=start + size)
            return more

        where = _shown(archive, member)
        return zipsource.decode(data, member.offset, member.size, member.codec, where, read_at)

    def _read_local(self, archive: Archive, member: Member, start: int, end: int) -> bytes:
        path = archive.paths[0]
        try:
            handle = self._handles.get(path)
            if handle is None:
                handle = self._handles[path] = open(path, "rb")  # noqa: SIM115 - closed in close()
            handle.seek(start)
            data: bytes = handle.read(end - start)
            return data
        except OSError as exc:
            raise _unreadable(archive, member, exc) from None

    def _read_run(self, archive: Archive, run: list[Member]) -> list[bytes]:
        """Members of one archive stream, close together and in order: one seek and one read for all
        (a zip member alone, then inflated)."""
        first, last = run[0], run[-1]
        try:
            stream = self._streams.get(archive.key)
            if stream is None:
                opener = shared_members if archive.kind == "tar.gz" else open_members  # keep the decoder
                stream = self._streams[archive.key] = opener(self.fs, archive, self._cache)
                if archive.kind == "tar.gz":
                    stream.expect(self._expected.pop(archive.key, []))
            start, end = _span(first)[0], _span(last)[1]
            stream.seek(start)
            data: bytes = stream.read(end - start)
        except (OSError, RuntimeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise _unreadable(archive, first, exc) from None
        if first.codec is None:
            return [data[m.offset - start : m.offset - start + m.size] for m in run]

        def read_at(offset: int, size: int) -> bytes:
            stream.seek(offset)
            more: bytes = stream.read(size)
            return more

        where = _shown(archive, first)
        return [zipsource.decode(data, first.offset, first.size, first.codec, where, read_at)]

    def close(self) -> None:
        for handle in [*self._handles.values(), *self._streams.values()]:
            if not is_shared(handle):
                handle.close()
        self._handles.clear()
        self._streams.clear()


def _shown(archive: Archive, member: Member) -> str:
    return f"{archive.url}:{member.name}" if member.name else archive.url


def _unreadable(archive: Archive, member: Member, exc: BaseException) -> DataError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return DataError(_shown(archive, member), f"unreadable ({reason})")


def _span(member: Member) -> tuple[int, int]:
    """The byte range to read for a member."""
    if member.codec is not None:
        return zipsource.span(member.offset, member.codec)
    return member.offset, member.offset + member.size


def _runs(order: list[int], members: Sequence[Member]) -> Iterator[list[int]]:
    """Indices of members (sorted by offset) grouped into runs read in one go: tar members (not zip:
    each is inflated alone), gaps under _GAP, at most _RUN bytes."""
    run: list[int] = []
    for i in order:
        member = members[i]
        if run:
            head, tail = members[run[0]], members[run[-1]]
            joins = (
                member.codec is None and tail.codec is None
                and 0 <= member.offset - (tail.offset + tail.size) <= _GAP
                and member.offset + member.size - head.offset <= _RUN
            )  # fmt: skip
            if not joins:
                yield run
                run = []
        run.append(i)
    if run:
        yield run


# --- the archive's stream, kept open between tasks -------------------------------------------------


_OPEN: dict[str, Any] = {}  # decompressed streams kept open between the tasks a process runs


def shared_members(fs: Any, archive: Archive, cache: Any | None) -> Any:
    """`open_members`, kept open for the next task of this process: shard k+1 starts where shard k
    ended, in chunks the stream has just decompressed (a new stream would decompress them again)."""
    stream = _OPEN.get(archive.key)
    if stream is None:
        while _OPEN:  # one archive at a time per process: memory stays one decoder's cache
            _OPEN.pop(next(iter(_OPEN))).close()
        if not _OPEN and not _close_at_exit:
            atexit.register(close_shared)
            _close_at_exit.append(True)
        stream = _OPEN[archive.key] = open_members(fs, archive, cache)
    return stream


_close_at_exit: list[bool] = []


def is_shared(stream: Any) -> bool:
    return any(stream is kept for kept in _OPEN.values())


def close_shared() -> None:
    """Close the kept streams (rapidgzip aborts an interpreter that exits with its threads running)."""
    while _OPEN:
        _OPEN.pop(next(iter(_OPEN))).close()


def open_members(fs: Any, archive: Archive, cache: Any | None) -> Any:
    """A seekable binary file of the archive's (uncompressed) bytes, for reading members by offset."""
    if archive.kind != "tar.gz":
        return archive.open(fs)
    index = seek_index(archive, cache)
    # On one core a stretch decoded ahead would only take the converting thread's time.
    threads = min(_DECODERS, available_cores() - 1)
    return GzipRanges(lambda: archive.open(fs), index, chunk_size(archive), threads)
