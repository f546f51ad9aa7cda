"""Reading source bytes: plain files whole, and members of archives by range (`archives.MemberReader`:
in place for a plain tar or a zip, through the archive's stream for split parts and a .tar.gz).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..archives import Archive, Member, MemberReader
from ..core.errors import DataError
from ..core.storage import StorageOptions, is_local, url_to_fs

if TYPE_CHECKING:
    from .videos import Blob

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
    """Reads blobs: plain files whole, and members of archives by range (in place for a plain tar or a
    zip, through the archive's stream for split parts and a .tar.gz, its seek index loaded from
    `cache` when needed)."""

    def __init__(
        self, url: str, storage_options: StorageOptions | None = None, *, cache: Any | None = None,
        fs: Any | None = None, max_member_size: int = DEFAULT_MAX_MEMBER_SIZE,
    ) -> None:  # fmt: skip
        self.max_member_size = max_member_size
        self.fs = fs if fs is not None else url_to_fs(url, storage_options)[0]
        self._local = is_local(self.fs)
        self._members = MemberReader(self.fs, cache)

    def expect(self, blobs: list[Blob]) -> None:
        """The blobs about to be read (a task's): a .tar.gz stream then decodes no further into a
        stretch than they need."""
        self._members.expect((b.archive, _member(b)) for b in blobs if b.archive is not None)

    def read_many(self, blobs: list[Blob]) -> list[bytes]:
        """The bytes of each blob, in order; DataError naming an unreadable blob, or one larger than
        `max_member_size` (before anything is read)."""
        for blob in blobs:
            if blob.size > self.max_member_size:
                raise DataError(str(blob), f"{blob.size} bytes, over the limit of {self.max_member_size} "
                                           "for one source file (--max-member-size)")  # fmt: skip
        out: list[bytes | None] = [None] * len(blobs)
        by_archive: dict[Archive, list[int]] = {}
        plain = []
        for i, blob in enumerate(blobs):
            if blob.archive is None:
                plain.append(i)
            else:
                by_archive.setdefault(blob.archive, []).append(i)
        for i, data in zip(plain, self._read_files([blobs[i] for i in plain]), strict=True):
            out[i] = data
        for archive, indices in by_archive.items():
            members = [_member(blobs[i]) for i in indices]
            for i, data in zip(indices, self._members.read(archive, members), strict=True):
                out[i] = data
        return [_checked(blob, data) for blob, data in zip(blobs, out, strict=True)]  # type: ignore[arg-type]

    def _read_files(self, blobs: list[Blob]) -> list[bytes]:
        if self._local:
            return [self._read_local(b) for b in blobs]
        if not blobs:
            return []
        paths, ends = [b.path for b in blobs], [b.size for b in blobs]
        raw = self.fs.cat_ranges(paths, [0] * len(blobs), ends, on_error="return")
        for blob, item in zip(blobs, raw, strict=True):
            if isinstance(item, Exception):
                raise _unreadable(blob, item)
        return list(raw)

    def _read_local(self, blob: Blob) -> bytes:
        try:
            with open(blob.path, "rb") as fh:
                data: bytes = fh.read(blob.size + 1)  # one more: a file grown since listing is named
                return data
        except OSError as exc:
            raise _unreadable(blob, exc) from None

    def close(self) -> None:
        self._members.close()

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _member(blob: Blob) -> Member:
    assert blob.offset is not None
    return Member(blob.offset, blob.size, blob.codec, blob.display or blob.path)
