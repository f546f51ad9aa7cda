"""Raw VOS layouts -> video records.

A source is a split folder (holding JPEGImages/ and Annotations/), a root of split folders, an
archive of either (`.tar`, `.tar.gz`/`.tgz`, `.zip`, whole or cut into parts), or a folder of such
archives (the dataset as shipped: train.tar.gz.aa..ac, valid.tar.gz, SHA256SUMS, meta_<split>.json),
on any fsspec filesystem. Discovery only lists names and sizes (an archive is listed by its headers
or its zip directory, never extracted); the bytes are read later, a video at a time, by `SourceReader`.
"""

from __future__ import annotations

import functools
import itertools
import logging
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from ..archives import Archive, archive_at, find_sums, group_parts, load_or_scan, missing_listed
from ..core.errors import LayoutError
from ..core.storage import StorageOptions, url_to_fs
from .entries import Entry, Root, archive_entries, dir_entries
from .grouping import SPLIT_META, Layout, Split, find_images, group
from .reader import SourceReader
from .videos import Blob, Frame, SourceVideo

__all__ = ["Blob", "Frame", "Layout", "SourceVideo", "Split", "discover"]  # records in .videos, .grouping

log = logging.getLogger(__name__)


def discover(
    url: str,
    storage_options: StorageOptions | None = None,
    layout: Layout = Layout(),  # noqa: B008 - a frozen dataclass
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
        if find_images(entry.rel, layout) is not None:
            # Streamed into the grouping, not listed first (a MOSEv2 tree has ~1M files).
            entries: Iterable[Entry] = itertools.chain(head, walked)
            if layout.split_lists:
                entries = list(entries)
            here = Root(url, path=root.rstrip("/") + "/")
            found = group(fs, entries, layout, posixpath.basename(root.rstrip("/")), here)
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
        metas = {m.group("split"): n for n in sorted(beside) if (m := SPLIT_META.match(n))}
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
            grouped = group(self.fs, entries, self.layout, archive.split, root, outside)
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


def _merge(splits: list[Split]) -> list[Split]:
    by_name: dict[str, Split] = {}
    for split in splits:
        if split.name in by_name:
            raise LayoutError(f"split {split.name!r} found twice in the source")
        by_name[split.name] = split
    return [by_name[n] for n in sorted(by_name)]
