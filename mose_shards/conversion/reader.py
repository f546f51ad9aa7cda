"""Reading source bytes: plain files, and members of archives by byte range or through a stream.

A plain `.tar` and a `.zip` are read in place by byte range (one open handle per local file,
concurrent ranged GETs on object stores; a zip member is then inflated and CRC-checked). Members of
split parts and of a `.tar.gz` are read through the archive's stream: the gzip decoder starts from
the nearest point of the seek index, loaded from the output (`cache`) in a worker, and stays open
for the process's next task. Nearby members are read in one go.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..core.errors import DataError
from ..core.storage import StorageOptions, is_local, url_to_fs
from . import zipsource
from .archives import is_shared, open_members, shared_members

if TYPE_CHECKING:
    from .sources import Blob

# The largest source file (frame, mask, archive member) read; a larger one is refused before any of
# it is read. An 8K JPEG is ~10-50 MB: 256 MiB is far above any real frame or mask, and with the
# video read ahead it keeps a worker well under 1 GB (`--max-member-size`, pipeline `max_member_size`).
DEFAULT_MAX_MEMBER_SIZE = 256 << 20


def _unreadable(blob: Blob, exc: BaseException) -> DataError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return DataError(str(blob), f"unreadable ({reason})")


def _checked(blob: Blob, data: bytes) -> bytes:
    """The bytes read, when they are as many as listed (a file that shrank since listing is named)."""
    if len(data) != blob.size:
        raise DataError(str(blob), f"changed while converting: listed {blob.size} bytes, read {len(data)}")
    return data


class SourceReader:
    """Reads blobs: plain files, and members of archives read in place (a plain tar or a zip: by byte
    range, one open handle per local file, concurrent ranged GETs on object stores) or through the
    archive's stream (split parts, gzip through its seek index, loaded from `cache` when needed)."""

    def __init__(
        self, url: str, storage_options: StorageOptions | None = None, *, cache: Any | None = None,
        fs: Any | None = None, max_member_size: int = DEFAULT_MAX_MEMBER_SIZE,
    ) -> None:  # fmt: skip
        self.max_member_size = max_member_size
        self.fs = fs if fs is not None else url_to_fs(url, storage_options)[0]
        self._local = is_local(self.fs)
        self._cache = cache
        self._handles: dict[str, Any] = {}
        self._streams: dict[str, Any] = {}
        self._expected: dict[str, list[tuple[int, int]]] = {}  # by archive key: the ranges to come

    def expect(self, blobs: list[Blob]) -> None:
        """The blobs about to be read (a task's): each .tar.gz stream is told when this reader first
        uses it, so that it decodes no further into a stretch than they need (`GzipRanges.expect`)."""
        self._expected.clear()
        for blob in blobs:
            if blob.archive is not None and blob.archive.kind == "tar.gz" and blob.offset is not None:
                ranges = self._expected.setdefault(blob.archive.key, [])
                ranges.append((blob.offset, blob.offset + blob.size))

    def read_many(self, blobs: list[Blob]) -> list[bytes]:
        """The bytes of each blob, in order; DataError naming an unreadable blob, or one larger than
        `max_member_size` (before anything is read)."""
        for blob in blobs:
            if blob.size > self.max_member_size:
                raise DataError(str(blob), f"{blob.size} bytes, over the limit of {self.max_member_size} "
                                           "for one source file (--max-member-size)")  # fmt: skip
        out: list[bytes | None] = [None] * len(blobs)
        direct = [i for i, b in enumerate(blobs) if b.archive is None or b.archive.seekable_in_place]
        for i, data in zip(direct, self._read_ranges([blobs[i] for i in direct]), strict=True):
            out[i] = data
        streamed = sorted((i for i in range(len(blobs)) if out[i] is None), key=lambda i: _position(blobs[i]))
        for run in _runs(streamed, blobs):
            for i, data in zip(run, self._read_run([blobs[i] for i in run]), strict=True):
                out[i] = data
        return [_checked(blob, data) for blob, data in zip(blobs, out, strict=True)]  # type: ignore[arg-type]

    def _read_ranges(self, blobs: list[Blob]) -> list[bytes]:
        spans = [_span(b) for b in blobs]
        if self._local:
            raw = [self._read_local(b, start, end) for b, (start, end) in zip(blobs, spans, strict=True)]
        else:
            paths = [b.path for b in blobs]
            starts = [0 if s is None else s for s, _ in spans]
            ends = [b.size if e is None else e for b, (_, e) in zip(blobs, spans, strict=True)]
            raw = self.fs.cat_ranges(paths, starts, ends, on_error="return") if blobs else []
            for blob, item in zip(blobs, raw, strict=True):
                if isinstance(item, Exception):
                    raise _unreadable(blob, item)
        return [self._decoded(b, data) for b, data in zip(blobs, raw, strict=True)]

    def _decoded(self, blob: Blob, data: bytes) -> bytes:
        if blob.codec is None:
            return data
        assert blob.offset is not None
        read_at = (lambda start, size: self._read_local(blob, start, start + size)) if self._local else (
            lambda start, size: self.fs.cat_file(blob.path, start=start, end=start + size))  # fmt: skip
        return zipsource.decode(data, blob.offset, blob.size, blob.codec, str(blob), read_at)

    def _read_local(self, blob: Blob, start: int | None, end: int | None) -> bytes:
        try:
            if start is None:
                with open(blob.path, "rb") as fh:
                    data: bytes = fh.read(blob.size + 1)  # one more: a file grown since listing is named
                    return data
            handle = self._handles.get(blob.path)
            if handle is None:
                handle = self._handles[blob.path] = open(blob.path, "rb")  # noqa: SIM115 - closed in close()
            handle.seek(start)
            data = handle.read((end or start) - start)
            return data
        except OSError as exc:
            raise _unreadable(blob, exc) from None

    def _read_run(self, run: list[Blob]) -> list[bytes]:
        """Blobs of one archive stream, close together and in order: one seek and one read for all
        (a zip member alone, then inflated)."""
        first, last = run[0], run[-1]
        archive = first.archive
        assert archive is not None and first.offset is not None and last.offset is not None
        try:
            stream = self._streams.get(archive.key)
            if stream is None:
                opener = shared_members if archive.kind == "tar.gz" else open_members  # keep the decoder
                stream = self._streams[archive.key] = opener(self.fs, archive, self._cache)
                if archive.kind == "tar.gz":
                    stream.expect(self._expected.pop(archive.key, []))
            start, end = _span(first)[0], _span(last)[1]
            assert start is not None and end is not None
            stream.seek(start)
            data: bytes = stream.read(end - start)
        except (OSError, RuntimeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise _unreadable(first, exc) from None
        if first.codec is None:
            return [data[b.offset - start : b.offset - start + b.size] for b in run]  # type: ignore[operator]

        def read_at(offset: int, size: int) -> bytes:
            stream.seek(offset)
            more: bytes = stream.read(size)
            return more

        return [zipsource.decode(data, first.offset, first.size, first.codec, str(first), read_at)]

    def close(self) -> None:
        for handle in [*self._handles.values(), *self._streams.values()]:
            if not is_shared(handle):
                handle.close()
        self._handles.clear()
        self._streams.clear()

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _span(blob: Blob) -> tuple[int | None, int | None]:
    """The byte range to read for a blob: None for a whole plain file."""
    if blob.offset is None:
        return None, None
    if blob.codec is not None:
        return zipsource.span(blob.offset, blob.codec)
    return blob.offset, blob.offset + blob.size


def _position(blob: Blob) -> tuple[str, int]:
    return (blob.archive.key if blob.archive else "", blob.offset or 0)


_GAP = 256 << 10  # read through gaps up to this size rather than seek (a video's frames are close)
_RUN = 64 << 20


def _runs(order: list[int], blobs: list[Blob]) -> Iterator[list[int]]:
    """Indices of blobs (sorted by position) grouped into runs read in one go: same archive, tar
    members (not zip: each is inflated alone), gaps under _GAP, at most _RUN bytes."""
    run: list[int] = []
    for i in order:
        blob = blobs[i]
        if run:
            head, tail = blobs[run[0]], blobs[run[-1]]
            joins = (
                blob.codec is None and tail.codec is None and blob.archive == head.archive
                and 0 <= (blob.offset or 0) - ((tail.offset or 0) + tail.size) <= _GAP
                and (blob.offset or 0) + blob.size - (head.offset or 0) <= _RUN
            )  # fmt: skip
            if not joins:
                yield run
                run = []
        run.append(i)
    if run:
        yield run
