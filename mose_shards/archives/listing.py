"""Listing an archive of a source: its members (name, data offset, size), saved for the next run.

Reading a member later needs only its offset. A plain `.tar` and a `.zip` are read in place by byte
range. gzip is not seekable, so the one pass that lists a `.tar.gz` (it must decompress everything to
find the headers) also builds a seek index with rapidgzip: one checkpoint (a 32 KiB window) every few
MiB of compressed data. Conversion workers then decompress only their own byte ranges, starting from
the nearest checkpoint (`members`). The listing and the index are saved under
`OUT/.mose-shards/sources/`, keyed by every part's name, size and mtime/ETag (`archive.Archive.key`),
so a rerun (after a kill too) neither lists nor decompresses the archive again, and a changed archive
is never taken for the old one. A `.tar.gz` listing saves checkpoints as it goes (`gzlist`): a run
killed while listing goes on from the last one.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from ..core import tarscan
from ..core.errors import LayoutError
from ..core.layout import SOURCES_DIR as CACHE_DIR
from .archive import Archive
from .gzcheckpoints import discard as discard_checkpoint
from .gzcheckpoints import test_hooks
from .gzlist import scan_gzip
from .listfile import Listing, Members, members_bytes, read_members
from .parts import Listed, check_sums, reporting
from .zipsource import scan_zip

log = logging.getLogger(__name__)

# Seek points C compressed bytes apart. A reader holds the whole index (~33 KiB a point on JPEG
# data: size / C points) and up to ~11 stretches of C (gzseek: kept, queued, decoding), and a task
# decodes up to C it does not need where its runs of members start. C = sqrt(size * 2 KiB)
# keeps both memory terms and that waste growing as the square root of the archive: MOSEv2's 85 GB
# train, 13 MB apart: ~210 MB of index plus ~140 MB of stretches per reader. At least 4 MiB: the
# listing decodes a chunk between two points per rapidgzip task, and its two threads listed a 70 MB
# archive at 275 MB/s with 1 MiB chunks against 369 with 4 MiB (benchmarks/archives.py).
_SPACING_SCALE = 2048
_MIN_CHUNK, _MAX_CHUNK = 4 << 20, 64 << 20


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


def seek_index(archive: Archive, cache: Any | None) -> bytes:
    """A .tar.gz's seek index: built or loaded by this process, else read from `cache` (OUT)."""
    index = _INDEXES.get(archive.key)
    if index is None:
        if cache is None:
            raise LayoutError(f"{archive.url}: no seek index in this process and no output to load it from")
        index = cache.read(f"{CACHE_DIR}/{archive.key}.gzidx")
        _remember(archive.key, index)
    return index
