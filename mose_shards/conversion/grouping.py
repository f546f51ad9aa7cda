"""A source's entries -> splits of videos: where frames and masks are (`Layout`), the rules for each
entry (video folders, meta files, debris, misplaced files), and the videos' columns (`videos`).

`sources` lists the entries (a folder walked, an archive's listing) and hands them here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from ..core.errors import LayoutError
from .entries import Entry, Root
from .reader import SourceReader
from .videos import Blob, Gathered, SourceVideo, pair

SPLIT_META = re.compile(r"^meta_(?P<split>[^/]+)\.json$")  # MOSEv2 ships meta_train.json beside the archives


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


def find_images(rel: str, layout: Layout) -> int | None:
    parts = rel.split("/")
    for marker in (layout.images_dir, layout.masks_dir):
        if marker in parts:
            return parts.index(marker)
    return None


Key = tuple[str, str, str]  # (split, "jpg" or "png", video id)


def group(
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
        if is_file and parts[-1].startswith("meta_") and (named := SPLIT_META.match(parts[-1])):
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
