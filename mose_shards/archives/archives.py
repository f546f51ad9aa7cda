"""Source archives as they ship: `.tar`, `.tar.gz`/`.tgz`, `.zip`, each whole or cut into parts.

Listing an archive gives its members (name, data offset, size); reading a member later needs only
its offset. A plain `.tar` and a `.zip` are read in place by byte range. gzip is not seekable, so
the one pass that lists a `.tar.gz` (it must decompress everything to find the headers) also builds
a seek index with rapidgzip: one checkpoint (a 32 KiB window) every few MiB of compressed data.
Conversion workers then decompress only their own byte ranges, starting from the nearest
checkpoint. The listing and the index are saved under `OUT/.mose-shards/sources/`, keyed by every
part's name, size and mtime/ETag, so a rerun (after a kill too) neither lists nor decompresses the
archive again, and a changed archive is never taken for the old one. A `.tar.gz` listing saves
checkpoints as it goes (`gzlist`): a run killed while listing goes on from the last one.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import math
import posixpath
from dataclasses import dataclass, field
from typing import Any

from ..core import tarscan
from ..core.cores import available_cores
from ..core.errors import LayoutError
from ..core.layout import SOURCES_DIR as CACHE_DIR
from ..core.storage import version_of
from .gzcheckpoints import discard as discard_checkpoint
from .gzcheckpoints import test_hooks
from .gzlist import scan_gzip
from .gzseek import GzipRanges
from .listfile import Listing, Members, members_bytes, read_members
from .parts import Listed, PartsFile, check_sums, order_parts, part_of, reporting

log = logging.getLogger(__name__)

KINDS = {".tar": "tar", ".tar.gz": "tar.gz", ".tgz": "tar.gz", ".zip": "zip"}
_FORMAT = 1  # bump when the saved listing changes shape
# Seek points C compressed bytes apart. A reader holds the whole index (~33 KiB a point on JPEG
# data: size / C points) and up to ~11 stretches of C (gzseek: kept, queued, decoding), and a task
# decodes up to C it does not need where its runs of members start. C = sqrt(size * 2 KiB)
# keeps both memory terms and that waste growing as the square root of the archive: MOSEv2's 85 GB
# train, 13 MB apart: ~210 MB of index plus ~140 MB of stretches per reader. At least 4 MiB: the
# listing decodes a chunk between two points per rapidgzip task, and its two threads listed a 70 MB
# archive at 275 MB/s with 1 MiB chunks against 369 with 4 MiB (benchmarks/archives.py).
_SPACING_SCALE = 2048
_DECODERS = 2  # threads per reading process that decode the stretches a read needs next
_MIN_CHUNK, _MAX_CHUNK = 4 << 20, 64 << 20


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


# --- listing --------------------------------------------------------------------------------------


def scan(
    fs: Any,
    archive: Archive,
    sums: dict[str, str] | None,
    threads: int | None = None,
    cache: Any = None,
    listed: Listed | None = None,
) -> Listing:
    """List an archive's members, hashing its parts against `sums` on the way (None: no check); a
    .tar.gz is decompressed by `threads` (None: every core this process may use), checkpointed
    under `cache` (OUT), and goes on from a checkpoint found there. `listed` hears how far the
    archive has been read."""
    checking = bool(sums) and any(n in sums for n in archive.names)  # type: ignore[operator]
    with archive.open(fs, hashing=checking) as raw:
        if archive.kind == "tar.gz":
            gz_sums = sums if checking else None
            listing = scan_gzip(raw, archive, threads, gz_sums, cache, chunk_size(archive), listed)
        elif archive.kind == "zip":
            from .zipsource import scan_zip

            listing = scan_zip(raw, archive)
            if checking:
                raw.seek(0)
                while raw.read(8 << 20):  # the one extra pass: a zip is otherwise read by its directory
                    pass
        else:
            gap = None if checking else 4 << 20  # hashing reads every byte; else seek over large members
            total = sum(archive.sizes)
            scanned = tarscan.scan(raw, archive.url, size=total, seek_gap=gap, drain=checking)
            members = Members(reporting(scanned, raw, listed))
            listing = Listing(members)
        if checking:
            check_sums(archive.part_urls, archive.names, raw.finish_hashes(), sums or {})
            listing.verified = True
    return listing


def chunk_size(archive: Archive) -> int:
    """Compressed bytes between seek points, 4 to 64 MiB (MOSEv2's 85 GB train: ~13 MB apart,
    ~350 MB per reader)."""
    if "spacing" in test_hooks():
        return int(test_hooks()["spacing"])
    return max(_MIN_CHUNK, min(_MAX_CHUNK, math.isqrt(sum(archive.sizes) * _SPACING_SCALE)))


# --- the saved listing and seek index -------------------------------------------------------------

_INDEXES: dict[str, bytes] = {}  # gzip seek indexes built or loaded in this process, by archive key


def load_or_scan(
    fs: Any,
    archive: Archive,
    cache: Any | None,
    sums: dict[str, str] | None,
    threads: int | None = None,
    listed: Listed | None = None,
) -> Listing:
    """The archive's listing from `cache` (a Store: OUT) when saved by an earlier run, else scanned
    now and saved there. A listing saved without checking is not reused when sums must be checked."""
    base = f"{CACHE_DIR}/{archive.key}"
    checking = bool(sums) and any(n in sums for n in archive.names)  # type: ignore[operator]
    if cache is not None and cache.exists(f"{base}.members"):
        listing = _load(cache, base, archive)
        if listing is not None and (listing.verified or not checking):
            log.info("%s: listing reused from %s", archive.url, cache.url_of(base))
            return listing
    listing = scan(fs, archive, sums, threads, cache, listed)
    if listing.index is not None:
        _remember(archive.key, listing.index)
    if cache is not None:
        _save(cache, base, listing, archive)
    return listing


def _save(cache: Any, base: str, listing: Listing, archive: Archive) -> None:
    if listing.index is not None:
        cache.write(f"{base}.gzidx", listing.index)  # before the listing: the listing says both are there
    try:
        data = members_bytes(listing)  # ~0.15 s for MOSEv2's 934k members
    except ValueError as exc:  # only a cache: a rerun lists the archive again
        log.warning("%s: listing not saved (%s)", archive.url, exc)
        return
    cache.write(f"{base}.members", data)
    if archive.kind == "tar.gz":
        discard_checkpoint(cache, archive)  # the listing is whole now


def _load(cache: Any, base: str, archive: Archive) -> Listing | None:
    try:
        listing = read_members(cache.read(f"{base}.members"))
        index = cache.read(f"{base}.gzidx") if archive.kind == "tar.gz" else None
    except Exception as exc:  # a damaged cache is rebuilt, never trusted: it is only a cache
        log.warning("%s: saved listing unreadable (%s); listing the archive again", archive.url, exc)
        return None
    listing.index = index
    if index is not None:
        _remember(archive.key, index)
    return listing


def _remember(key: str, index: bytes) -> None:
    while len(_INDEXES) >= 2:  # a worker reads one or two archives at a time; keep memory bounded
        _INDEXES.pop(next(iter(_INDEXES)))
    _INDEXES[key] = index


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
    index = _INDEXES.get(archive.key)
    if index is None:
        if cache is None:
            raise LayoutError(f"{archive.url}: no seek index in this process and no output to load it from")
        index = cache.read(f"{CACHE_DIR}/{archive.key}.gzidx")
        _remember(archive.key, index)
    # On one core a stretch decoded ahead would only take the converting thread's time.
    threads = min(_DECODERS, available_cores() - 1)
    return GzipRanges(lambda: archive.open(fs), index, chunk_size(archive), threads)
