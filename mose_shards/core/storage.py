"""Storage through fsspec, in one place: local folders, memory://, s3://, gs://, http(s)://.

`Store` is a folder (a root URL plus storage options) addressed by relative paths. Writes are atomic:
locally a temporary name renamed into place, on object stores a single PUT (objects appear whole).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

from .errors import OutputError
from .layout import TMP_DIR

StorageOptions = Mapping[str, Any]
_F = TypeVar("_F", bound=Callable[..., Any])
CREDENTIALS_HINT = (
    "check the credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or --storage-option key=, secret=)"
)


def _denied_as_output_error(method: _F) -> _F:
    """A refused request (wrong key, no permission) becomes a one-line OutputError naming the store."""

    @functools.wraps(method)
    def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except PermissionError as exc:
            raise OutputError(f"{self.url}: access denied ({exc}); {CREDENTIALS_HINT}") from None

    return wrapper  # type: ignore[return-value]


def url_to_fs(url: str | os.PathLike[str], storage_options: StorageOptions | None = None) -> tuple[Any, str]:
    """The fsspec filesystem and the path inside it for a URL or a local path."""
    text = os.fspath(url)
    fs, path = fsspec.core.url_to_fs(text, **_fsspec_options(text, storage_options or {}))
    return fs, path


def is_s3_url(url: str | os.PathLike[str]) -> bool:
    """True for an s3:// (or s3a://) URL."""
    return os.fspath(url).startswith(("s3://", "s3a://"))


def _fsspec_options(url: str, options: StorageOptions) -> dict[str, Any]:
    """The options as given, plus, for s3://, HTTP sessions that share one TLS context per process
    (tlscache.py) unless the options choose their own `http_session_cls`."""
    out = dict(options)
    config = dict(out.get("config_kwargs") or {})
    if not is_s3_url(url) or "http_session_cls" in config:
        return out
    try:
        from .tlscache import SUPPORTED, SharedTLSSession
    except ImportError:  # s3fs (and aiobotocore) not installed: fsspec names the missing package
        return out
    if SUPPORTED:
        out["config_kwargs"] = {**config, "http_session_cls": SharedTLSSession}
    return out


def is_local(fs: Any) -> bool:
    """True for the local filesystem, where renames are atomic."""
    return isinstance(fs, LocalFileSystem)


def version_of(info: Mapping[str, Any]) -> str:
    """What tells one version of a file from another in a listing: the ETag where the store has one
    (S3, GCS, Azure), else the modification time; '' when the store gives neither (plain HTTP)."""
    for key in ("ETag", "etag", "md5Hash", "mtime", "LastModified", "last_modified", "updated"):
        value = info.get(key)
        if value:
            return str(value)
    return ""


def fsync_path(path: str | os.PathLike[str], directory: bool = False) -> None:
    """Flush a local file (or a folder's entries, after a rename) to the disk."""
    fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def join(base: str, *parts: str) -> str:
    """Join URL or path segments with '/', whatever the filesystem."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}" if part else out
    return out


class Store:
    """A folder on any fsspec filesystem, read and written by relative path."""

    def __init__(self, url: str | os.PathLike[str], storage_options: StorageOptions | None = None) -> None:
        self.url = os.fspath(url)
        self.storage_options = dict(storage_options or {})
        self.fs, self.root = url_to_fs(self.url, self.storage_options)

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    @property
    def _whole_file(self) -> dict[str, Any]:
        """Options of a whole-file read: s3fs asks for a file's size (a HEAD, one more round trip)
        before reading it unless it is told to read in one request, which small files want."""
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else tuple(self.fs.protocol)
        return {"max_concurrency": 1} if "s3" in protocols else {}

    def path(self, rel: str) -> str:
        """The filesystem path of a relative path."""
        return join(self.root, rel)

    def url_of(self, rel: str) -> str:
        """A URL (with protocol) for a relative path, for messages and for other readers."""
        return join(self.url, rel)

    @property
    def local(self) -> bool:
        return is_local(self.fs)

    @property
    def in_process(self) -> bool:
        """True for memory://: another process (a worker, a Ray node) cannot see it."""
        protocols = (self.fs.protocol,) if isinstance(self.fs.protocol, str) else tuple(self.fs.protocol)
        return "memory" in protocols

    @_denied_as_output_error
    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    @_denied_as_output_error
    def read(self, rel: str) -> bytes:
        """The whole file; OutputError naming it when it is missing."""
        try:
            data: bytes = self.fs.cat_file(self.path(rel), **self._whole_file)
        except FileNotFoundError:
            raise OutputError(f"{self.url_of(rel)}: file not found") from None
        return data

    @_denied_as_output_error
    def read_range(self, rel: str, start: int, size: int) -> bytes:
        """`size` bytes from offset `start` (one ranged GET on object stores)."""
        data: bytes = self.fs.cat_file(self.path(rel), start=start, end=start + size)
        if len(data) != size:
            raise OutputError(f"{self.url_of(rel)}: truncated, wanted {size} bytes at offset {start}")
        return data

    @_denied_as_output_error
    def size(self, rel: str) -> int:
        return int(self.fs.size(self.path(rel)))

    def open(self, rel: str, mode: str = "rb", **kwargs: Any) -> Any:
        return self.fs.open(self.path(rel), mode, **kwargs)

    @_denied_as_output_error
    def write(self, rel: str, data: bytes) -> None:
        """Write a whole file atomically; locally it is on the disk (fsynced) when this returns."""
        target = self.path(rel)
        if self.local:
            replace_durably(target, data, _local_tmp(target))
        else:
            self.fs.pipe_file(target, data)

    @_denied_as_output_error
    def write_many(self, files: Mapping[str, bytes]) -> None:
        """Write many small whole files: on object stores one batch of concurrent PUTs (fsspec's
        `pipe`), locally each atomically renamed into place but not fsynced one by one (for bulk
        copies such as export, where a rerun starts again, not for commit markers)."""
        if not files:
            return
        if not self.local:
            self.fs.pipe({self.path(rel): data for rel, data in files.items()})
            return
        made: set[str] = set()
        for rel, data in files.items():
            target = self.path(rel)
            folder = os.path.dirname(target)
            if folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            tmp = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)

    @_denied_as_output_error
    def upload(self, local_file: str | os.PathLike[str], rel: str) -> None:
        """Move or copy a finished local file into place atomically; the local file is consumed.

        Locally the bytes and the new name are fsynced before this returns: a done marker written
        after it never describes a file that a power loss could leave full of zeros."""
        target = self.path(rel)
        if self.local:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            fsync_path(local_file)
            os.replace(local_file, target)
            fsync_path(os.path.dirname(target), directory=True)
        else:
            self.fs.put_file(os.fspath(local_file), target)
            os.unlink(local_file)

    @_denied_as_output_error
    def delete(self, rel: str, recursive: bool = False) -> None:
        path = self.path(rel)
        if self.fs.exists(path):
            self.fs.rm(path, recursive=recursive)

    @_denied_as_output_error
    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) of the entries of a folder; empty when it does not exist."""
        path = self.path(rel)
        if not self.fs.exists(path):
            return []
        return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in self.fs.ls(path, detail=False))

    def staging_dir(self) -> str | None:
        """A local folder for temporary files next to the output when it is local (same device)."""
        return self.path(TMP_DIR) if self.local else None


def replace_durably(target: str, data: bytes, tmp: str) -> None:
    """Put `data` at the local path `target` atomically through `tmp`, on the disk when this returns."""
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    fsync_path(os.path.dirname(target), directory=True)


def _local_tmp(target: str) -> str:
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    return f"{target}.tmp-{uuid.uuid4().hex[:8]}"


# The probe's client: a refused or silent endpoint fails in seconds, not after botocore's default
# five attempts with backoff (8-12 s); the real work keeps the caller's own retry settings.
PROBE_CONFIG = {
    "connect_timeout": 3,
    "read_timeout": 10,
    "retries": {"total_max_attempts": 2, "mode": "standard"},
}


def probe(url: str | os.PathLike[str], storage_options: StorageOptions | None = None) -> None:
    """OutputError naming the URL (credentials masked) when its object store cannot be reached at all.

    One request through a separate, impatient client. Only an unreachable endpoint is reported here;
    anything else (a missing key, a refused credential) is left to the reader, which says it better.
    """
    text = os.fspath(url)
    if not is_s3_url(text):
        return
    options = _fsspec_options(text, storage_options or {})  # its TLS context is then the readers'
    options["config_kwargs"] = {**dict(options.get("config_kwargs") or {}), **PROBE_CONFIG}
    try:
        fs, path = fsspec.core.url_to_fs(text, skip_instance_cache=True, **options)
        fs.retries = 1  # s3fs's own retry loop on top of botocore's
        fs.exists(path)
    except Exception as exc:
        if type(exc).__name__ not in ("EndpointConnectionError", "ConnectTimeoutError"):
            return
        endpoint = options.get("endpoint_url") or dict(options.get("client_kwargs") or {}).get("endpoint_url")
        shown = f" at {endpoint}" if endpoint else ""
        raise OutputError(f"{text}: cannot reach the object store{shown} ({exc})") from None
