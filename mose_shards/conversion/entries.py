"""A source's listing as entries: each file's path below the root, size and where its bytes are.

Entries come from a folder (walked; on local disk with `os.scandir`, since fsspec's `find` builds a
dict of about 1 KB per file, 1 GB for MOSEv2's 933k files) or from an archive's listing, and are
grouped into videos by `sources`. `Root` turns an entry back into a `Blob` for the few files read
whole (meta.json, split lists) and names entries in messages.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..archives import KIND_CODES, Archive, Listing
from ..core import tarscan
from ..core.errors import LayoutError
from ..core.storage import is_local, version_of
from .videos import Blob, Codec, Gathered


class Entry(NamedTuple):
    rel: str  # path relative to the source root, '/'-separated (an archive member's without './')
    size: int  # -1 for a directory
    offset: int | None = None  # data offset inside an archive
    version: str = ""  # ETag or mtime of a plain file
    codec: Codec | None = None  # a zip member's
    dotted: bool = False  # an archive member named ./rel


@dataclass(frozen=True)
class Root:
    """What the entries of one listing are relative to: a folder (path and URL) or an archive."""

    origin: str  # the URL, for messages
    path: str = ""  # a folder's path, '/'-terminated
    archive: Archive | None = None

    def blob(self, entry: Entry) -> Blob:
        if self.archive is None:
            return Blob(self.path + entry.rel, entry.size, None, self.shown(entry.rel), entry.version)
        name = f"./{entry.rel}" if entry.dotted else entry.rel
        archive = self.archive
        return Blob(archive.paths[0], entry.size, entry.offset, name, archive=archive, codec=entry.codec)

    def gathered(self, folder: str, dotted: bool) -> Gathered:
        """The builder of one video's files found in `folder` (relative to the root)."""
        if self.archive is None:
            return Gathered(self.path + folder, self.shown(folder) + "/", None)
        return Gathered("", f"./{folder}/" if dotted else f"{folder}/", self.archive)

    def shown(self, rel: str) -> str:
        return f"{self.origin.rstrip('/')}/{rel}"


def dir_entries(fs: Any, root: str, url: str) -> Iterator[Entry]:
    """Everything below a folder, in the order of the sorted paths."""
    if is_local(fs):
        yield from _local_entries(root.rstrip("/"), "")
        return
    listing = fs.find(root, withdirs=True, detail=True)
    prefix = root.rstrip("/") + "/"
    for path, info in sorted(listing.items()):
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix) :]
        if info.get("type") == "directory":
            yield Entry(rel, -1)
        else:
            yield Entry(rel, int(info["size"]), None, version_of(info))


def _local_entries(folder: str, rel: str) -> Iterator[Entry]:
    """A local folder walked with os.scandir: what fsspec's `find(detail=True)` gives (a symlink is a
    file of its target's size and its own mtime), without an info dict per file. Children go in the
    order of the sorted paths: a folder sorts as its name plus '/'."""
    try:
        with os.scandir(folder) as scan:
            children = sorted((e.name + "/" if e.is_dir(follow_symlinks=False) else e.name, e) for e in scan)
    except OSError as exc:
        raise LayoutError(f"{folder}: cannot list this folder ({exc.strerror or exc})") from None
    for key, child in children:
        path = rel + child.name
        if key.endswith("/"):
            yield Entry(path, -1)
            yield from _local_entries(child.path, path + "/")
            continue
        try:
            info = child.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # gone since listed (fsspec skips it too)
        size = info.st_size
        if stat.S_ISLNK(info.st_mode):
            try:
                size = child.stat(follow_symlinks=True).st_size
            except OSError:
                size = 0  # a dangling link: reading it later names it
        yield Entry(path, size, None, str(info.st_mtime) if info.st_mtime else "")


def archive_entries(archive: Archive, listing: Listing) -> Iterator[Entry]:
    """Entries of a listed archive; refuse members that escape it or are links."""
    members = listing.members
    codecs = listing.codecs
    offsets, sizes, kinds = members.offsets, members.sizes, members.kinds
    file, folder, link = (KIND_CODES[k] for k in (tarscan.FILE, tarscan.DIR, tarscan.LINK))
    for number in range(len(members)):
        name = members.release(number)  # each name dropped from the listing once its entry is made
        if name[:1] == "/" or (".." in name and ".." in name.split("/")):
            raise LayoutError(f"{archive.url}:{name}: member path escapes the archive")
        kind = kinds[number]
        if kind == link:
            raise LayoutError(f"{archive.url}:{name}: links are not allowed in a source archive")
        dotted = name.startswith("./")
        rel = name[2:] if dotted else name
        if kind == folder:
            yield Entry(rel.rstrip("/"), -1)
        elif kind == file:
            codec = codecs.get(number) if codecs else None
            yield Entry(rel, sizes[number], offsets[number], "", codec, dotted)
