"""Raw VOS layouts -> video records.

A source is a split folder (holding JPEGImages/ and Annotations/), a root of split folders, a `.tar`
of either, or a folder of such tars (the dataset as shipped: train.tar, valid.tar), on any fsspec
filesystem. Discovery only lists names and sizes (a tar is indexed by its headers, never extracted);
the bytes are read later, a video at a time, by `SourceReader`.
"""

from __future__ import annotations

import json
import logging
import posixpath
import tarfile
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.errors import DataError, LayoutError
from ..core.storage import StorageOptions, is_local, url_to_fs, version_of

log = logging.getLogger(__name__)

FRAME_EXTENSIONS = (".jpg", ".jpeg")
MASK_EXTENSIONS = (".png",)


@dataclass(frozen=True)
class Layout:
    """Where a split keeps its frames and masks (the pipeline files set these)."""

    images_dir: str = "JPEGImages"
    masks_dir: str = "Annotations"
    resolution: str | None = None  # DAVIS keeps JPEGImages/480p/<video>/
    meta_file: str = "meta.json"
    split_lists: str | None = None  # DAVIS: ImageSets/2017/<split>.txt name each split's videos


@dataclass(frozen=True)
class Blob:
    """Where one source file's bytes are: a file, or a range of a tar archive."""

    path: str  # filesystem path of the file or of the archive
    size: int
    offset: int | None = None  # data offset inside the archive
    display: str = ""  # the name used in messages
    version: str = ""  # ETag or mtime from the listing (storage.version_of); '' inside an archive

    def __str__(self) -> str:
        return self.display or self.path


@dataclass(frozen=True)
class Frame:
    name: str
    jpg: Blob
    png: Blob | None


@dataclass(frozen=True)
class SourceVideo:
    split: str
    video_id: str
    frames: tuple[Frame, ...]
    categories: tuple[tuple[int, str], ...] = ()

    @property
    def source_bytes(self) -> int:
        return sum(f.jpg.size + (f.png.size if f.png else 0) for f in self.frames)


@dataclass
class Split:
    name: str
    videos: list[SourceVideo] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (video_id, "file: problem")
    small_files: list[Blob] = field(default_factory=list)  # read at discovery: meta.json, split lists


@dataclass(frozen=True)
class _Entry:
    rel: str  # path relative to the source root, '/'-separated
    blob: Blob | None  # None for a directory


def discover(
    url: str, storage_options: StorageOptions | None = None, layout: Layout = Layout()
) -> list[Split]:
    """Find the splits and videos of a source, sorted by split then video id."""
    fs, root = url_to_fs(url, storage_options)
    if not fs.exists(root):
        raise LayoutError(f"{url}: no such file or folder")
    if fs.isfile(root):
        if not root.endswith(".tar"):
            raise LayoutError(f"{url}: not a folder or a .tar archive")
        return _group(fs, _tar_entries(fs, root, url), layout, default_split=_tar_stem(root), origin=url)
    entries = list(_dir_entries(fs, root, url))
    if any(_find_images(e.rel, layout) is not None for e in entries):
        found = _group(fs, entries, layout, default_split=posixpath.basename(root.rstrip("/")), origin=url)
        return _split_by_lists(fs, entries, found, layout) if layout.split_lists else found
    tars = sorted(
        (e for e in entries if e.blob and "/" not in e.rel and e.rel.endswith(".tar")), key=lambda e: e.rel
    )
    if tars:
        splits: list[Split] = []
        for entry in tars:
            assert entry.blob is not None
            tar_url = f"{url.rstrip('/')}/{entry.rel}"
            entries_of_tar = _tar_entries(fs, entry.blob.path, tar_url)
            splits += _group(fs, entries_of_tar, layout, _tar_stem(entry.rel), tar_url)
        return _merge(splits)
    raise LayoutError(
        f"{url}: unknown layout: no {layout.images_dir}/ folder and no .tar archive; expected "
        f"[SPLIT/]{layout.images_dir}/<video>/<frame>.jpg with {layout.masks_dir}/<video>/<frame>.png"
    )


def _split_by_lists(fs: Any, entries: list[_Entry], found: list[Split], layout: Layout) -> list[Split]:
    """Re-split one folder's videos by list files (DAVIS: ImageSets/2017/train.txt, val.txt)."""
    folder = f"{layout.split_lists}/"
    lists = {
        posixpath.splitext(e.rel[len(folder) :])[0]: e.blob
        for e in entries
        if e.blob and e.rel.startswith(folder) and e.rel.endswith(".txt") and "/" not in e.rel[len(folder) :]
    }
    if not lists:
        raise LayoutError(f"no {folder}<split>.txt list files in the source (the pipeline expects them)")
    videos = {v.video_id: v for split in found for v in split.videos}
    problems = {v: p for split in found for v, p in split.problems}
    out = []
    metas = [b for split in found for b in split.small_files]
    for name, blob in sorted(lists.items()):
        split = Split(name, small_files=[blob, *metas])
        for video_id in dict.fromkeys(fs.cat_file(blob.path).decode().split()):
            if video_id in videos:
                split.videos.append(replace(videos[video_id], split=name))
            elif video_id in problems:
                split.problems.append((video_id, problems[video_id]))
            else:
                split.problems.append((video_id, f"{blob}: lists {video_id!r}, which has no frames"))
        split.videos.sort(key=lambda v: v.video_id)
        out.append(split)
    return out


def _tar_stem(path: str) -> str:
    return posixpath.basename(path)[: -len(".tar")]


def _dir_entries(fs: Any, root: str, url: str) -> Iterator[_Entry]:
    listing = fs.find(root, withdirs=True, detail=True)
    prefix = root.rstrip("/") + "/"
    for path, info in sorted(listing.items()):
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix) :]
        is_dir = info.get("type") == "directory"
        display = f"{url.rstrip('/')}/{rel}"
        blob = None if is_dir else Blob(path, int(info["size"]), None, display, version_of(info))
        yield _Entry(rel, blob)


def _tar_entries(fs: Any, path: str, url: str) -> Iterator[_Entry]:
    """Index a tar by its headers (seeking past the data); refuse members that escape the archive."""
    try:
        with fs.open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:") as archive:
            yield from _tar_members(archive, path, url)
    except tarfile.TarError as exc:
        raise LayoutError(f"{url}: not a readable tar archive ({exc})") from None


def _tar_members(archive: tarfile.TarFile, path: str, url: str) -> Iterator[_Entry]:
    for member in archive:
        name = member.name
        display = f"{url}:{name}"
        if name.startswith("/") or ".." in name.split("/"):
            raise LayoutError(f"{display}: member path escapes the archive")
        if member.issym() or member.islnk():
            raise LayoutError(f"{display}: links are not allowed in a source archive")
        rel = name[2:] if name.startswith("./") else name
        if member.isdir():
            yield _Entry(rel.rstrip("/"), None)
        elif member.isfile():
            yield _Entry(rel, Blob(path, member.size, member.offset_data, display))


def _find_images(rel: str, layout: Layout) -> int | None:
    parts = rel.split("/")
    for marker in (layout.images_dir, layout.masks_dir):
        if marker in parts:
            return parts.index(marker)
    return None


def _group(
    fs: Any, entries: Iterable[_Entry], layout: Layout, default_split: str, origin: str
) -> list[Split]:
    """Sort entries into splits -> videos -> frames, recording problems per video."""
    files: dict[tuple[str, str, str], dict[str, Blob]] = defaultdict(dict)  # (split, kind, video) -> name
    dirs: set[tuple[str, str, str]] = set()
    metas: dict[str, Blob] = {}
    problems: list[tuple[str, str, str]] = []
    for entry in entries:
        parts = entry.rel.split("/")
        if any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue  # editor and archiver debris: .DS_Store, ._files, __MACOSX/
        if entry.blob and parts[-1] == layout.meta_file:
            metas[parts[-2] if len(parts) > 1 else default_split] = entry.blob
            continue
        index = _find_images(entry.rel, layout)
        if index is None:
            continue
        split = parts[index - 1] if index > 0 else default_split
        kind = "jpg" if parts[index] == layout.images_dir else "png"
        rest = parts[index + 1 :]
        if layout.resolution is not None:
            if not rest or rest[0] != layout.resolution:
                continue
            rest = rest[1:]
        if entry.blob is None:
            if len(rest) == 1:
                dirs.add((split, kind, rest[0]))
            elif len(rest) == 2:
                where = f"{origin.rstrip('/')}/{entry.rel}"
                problems.append((split, rest[0], f"{where}: a folder where a frame or mask file is expected"))
            continue
        if len(rest) != 2:
            hint = f"expected {parts[index]}/<video>/<frame> (a DAVIS tree needs --pipeline davis-2017)"
            problems.append((split, rest[0] if rest else "", f"{entry.blob}: unexpected location; {hint}"))
            continue
        files[(split, kind, rest[0])][rest[1]] = entry.blob
    for split, kind, video in dirs:
        files.setdefault((split, kind, video), {})
    built = _build_splits(files, problems, origin, {s: read_categories(fs, b) for s, b in metas.items()})
    for found in built:
        found.small_files += [metas[found.name]] if found.name in metas else []
    return built


def _build_splits(
    files: dict[tuple[str, str, str], dict[str, Blob]],
    problems: list[tuple[str, str, str]],
    origin: str,
    categories: dict[str, dict[str, dict[int, str]]],
) -> list[Split]:
    splits: dict[str, Split] = {}
    for split_name, _kind, _video in files:
        splits.setdefault(split_name, Split(split_name))
    for split_name, video_id, message in problems:
        splits.setdefault(split_name, Split(split_name)).problems.append((video_id, message))
    for name, split in splits.items():
        video_ids = sorted({v for (s, _k, v) in files if s == name})
        for video_id in video_ids:
            jpgs = files.get((name, "jpg", video_id), {})
            pngs = files.get((name, "png", video_id), {})
            frames, video_problems = _pair_frames(jpgs, pngs, f"{origin}: {name}/{video_id}")
            if video_problems:
                split.problems += [(video_id, p) for p in video_problems]
                continue
            cats = tuple(sorted(categories.get(name, {}).get(video_id, {}).items()))
            split.videos.append(SourceVideo(name, video_id, frames, cats))
    return [splits[name] for name in sorted(splits)]


def read_categories(fs: Any, blob: Blob) -> dict[str, dict[int, str]]:
    """video id -> object id -> category, from a YouTube-VOS style meta.json."""
    if blob.offset is None:
        data = fs.cat_file(blob.path)
    else:
        data = fs.cat_file(blob.path, start=blob.offset, end=blob.offset + blob.size)
    try:
        doc = json.loads(data)
        return {
            video_id: {int(oid): str(obj["category"]) for oid, obj in entry.get("objects", {}).items()}
            for video_id, entry in doc["videos"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LayoutError(f"{blob}: not a YouTube-VOS meta.json ({exc.__class__.__name__}: {exc})") from None


def _frame_key(file_name: str, exts: tuple[str, ...]) -> tuple[str, int | None, bool]:
    stem, ext = posixpath.splitext(file_name)
    ok_ext = ext.lower() in exts
    number = int(stem) if stem.isdigit() else None
    return stem, number, ok_ext


def _pair_frames(
    jpgs: dict[str, Blob], pngs: dict[str, Blob], where: str
) -> tuple[tuple[Frame, ...], list[str]]:
    """Pair each JPEG with its mask by frame name; order frames numerically; report every problem."""
    problems: list[str] = []
    frames: dict[int, tuple[str, Blob]] = {}
    masks: dict[int, Blob] = {}
    for table, exts, kind in ((jpgs, FRAME_EXTENSIONS, "frame"), (pngs, MASK_EXTENSIONS, "mask")):
        seen: dict[int, Blob] = {}
        for file_name, blob in sorted(table.items()):
            stem, number, ok_ext = _frame_key(file_name, exts)
            if not ok_ext:
                problems.append(f"{blob}: not a {kind} file (expected {' or '.join(exts)})")
            elif number is None:
                problems.append(f"{blob}: frame name {stem!r} is not numeric")
            elif number in seen:
                problems.append(f"{blob}: duplicate frame number {number} (also {seen[number]})")
            else:
                seen[number] = blob
                if kind == "frame":
                    frames[number] = (stem, blob)
                else:
                    masks[number] = blob
    for number, blob in sorted(masks.items()):
        if number not in frames:
            problems.append(f"{blob}: mask without a frame (no matching .jpg)")
    if not jpgs and not problems:
        problems.append(f"{where}: empty video folder (no .jpg frames)")
    ordered = tuple(Frame(stem, blob, masks.get(n)) for n, (stem, blob) in sorted(frames.items()))
    return ordered, problems


def _merge(splits: list[Split]) -> list[Split]:
    by_name: dict[str, Split] = {}
    for split in splits:
        if split.name in by_name:
            raise LayoutError(f"split {split.name!r} found twice in the source")
        by_name[split.name] = split
    return [by_name[n] for n in sorted(by_name)]


def _unreadable(blob: Blob, exc: BaseException) -> DataError:
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    return DataError(str(blob), f"unreadable ({reason})")


def _checked(blob: Blob, data: bytes) -> bytes:
    """The bytes read, when they are as many as listed (a file that shrank since listing is named)."""
    if len(data) != blob.size:
        raise DataError(str(blob), f"changed while converting: listed {blob.size} bytes, read {len(data)}")
    return data


class SourceReader:
    """Reads blobs: local files and archives through one open handle each, remote ones by ranged GETs."""

    def __init__(self, url: str, storage_options: StorageOptions | None = None) -> None:
        self.fs, _ = url_to_fs(url, storage_options)
        self._local = is_local(self.fs)
        self._handles: dict[str, Any] = {}

    def read_many(self, blobs: list[Blob]) -> list[bytes]:
        """The bytes of each blob, in order (concurrent requests on object stores); DataError naming an
        unreadable blob."""
        if self._local:
            return [self._read_local(b) for b in blobs]
        starts = [b.offset or 0 for b in blobs]
        ends = [(b.offset or 0) + b.size for b in blobs]
        data = self.fs.cat_ranges([b.path for b in blobs], starts, ends, on_error="return")
        for blob, item in zip(blobs, data, strict=True):
            if isinstance(item, Exception):
                raise _unreadable(blob, item)
        return [_checked(blob, item) for blob, item in zip(blobs, data, strict=True)]

    def _read_local(self, blob: Blob) -> bytes:
        try:
            if blob.offset is None:
                with open(blob.path, "rb") as fh:
                    return _checked(blob, fh.read())
            handle = self._handles.get(blob.path)
            if handle is None:
                handle = self._handles[blob.path] = open(blob.path, "rb")  # noqa: SIM115 - closed in close()
            handle.seek(blob.offset)
            return _checked(blob, handle.read(blob.size))
        except OSError as exc:
            raise _unreadable(blob, exc) from None

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()

    def __enter__(self) -> SourceReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
