"""The checkpoints of a .tar.gz listing, under `OUT/.mose-shards/sources/<key>.partial/`.

Every `EVERY` bytes of the tar the listing (`gzlist`) saves the members listed since the last
checkpoint (`listfile`), the seek points passed since then (GZIDX), then `state.json`, written last,
which names them with their sha256 and says where to go on: the next tar header, the seek point
before it, and the sha256 of each part hashed whole. A rerun checks all of it against the archive
(key, offsets, hashes); a checkpoint that is damaged or does not add up is deleted, never trusted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.layout import listing_checkpoint
from .gzindex import Point, from_bytes, to_bytes
from .listfile import Listing, Members, members_bytes, read_members
from .parts import check_sums

if TYPE_CHECKING:
    from .archive import Archive

log = logging.getLogger(__name__)

# Tar bytes between checkpoints (by the tar's offsets, not the decoder's read-ahead: the same places in
# every run): at most this much is listed again after a kill.
EVERY = 1 << 30
_FORMAT = 3  # bump when a checkpoint changes shape
_STATE = "state.json"
# Tests only: {"every": bytes between checkpoints, "spacing": bytes between seek points,
# "pause": a file to create after the first checkpoint, then wait there to be killed}.
TEST_HOOKS = "MOSE_SHARDS_TEST_LISTING"


def test_hooks() -> dict[str, Any]:
    hooks: dict[str, Any] = json.loads(os.environ.get(TEST_HOOKS) or "{}")
    return hooks


@dataclass
class Resume:
    """A checkpoint found valid: where a listing goes on."""

    members: Members
    start: int  # the next tar header
    point: Point  # the seek point to decompress from (at or before `start`)
    last: int  # the uncompressed offset of the last seek point saved
    digests: list[str | None]  # each part's sha256 once hashed whole
    book: Checkpoints
    crc: int  # the CRC-32 of the uncompressed stream before `point`

    def saved(self) -> list[Point]:
        """Every seek point saved by the checkpoints (read again: kept out of memory until the end)."""
        return [p for segment in self.book.segments for p in from_bytes(self.book.read(segment, 1))[0]]


class Checkpoints:
    """The listing checkpoints of one archive under OUT/.mose-shards/sources/<key>.partial/."""

    def __init__(self, cache: Any, archive: Archive, spacing: int, sums: dict[str, str] | None) -> None:
        self.cache, self.archive, self.spacing, self.sums = cache, archive, spacing, sums
        self.folder = listing_checkpoint(archive.key)
        self.every = int(test_hooks().get("every", EVERY))
        self.due = self.every
        self.segments: list[dict[str, Any]] = []
        self.saved_members = 0
        self.resume_at: tuple[int, int] | None = None  # (bit, offset) of the point to go on from
        self.resume_crc = 0  # the CRC-32 of the stream before that point

    def read(self, segment: dict[str, Any], which: int) -> bytes:
        """A segment's members (0) or points (1) file, checked against its sha256."""
        data: bytes = self.cache.read(f"{self.folder}/{segment['files'][which]}")
        if hashlib.sha256(data).hexdigest() != segment["sha256"][which]:
            raise ValueError(f"{segment['files'][which]} is not the file the checkpoint saved")
        return data

    def save(
        self, members: Members, start: int, points: list[Point], digests: list[str | None], crc: int | None
    ) -> None:
        """A checkpoint at tar header `start`: the members and seek points since the last one (`crc`:
        the CRC-32 of the stream before the last of those points)."""
        if self.sums:  # a part hashed whole is checked now: a bad first part stops the run early
            check_sums(self.archive.part_urls, self.archive.names, digests, self.sums)
        if points and crc is not None:  # the newest seek point
            self.resume_at, self.resume_crc = (points[-1].bit, points[-1].offset), crc
        if self.resume_at is None:
            return  # no seek point passed yet
        digests = _before(digests, self.archive.sizes, self.resume_at[0] // 8)
        number = len(self.segments) + 1
        files = [f"members-{number:06d}.members", f"points-{number:06d}.gzidx"]
        blobs = [
            members_bytes(Listing(members[self.saved_members :])),
            to_bytes(points, sum(self.archive.sizes), 0, self.spacing),
        ]
        # Not fsynced (a checkpoint a power loss tears is caught by its hashes and dropped), but
        # renamed into place whole, the segments before the state that names them.
        self.cache.write_many(
            {f"{self.folder}/{name}": data for name, data in zip(files, blobs, strict=True)}
        )
        segment = {"files": files, "sha256": [hashlib.sha256(b).hexdigest() for b in blobs],
                   "members": len(members) - self.saved_members, "points": len(points)}  # fmt: skip
        self.segments.append(segment)
        state = {"format": _FORMAT, "key": self.archive.key, "start": start, "point": self.resume_at,
                 "crc": self.resume_crc, "digests": digests, "segments": self.segments}  # fmt: skip
        self.cache.write_many({f"{self.folder}/{_STATE}": json.dumps(state).encode()})
        self.saved_members = len(members)
        self.due = start + self.every
        log.debug("%s: listing checkpoint %d at tar byte %d (%d members)", self.archive.url, number, start,
                  len(members))  # fmt: skip
        if number == 1 and "pause" in test_hooks():
            with open(test_hooks()["pause"], "w"):
                pass
            threading.Event().wait()  # until killed: the test's moment to kill -9 while listing

    def load(self) -> Resume | None:
        """The saved checkpoint when it is whole and fits the archive, else None (and it is discarded)."""
        if not self.cache.exists(f"{self.folder}/{_STATE}"):
            return None
        try:
            resume = self._load()
        except Exception as exc:  # only a cache: anything off is listed again, never trusted
            log.warning("%s: listing checkpoint unusable (%s); listing from the start", self.archive.url, exc)
            self.discard()
            return None
        log.debug("%s: listing checkpoint valid", self.archive.url)
        return resume

    def _load(self) -> Resume:
        state = json.loads(self.cache.read(f"{self.folder}/{_STATE}"))
        if state.get("format") != _FORMAT or state.get("key") != self.archive.key:
            raise ValueError("made for another archive or by another version")
        start, digests, segments = int(state["start"]), list(state["digests"]), list(state["segments"])
        if len(digests) != len(self.archive.paths) or not segments:
            raise ValueError("parts do not match")
        at, crc = tuple(state["point"]), int(state["crc"])
        if not 0 <= crc < 1 << 32:
            raise ValueError("the CRC-32 is not one")
        members = Members()
        first = point = None
        last = -1
        for segment in segments:
            listed = read_members(self.read(segment, 0))
            if len(listed.members) != segment["members"]:
                raise ValueError("member count does not match")
            members += listed.members
            for candidate in from_bytes(self.read(segment, 1))[0]:
                if candidate.offset <= last:
                    raise ValueError("seek points out of order")
                first, last = first or candidate, candidate.offset
                if (candidate.bit, candidate.offset) == at:
                    point = candidate
        previous = -1
        for member in members:
            if member.offset <= previous:
                raise ValueError("members out of order")
            previous = member.offset
        if not members or members[-1].following != start:
            raise ValueError("the members do not end where the checkpoint goes on")
        if first is None or first.offset != 0 or point is None or last > start:
            raise ValueError("no seek point at the start of the stream, or none to go on from")
        if point.bit // 8 >= sum(self.archive.sizes) - 8:
            raise ValueError("the seek point to go on from is not one")
        if any(d is not None and (len(d) != 64 or d.strip("0123456789abcdef")) for d in digests):
            raise ValueError("a part's sha256 is not one")
        self.segments = segments
        self.saved_members = len(members)
        self.due = start + self.every
        self.resume_at, self.resume_crc = (point.bit, point.offset), crc
        digests = _before(digests, self.archive.sizes, point.bit // 8)
        return Resume(members, start, point, last, digests, self, crc)

    def discard(self) -> None:
        """Delete the checkpoint (a finished listing, or one not to be trusted)."""
        self.segments, self.saved_members = [], 0
        self.cache.delete(self.folder, recursive=True)


def _before(digests: list[str | None], sizes: tuple[int, ...], byte: int) -> list[str | None]:
    """The digests of the parts wholly before compressed byte `byte` (a rerun reads on from there:
    a part after it, hashed whole by the decoder's read-ahead, is read and hashed again)."""
    ends = [sum(sizes[: i + 1]) for i in range(len(digests))]
    return [d if end <= byte else None for d, end in zip(digests, ends, strict=True)]


def discard(cache: Any, archive: Archive) -> None:
    """Delete an archive's listing checkpoint, if any (its listing is saved whole)."""
    cache.delete(listing_checkpoint(archive.key), recursive=True)
