"""What an archive of a source is: its kind (`.tar`, `.tar.gz`/`.tgz`, `.zip`), its parts (one for an
unsplit file, `NAME.aa`... for a split one) and the key its saved listing goes by; and finding the
archives among a folder's files.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import LayoutError
from ..core.storage import version_of
from .parts import PartsFile, order_parts, part_of

KINDS = {".tar": "tar", ".tar.gz": "tar.gz", ".tgz": "tar.gz", ".zip": "zip"}
_FORMAT = 1  # bump when the saved listing changes shape


def kind_of(name: str) -> tuple[str, str] | None:
    """(kind, split name) of an archive file name: train.tar.gz -> ('tar.gz', 'train')."""
    for ext in (".tar.gz", ".tgz", ".tar", ".zip"):
        if name.endswith(ext) and len(name) > len(ext):
            return KINDS[ext], name[: -len(ext)]
    return None


@dataclass(frozen=True)
class Archive:
    """One archive of the source: its kind and its parts (one for an unsplit file), in order."""

    kind: str  # "tar", "tar.gz" or "zip"
    url: str  # the archive's URL without part suffix, for messages: .../train.tar.gz
    paths: tuple[str, ...]
    sizes: tuple[int, ...]
    stamps: tuple[str, ...]  # mtime or ETag of each part: a changed part changes the key
    key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        names = [posixpath.basename(p) for p in self.paths]
        doc = json.dumps([_FORMAT, self.kind, names, list(self.sizes), list(self.stamps)])
        object.__setattr__(self, "key", hashlib.sha256(doc.encode()).hexdigest()[:24])

    @property
    def names(self) -> list[str]:
        return [posixpath.basename(p) for p in self.paths]

    @property
    def part_urls(self) -> list[str]:
        folder = self.url.rsplit("/", 1)[0] if "/" in self.url else ""
        return [f"{folder}/{n}" if folder else n for n in self.names]

    @property
    def split(self) -> str:
        found = kind_of(posixpath.basename(self.url))
        return found[1] if found else posixpath.basename(self.url)

    @property
    def seekable_in_place(self) -> bool:
        """Members can be read by byte range of the file itself (no decompression, one file)."""
        return self.kind != "tar.gz" and len(self.paths) == 1

    def open(self, fs: Any, hashing: bool = False) -> PartsFile:
        return PartsFile(fs, list(self.paths), list(self.sizes), self.part_urls, hashing)


def archive_at(fs: Any, path: str, url: str) -> Archive | None:
    """The archive a file path names (an unsplit archive, or one part of a split one), else None."""
    name = posixpath.basename(path)
    folder = posixpath.dirname(path)
    folder_url = url.rsplit("/", 1)[0] if "/" in url else ""
    split = part_of(name)
    if split is None:
        if kind_of(name) is None:
            return None
        info = fs.info(path)
        return Archive(kind_of(name)[0], url, (path,), (int(info["size"]),), (version_of(info),))  # type: ignore[index]
    listing = {posixpath.basename(p["name"].rstrip("/")): p for p in fs.ls(folder, detail=True)}
    found = group_parts(listing, folder, folder_url)
    return next(a for a in found if posixpath.basename(a.url) == split[0])


def group_parts(listing: dict[str, dict[str, Any]], folder: str, folder_url: str) -> list[Archive]:
    """The archives among the files of one folder (name -> fsspec info): whole ones and split ones."""
    archives: list[Archive] = []
    split: dict[str, list[str]] = {}
    for name, info in sorted(listing.items()):
        if info.get("type") == "directory":
            continue
        parted = part_of(name)
        if parted is not None:
            split.setdefault(parted[0], []).append(parted[1])
        elif (kind := kind_of(name)) is not None:
            path = posixpath.join(folder, name)
            url = f"{folder_url}/{name}" if folder_url else name
            archives.append(Archive(kind[0], url, (path,), (int(info["size"]),), (version_of(info),)))
    for stem, suffixes in sorted(split.items()):
        url = f"{folder_url}/{stem}" if folder_url else stem
        if stem in listing:
            raise LayoutError(f"{url}: found both whole and in parts ({stem}.{suffixes[0]}); keep one")
        names = [f"{stem}.{s}" for s in order_parts(url, suffixes)]
        infos = [listing[n] for n in names]
        archives.append(
            Archive(
                kind_of(stem)[0],  # type: ignore[index]
                url,
                tuple(posixpath.join(folder, n) for n in names),
                tuple(int(i["size"]) for i in infos),
                tuple(version_of(i) for i in infos),
            )
        )
    return sorted(archives, key=lambda a: a.url)


def missing_listed(archive: Archive, sums: dict[str, str]) -> None:
    """A part named in the checksums beyond the last one found (a missing last part) is an error."""
    if len(archive.paths) == 1 and part_of(archive.names[0]) is None:
        return
    stem = posixpath.basename(archive.url)
    have = set(archive.names)
    for name in sorted(sums):
        parted = part_of(name)
        if parted and parted[0] == stem and name not in have:
            folder = archive.url.rsplit("/", 1)[0]
            raise LayoutError(f"{folder}/{name}: listed in the checksums but missing")
