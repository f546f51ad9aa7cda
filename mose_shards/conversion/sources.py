"""Raw VOS layouts -> video records.

A source is a split folder (holding JPEGImages/ and Annotations/), a root of split folders, an
archive of either (`.tar`, `.tar.gz`/`.tgz`, `.zip`, whole or cut into parts), or a folder of such
archives (the dataset as shipped: train.tar.gz.aa..ac, valid.tar.gz, SHA256SUMS, meta_<split>.json),
on any fsspec filesystem. Discovery only lists names and sizes (an archive is listed by its headers
or its zip directory, never extracted); the bytes are read later, a video at a time, by `SourceReader`.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import posixpath
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..archives.archives import Archive, archive_at, group_parts, load_or_scan, missing_listed
from ..archives.parts import find_sums
from ..core.errors import LayoutError
from ..core.storage import StorageOptions, url_to_fs
from .entries import Entry, Root, archive_entries, dir_entries
from .reader import SourceReader
from .videos import Blob, Frame, Gathered, SourceVideo, pair

__all__ = ["Blob", "Frame", "Layout", "SourceVideo", "Split", "discover"]  # the records live in .videos

log = logging.getLogger(__name__)

_SPLIT_META = re.compile(r"^meta_(?P<split>[^/]+)\.json$")  # MOSEv2 ships meta_train.json beside the archives


@dataclass(frozen=True)
class Layout:
    """Where a split keeps its frames and masks (the pipeline files set these)."""

    images_dir: str = "JPEGImages"
    masks_dir: str = "Annotations"
    resolution: str | None = None  # DAVIS keeps JPEGImages/480p/<video>/
    meta_file: str = "meta.json"
    split_lists: str | None = None  # DAVIS: ImageSets/2017/<split>.txt name each split's videos


@dataclass
class Split:
    name: str
    videos: list[SourceVideo] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (video_id, "file: problem")
    small_files: list[Blob] = field(default_factory=list)  # read at discovery: meta.json, split lists


def discover(
    url: str,
    storage_options: StorageOptions | None = None,
    layout: Layout = Layout(),
    *,
    cache: Any | None = None,
    verify: bool = True,
    threads: int | None = None,
    splits: tuple[str, ...] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Split]:
    """Find the splits and videos of a source, sorted by split then video id.

    `cache` (the output Store) keeps archive listings and gzip seek indexes for reruns and for the
    workers; `verify` checks archives against SHA256SUMS / `<file>.sha256` while listing them;
    `threads` decompress gzip (None: every core this process may use); `splits` skips archives of
    other splits in a folder of them; `progress("list:<archive>", bytes read, bytes)` hears how far
    each archive listed has been read.
    """
    fs, root = url_to_fs(url, storage_options)
    archives = _Archives(fs, cache, verify, threads, layout, progress)
    folder, folder_url = posixpath.dirname(root.rstrip("/")), url.rstrip("/").rsplit("/", 1)[0]
    if "/" not in url.rstrip("/"):
        folder_url = ""
    if not fs.exists(root):
        parted = _parts_named(fs, root, folder, folder_url)
        if parted is None:
            raise LayoutError(f"{url}: no such file or folder")
        return archives.splits([parted], folder, folder_url)
    if fs.isfile(root):
        archive = archive_at(fs, root, url)
        if archive is None:
            raise LayoutError(f"{url}: not a folder or an archive ({_FORMS})")
        return archives.splits([archive], folder, folder_url)
    walked = dir_entries(fs, root, url)
    head = []  # the entries up to the first frame or mask: is it a tree of them?
    for entry in walked:
        head.append(entry)
        if _find_images(entry.rel, layout) is not None:
            # Streamed into the grouping, not listed first (a MOSEv2 tree has ~1M files).
            entries: Iterable[Entry] = itertools.chain(head, walked)
            if layout.split_lists:
                entries = list(entries)
            here = Root(url, path=root.rstrip("/") + "/")
            found = _group(fs, entries, layout, posixpath.basename(root.rstrip("/")), here)
            return _split_by_lists(fs, list(entries), found, layout, here) if layout.split_lists else found
    listing = {posixpath.basename(i["name"].rstrip("/")): i for i in fs.ls(root, detail=True)}
    shipped = group_parts(listing, root.rstrip("/"), url.rstrip("/"))
    if splits and any(a.split in splits for a in shipped):
        shipped = [a for a in shipped if a.split in splits]
    if shipped:
        return archives.splits(shipped, root.rstrip("/"), url.rstrip("/"))
    raise LayoutError(
        f"{url}: unknown layout: no {layout.images_dir}/ folder and no archive ({_FORMS}); expected "
        f"[SPLIT/]{layout.images_dir}/<video>/<frame>.jpg with {layout.masks_dir}/<video>/<frame>.png"
    )


_FORMS = ".tar, .tar.gz, .tgz, .zip, or parts of one such as NAME.tar.gz.aa"


def _parts_named(fs: Any, root: str, folder: str, folder_url: str) -> Archive | None:
    """`train.tar.gz` given while only its parts (train.tar.gz.aa, ...) exist: those parts."""
    if not folder or not fs.isdir(folder):
        return None
    listing = {posixpath.basename(i["name"].rstrip("/")): i for i in fs.ls(folder, detail=True)}
    name = posixpath.basename(root)
    return next((a for a in group_parts(listing, folder, folder_url) if a.paths[0] != root and
                 posixpath.basename(a.url) == name), None)  # fmt: skip


class _Archives:
    """Splits from archives: checksums and meta_<split>.json beside them, listings (saved in cache)."""

    def __init__(
        self, fs: Any, cache: Any | None, verify: bool, threads: int | None, layout: Layout,
        progress: Callable[[str, int, int], None] | None,
    ) -> None:  # fmt: skip
        self.fs, self.cache, self.verify, self.threads, self.layout = fs, cache, verify, threads, layout
        self.progress = progress

    def splits(self, archives: list[Archive], folder: str, folder_url: str) -> list[Split]:
        names = [n for a in archives for n in a.names]
        listed = self.fs.ls(folder, detail=False) if folder else []
        beside = {posixpath.basename(p.rstrip("/")) for p in listed}
        metas = {m.group("split"): n for n in sorted(beside) if (m := _SPLIT_META.match(n))}
        sums = find_sums(self.fs, folder, folder_url, [*names, *metas.values()]) if self.verify else None
        found: list[Split] = []
        for archive in archives:
            if sums:
                missing_listed(archive, sums)
            listed = None
            if self.progress is not None:
                listed = functools.partial(self.progress, f"list:{posixpath.basename(archive.url)}")
            listing = load_or_scan(self.fs, archive, self.cache, sums, self.threads, listed)
            outside = {}
            for split, name in metas.items():
                path = posixpath.join(folder, name)
                url = f"{folder_url}/{name}" if folder_url else name
                outside[split] = (Blob(path, int(self.fs.size(path)), None, url), (sums or {}).get(name))
            # Without split lists the entries stream through _group: no list of 1M entries held beside
            # the listing and the records (the peak memory of a MOSEv2-size plan).
            entries: Iterable[Entry] = archive_entries(archive, listing)
            if self.layout.split_lists:
                entries = list(entries)
            del listing
            root = Root(archive.url, archive=archive)
            grouped = _group(self.fs, entries, self.layout, archive.split, root, outside)
            found += (
                _split_by_lists(self.fs, list(entries), grouped, self.layout, root)
                if self.layout.split_lists
                else grouped
            )
        return _merge(found)


def _split_by_lists(
    fs: Any, entries: list[Entry], found: list[Split], layout: Layout, root: Root
) -> list[Split]:
    """Re-split one folder's videos by list files (DAVIS: ImageSets/2017/train.txt, val.txt), found
    at the top of the source or under one folder (DAVIS-2017-trainval-480p.zip holds DAVIS/...)."""
    folder = f"{layout.split_lists}/"
    lists = {name: root.blob(e) for e in entries if e.size >= 0 and (name := _list_name(e.rel, folder))}
    if not lists:
        raise LayoutError(f"no {folder}<split>.txt list files in the source (the pipeline expects them)")
    videos = {v.video_id: v for split in found for v in split.videos}
    problems = {v: p for split in found for v, p in split.problems}
    out = []
    metas = [b for split in found for b in split.small_files]
    for name, blob in sorted(lists.items()):
        split = Split(name, small_files=[blob, *metas])
        with SourceReader("", None, fs=fs) as reader:  # a plain file or an archive member
            listed = reader.read_many([blob])[0].decode()
        for video_id in dict.fromkeys(listed.split()):
            if video_id in videos:
                split.videos.append(replace(videos[video_id], split=name))
            elif video_id in problems:
                split.problems.append((video_id, problems[video_id]))
            else:
                split.problems.append((video_id, f"{blob}: lists {video_id!r}, which has no frames"))
        split.videos.sort(key=lambda v: v.video_id)
        out.append(split)
    return out


def _list_name(rel: str, folder: str) -> str | None:
    """'val' for ImageSets/2017/val.txt or DAVIS/ImageSets/2017/val.txt (one folder above at most)."""
    prefix, found, name = rel.partition(folder)
    if not found or "/" in name or not name.endswith(".txt") or prefix.count("/") > 1:
        return None
    return name[: -len(".txt")] if prefix in ("", f"{prefix.split('/')[0]}/") else None


def _find_images(rel: str, layout: Layout) -> int | None:
    parts = rel.split("/")
    for marker in (layout.images_dir, layout.masks_dir):
        if marker in parts:
            return parts.index(marker)
    return None


Key = tuple[str, str, str]  # (split, "jpg" or "png", video id)


def _group(
    fs: Any,
    entries: Iterable[Entry],
    layout: Layout,
    default_split: str,
    root: Root,
    outside: dict[str, tuple[Blob, str | None]] | None = None,
) -> list[Split]:
    """Sort entries into splits -> videos -> frames, recording problems per video.

    `outside`: meta files found beside an archive (split -> blob and its expected sha256)."""
    grouper = _Grouper(layout, default_split, root)
    # ~1M entries for MOSEv2, in ~10k folders: what a folder holds is decided once per folder, and a
    # frame or mask file then costs a split of its path, a dict lookup and an append to columns.
    targets: dict[str, Gathered | None] = {}
    meta_file = layout.meta_file
    for entry in entries:
        rel, size = entry.rel, entry.size
        folder, _, name = rel.rpartition("/")
        if size < 0 or name[:1] == "." or name == meta_file or name.startswith("meta_") or entry.dotted:
            grouper.add(entry)  # folders, debris, meta files, ./names: the general path
            continue
        if folder not in targets:
            targets[folder] = grouper.target(folder)
        target = targets[folder]
        if target is None:
            grouper.add(entry)  # not a video folder: the general path ignores it or names a problem
        else:
            target.add(name, size, entry.offset, entry.version, entry.codec)
    return grouper.splits(fs, outside)


class _Grouper:
    """Entries -> splits of videos: the rules for one entry, and the columns of each video."""

    def __init__(self, layout: Layout, default_split: str, root: Root) -> None:
        self.layout, self.default_split, self.root = layout, default_split, root
        self.files: dict[Key, Gathered] = {}
        self.places: dict[Key, tuple[str, bool]] = {}  # the folder each video's files are in
        self.dirs: set[Key] = set()
        self.metas: dict[str, tuple[Blob, str | None]] = {}
        self.problems: list[tuple[str, str, str]] = []

    def target(self, folder: str) -> Gathered | None:
        """The columns files directly in `folder` go to, when it is a video folder (else None)."""
        located = self._locate(f"{folder}/x")
        if located is None or len(located[2]) != 2:
            return None
        split, kind, rest, _index = located
        return self._gathered((split, kind, rest[0]), folder, dotted=False)

    def _locate(self, rel: str) -> tuple[str, str, list[str], int] | None:
        """(split, "jpg" or "png", path below the images/masks folder, its index) of an entry in an
        images or masks folder, else None (debris, other files)."""
        parts = rel.split("/")
        if "/." in f"/{rel}" or "__MACOSX" in parts:
            return None  # editor and archiver debris: .DS_Store, ._files, __MACOSX/
        layout = self.layout
        if layout.images_dir in parts:
            index = parts.index(layout.images_dir)
        elif layout.masks_dir in parts:
            index = parts.index(layout.masks_dir)
        else:
            return None
        split = parts[index - 1] if index > 0 else self.default_split
        kind = "jpg" if parts[index] == layout.images_dir else "png"
        rest = parts[index + 1 :]
        if layout.resolution is not None:
            if not rest or rest[0] != layout.resolution:
                return None
            rest = rest[1:]
        return split, kind, rest, index

    def _gathered(self, key: Key, folder: str, dotted: bool) -> Gathered:
        gathered = self.files.get(key)
        place = (folder, dotted)
        if gathered is None:
            gathered = self.files[key] = self.root.gathered(folder, dotted)
            self.places[key] = place
        elif self.places[key] != place and gathered.elsewhere is None:
            gathered.elsewhere = f"{self.root.gathered(folder, dotted).shown} and {gathered.shown}"
        return gathered

    def add(self, entry: Entry) -> None:
        """One entry by the general rules (a folder, a meta file, debris, a file anywhere)."""
        rel, root = entry.rel, self.root
        parts = rel.split("/")
        is_file = entry.size >= 0
        if "/." in f"/{rel}" or "__MACOSX" in parts:
            return
        if is_file and parts[-1] == self.layout.meta_file:
            self.metas[parts[-2] if len(parts) > 1 else self.default_split] = (root.blob(entry), None)
            return
        if is_file and parts[-1].startswith("meta_") and (named := _SPLIT_META.match(parts[-1])):
            self.metas[named.group("split")] = (root.blob(entry), None)
            return
        located = self._locate(rel)
        if located is None:
            return
        split, kind, rest, index = located
        if not is_file:
            if len(rest) == 1:
                self.dirs.add((split, kind, rest[0]))
            elif len(rest) == 2:
                where = root.shown(rel)
                self.problems.append(
                    (split, rest[0], f"{where}: a folder where a frame or mask file is expected")
                )
            return
        if len(rest) != 2:
            hint = f"expected {parts[index]}/<video>/<frame> (a DAVIS tree needs --pipeline davis-2017)"
            message = f"{root.blob(entry)}: unexpected location; {hint}"
            self.problems.append((split, rest[0] if rest else "", message))
            return
        gathered = self._gathered((split, kind, rest[0]), rel[: -len(rest[1]) - 1], entry.dotted)
        gathered.add(rest[1], entry.size, entry.offset, entry.version, entry.codec)

    def splits(self, fs: Any, outside: dict[str, tuple[Blob, str | None]] | None) -> list[Split]:
        files, dirs, problems, metas = self.files, self.dirs, self.problems, self.metas
        splits_seen = {split for split, _kind, _video in files} | {split for split, _kind, _video in dirs}
        splits_seen |= {split for split, _video, _p in problems}
        for split, meta in (outside or {}).items():
            if split in splits_seen:
                metas.setdefault(split, meta)
        categories = {s: read_categories(fs, blob, expected) for s, (blob, expected) in metas.items()}
        built = _build_splits(files, dirs, problems, self.root.origin, categories)
        for found in built:
            found.small_files += [metas[found.name][0]] if found.name in metas else []
        return built


def _build_splits(
    files: dict[Key, Gathered],
    dirs: set[Key],
    problems: list[tuple[str, str, str]],
    origin: str,
    categories: dict[str, dict[str, dict[int, str]]],
) -> list[Split]:
    splits: dict[str, Split] = {}
    for split_name, _kind, _video in [*files, *dirs]:
        splits.setdefault(split_name, Split(split_name))
    for split_name, video_id, message in problems:
        splits.setdefault(split_name, Split(split_name)).problems.append((video_id, message))
    for name, split in splits.items():
        video_ids = sorted({v for (s, _k, v) in [*files, *dirs] if s == name})
        for video_id in video_ids:
            # Popped: each video's lists go as its columns are made (the plan's peak).
            jpgs = files.pop((name, "jpg", video_id), None)
            pngs = files.pop((name, "png", video_id), None)
            video, video_problems = pair(name, video_id, jpgs, pngs, f"{origin}: {name}/{video_id}")
            if video is None:
                split.problems += [(video_id, p) for p in video_problems]
                continue
            cats = tuple(sorted(categories.get(name, {}).get(video_id, {}).items()))
            split.videos.append(replace(video, categories=cats) if cats else video)
    return [splits[name] for name in sorted(splits)]


def read_categories(fs: Any, blob: Blob, expected: str | None = None) -> dict[str, dict[int, str]]:
    """video id -> object id -> category, from a YouTube-VOS style meta.json (or MOSEv2's
    meta_<split>.json); `expected` is its sha256 from the checksums beside it."""
    with SourceReader("", None, fs=fs) as reader:
        data = reader.read_many([blob])[0]
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise LayoutError(f"{blob}: sha256 mismatch (the checksum file says {expected[:12]}…)")
    try:
        doc = json.loads(data)
        return {
            video_id: {int(oid): str(obj["category"]) for oid, obj in entry.get("objects", {}).items()}
            for video_id, entry in doc["videos"].items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise LayoutError(f"{blob}: not a YouTube-VOS meta.json ({exc.__class__.__name__}: {exc})") from None


def _merge(splits: list[Split]) -> list[Split]:
    by_name: dict[str, Split] = {}
    for split in splits:
        if split.name in by_name:
            raise LayoutError(f"split {split.name!r} found twice in the source")
        by_name[split.name] = split
    return [by_name[n] for n in sorted(by_name)]
