"""Listing a .tar.gz: the one pass that finds the tar headers, builds the seek index and hashes the
parts, saving checkpoints on the way so a run killed while listing goes on from its last one.

A listing from the start decompresses with rapidgzip (parallel, fastest) and keeps the seek points it
passes (`gzindex.Capture`). Every `_EVERY` bytes of the tar it saves a checkpoint under
`OUT/.mose-shards/sources/<key>.partial/`: the members listed since the last one (Parquet), the seek
points passed since then (GZIDX), then `state.json`, written last, which names them with their
sha256 and says where to go on: the next tar header, the seek point before it, and the sha256 of
each part hashed whole. A rerun checks all of it against the archive (key, offsets, hashes) and goes
on from there; anything off, or any error while going on, and it lists from the start.

Going on: rapidgzip cannot start from an imported partial index (it takes it for the whole index and
decodes the rest as one chunk, in memory), and indexed_gzip, which can, decompressed at about 0.4x
rapidgzip's speed here. So the rerun hands rapidgzip a raw deflate stream made to rejoin the original
(`gzindex.rejoin_prefix`: a few KB that output the seek point's window, then the original bytes
from that point on, read through the same parts reader, hashed as they pass); the seek points it
finds are mapped back onto the original stream. Its CRC-32 is not checked (the stream is entered
midway); its length is, against the gzip trailer, and the parts' sha256 when there are sums.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core import tarscan
from ..core.errors import LayoutError, MissingDependencyError
from ..core.layout import listing_checkpoint
from .gzindex import Capture, Point, from_bytes, rejoin_prefix, to_bytes
from .listfile import Listing, Members, members_bytes, read_members
from .parts import ChecksumError, Listed, PartsFile, SeekableRaw, check_sums, reporting

if TYPE_CHECKING:
    from .archives import Archive

log = logging.getLogger(__name__)

# Tar bytes between checkpoints (by the tar's offsets, not the decoder's read-ahead: the same places in
# every run): at most this much is listed again after a kill.
_EVERY = 1 << 30
_FORMAT = 2  # bump when a checkpoint changes shape
_STATE = "state.json"
# Tests only: {"every": bytes between checkpoints, "spacing": bytes between seek points,
# "pause": a file to create after the first checkpoint, then wait there to be killed}.
TEST_HOOKS = "MOSE_SHARDS_TEST_LISTING"


def test_hooks() -> dict[str, Any]:
    hooks: dict[str, Any] = json.loads(os.environ.get(TEST_HOOKS) or "{}")
    return hooks


def available_cores() -> int:
    """The cores this process may run on (its affinity: `taskset`, a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_rapidgzip() -> Any:
    try:
        import rapidgzip
    except ImportError:
        raise MissingDependencyError("rapidgzip", "gzip") from None
    return rapidgzip


def scan_gzip(
    raw: PartsFile,
    archive: Archive,
    threads: int | None,
    sums: dict[str, str] | None,
    cache: Any | None,
    spacing: int,
    listed: Listed | None = None,
) -> Listing:
    """List a .tar.gz read from `raw`, checkpointed under `cache` (a Store: OUT; None: not at all);
    `listed` hears how far `raw` has been read."""
    if raw.read(2) != b"\x1f\x8b":
        raise LayoutError(f"{archive.part_urls[0]}: not gzip data (a .tar.gz must start with 1f 8b)")
    raw.seek(0)
    book = Checkpoints(cache, archive, spacing, sums) if cache is not None else None
    resume = book.load() if book is not None else None
    if resume is not None and book is not None:
        try:
            return _list(raw, archive, threads, sums, book, resume, spacing, listed)
        except ChecksumError:
            raise
        except LayoutError as exc:  # the archive or the checkpoint: listing from the start tells
            log.warning("%s: going on from the listing checkpoint failed (%s); listing from the start",
                        archive.url, exc)  # fmt: skip
            book.discard()
            raw.resume_hashes([None] * len(archive.paths), 0)
    return _list(raw, archive, threads, sums, book, None, spacing, listed)


def _list(
    raw: PartsFile,
    archive: Archive,
    threads: int | None,
    sums: dict[str, str] | None,
    book: Checkpoints | None,
    resume: Resume | None,
    spacing: int,
    listed: Listed | None,
) -> Listing:
    members = resume.members if resume is not None else Members()
    start = resume.start if resume is not None else 0
    reader: _Fresh | _Rejoined | None = None
    threads = threads or available_cores()  # nothing else runs while a split is listed
    try:
        if resume is None:
            reader = _Fresh(raw, threads, spacing, book is not None)
        else:
            log.info("%s: listing resumed from a checkpoint: %d members, the tar from byte %d "
                     "(decompressing from byte %d)", archive.url, len(members), start,
                     resume.point.offset)  # fmt: skip
            raw.resume_hashes(resume.digests, resume.point.bit // 8)
            reader = _Rejoined(raw, resume, threads, spacing, book is not None)
        found = tarscan.scan(reader, archive.url, seek_gap=None, drain=True, block=4 << 20, start=start)
        scanned = reporting(found, raw, listed)
        for member in scanned:
            members.append(member)
            if book is not None and member.following >= book.due:
                following = member.following
                book.save(members, following, reader.take(following), raw.part_digests())
        index = reader.index()
    except ChecksumError:
        raise
    except (LayoutError, RuntimeError, ValueError, OSError) as exc:
        raise _gzip_error(raw, archive, sums, exc) from None
    finally:
        if reader is not None:
            reader.close()
    log.info("%s: listed %d members; %d bytes decompressed, from byte %d of %d",
             archive.url, len(members), reader.pos - reader.origin, reader.origin, reader.pos)  # fmt: skip
    return Listing(members, index=index)


class _Fresh:
    """rapidgzip from the start of the stream; the seek points it passes are captured when checkpointed."""

    def __init__(self, raw: PartsFile, threads: int, spacing: int, capture: bool) -> None:
        self.gz = load_rapidgzip().RapidgzipFile(raw, parallelization=threads, chunk_size=spacing)
        self.capture = Capture(self.gz) if capture else None
        self.origin = 0
        self.pos = 0

    def read(self, size: int) -> bytes:
        data: bytes = self.capture.read(size) if self.capture is not None else self.gz.read(size)
        self.pos += len(data)
        return data

    def take(self, upto: int) -> list[Point]:
        return self.capture.take(upto) if self.capture is not None else []

    def index(self) -> bytes:
        buffer = io.BytesIO()
        self.gz.export_index(buffer)
        return buffer.getvalue()

    def close(self) -> None:
        self.gz.close()


class _Rejoined:
    """rapidgzip going on from a checkpoint's seek point, through a stream that rejoins the original."""

    def __init__(self, raw: PartsFile, resume: Resume, threads: int, spacing: int, capture: bool) -> None:
        point = resume.point
        head, low = rejoin_prefix(point)
        self.file = _RejoinedFile(raw, head, low, point.bit)
        self.spacing = spacing
        self.out_shift = point.offset - len(point.window)  # original offset = rejoined offset + this
        self.bit_shift = 8 * (point.bit // 8 - len(head))
        self.last = resume.last  # the points up to here are saved already
        self.resume, self.raw = resume, raw
        self.gz = load_rapidgzip().RapidgzipFile(self.file, parallelization=threads, chunk_size=spacing)
        self.gz.seek(resume.start - self.out_shift)
        self.capture = Capture(self.gz) if capture else None
        if self.capture is not None:
            self.capture.pos = resume.start - self.out_shift
        self.origin = point.offset
        self.pos = resume.start

    def read(self, size: int) -> bytes:
        data: bytes = self.capture.read(size) if self.capture is not None else self.gz.read(size)
        self.pos += len(data)
        return data

    def _mapped(self, points: list[Point]) -> list[Point]:
        mapped = [Point(p.bit + self.bit_shift, p.offset + self.out_shift, p.window) for p in points]
        mapped = [p for p in mapped if p.offset > self.last]
        if mapped:
            self.last = mapped[-1].offset
        return mapped

    def take(self, upto: int) -> list[Point]:
        return self._mapped(self.capture.take(upto - self.out_shift)) if self.capture is not None else []

    def index(self) -> bytes:
        trailer = self.raw.total - 8
        self.raw.seek(trailer)
        size = int.from_bytes(self.raw.read(8)[4:], "little")
        if size != self.pos % (1 << 32):  # also a stream of several gzip members: listed from the start
            raise LayoutError(f"the gzip stream's length ({self.pos}) is not the one its trailer gives")
        buffer = io.BytesIO()
        self.gz.export_index(buffer)
        exported, _ = from_bytes(buffer.getvalue())
        # The end: after the trailer, as rapidgzip marks it (the stream it read ended before the trailer).
        points = [*self.resume.saved(), *(p for p in self._mapped(exported) if p.offset < self.pos)]
        points.append(Point(8 * self.raw.total, self.pos, b""))
        return to_bytes(points, self.raw.total, self.pos, self.spacing)

    def close(self) -> None:
        self.gz.close()


class _RejoinedFile(SeekableRaw):
    """The prefix, then the original compressed bytes from `byte` to the gzip trailer (not included);
    the byte where they meet holds the prefix's last bits below the original's."""

    def __init__(self, raw: PartsFile, head: bytes, low: int, bit: int) -> None:
        super().__init__()
        self.raw, self.head, self.byte = raw, head, bit // 8
        self.keep = (1 << bit % 8) - 1  # the low bits of the meeting byte that come from the prefix
        self.low = low & self.keep
        self.size = len(head) + raw.total - 8 - self.byte
        self.pos = 0

    def end(self) -> int:
        return self.size

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self.size - self.pos)
        if want <= 0:
            return 0
        done = 0
        if self.pos < len(self.head):
            part = self.head[self.pos : self.pos + want]
            view[: len(part)] = part
            done = len(part)
        if done < want:
            original = self.byte + self.pos + done - len(self.head)
            self.raw.seek(original)
            got = self.raw.readinto(view[done:want])
            if original == self.byte and got:  # the byte where prefix and original meet
                view[done] = self.low | (view[done] & (0xFF ^ self.keep))
            done += got
        self.pos += done
        return done


def _gzip_error(raw: PartsFile, archive: Archive, sums: dict[str, str] | None, exc: Exception) -> LayoutError:
    """Name the part at fault: by checksum when there are sums, else the part being read."""
    if sums:
        check_sums(archive.part_urls, archive.names, raw.finish_hashes(), sums)
    index = raw.part_at(max(0, raw.frontier - 1))
    last = index == len(archive.paths) - 1 and raw.frontier >= raw.total
    text = _reason(exc)
    if isinstance(exc, LayoutError) and not last:
        return exc
    if "Mismatching" in text:  # the trailer was read: the stream is whole but its bytes are not
        where = archive.url if len(archive.paths) == 1 else f"{archive.url}.* ({', '.join(archive.names)})"
        return LayoutError(f"{where}: damaged gzip data ({text}); check the parts against their checksums")
    if last:
        return LayoutError(f"{archive.part_urls[index]}: truncated (the gzip stream ends early: {text})")
    return LayoutError(f"{archive.part_urls[index]}: damaged gzip data ({text})")


def _reason(exc: Exception) -> str:
    """The decoder's message, short: without its [Wrapper][Thread N] prefixes and bit positions."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"^(\[[^\]]*\]\s*)+", "", text)
    text = re.sub(r"Decoding failed with error code -?\d+: ", "", text)
    return text.split("!")[0].strip()[:100]


# --- checkpoints ----------------------------------------------------------------------------------


@dataclass
class Resume:
    """A checkpoint found valid: where a listing goes on."""

    members: Members
    start: int  # the next tar header
    point: Point  # the seek point to decompress from (at or before `start`)
    last: int  # the uncompressed offset of the last seek point saved
    digests: list[str | None]  # each part's sha256 once hashed whole
    book: Checkpoints

    def saved(self) -> list[Point]:
        """Every seek point saved by the checkpoints (read again: kept out of memory until the end)."""
        return [p for segment in self.book.segments for p in from_bytes(self.book.read(segment, 1))[0]]


class Checkpoints:
    """The listing checkpoints of one archive under OUT/.mose-shards/sources/<key>.partial/."""

    def __init__(self, cache: Any, archive: Archive, spacing: int, sums: dict[str, str] | None) -> None:
        self.cache, self.archive, self.spacing, self.sums = cache, archive, spacing, sums
        self.folder = listing_checkpoint(archive.key)
        self.every = int(test_hooks().get("every", _EVERY))
        self.due = self.every
        self.segments: list[dict[str, Any]] = []
        self.saved_members = 0
        self.resume_at: tuple[int, int] | None = None  # (bit, offset) of the point to go on from

    def read(self, segment: dict[str, Any], which: int) -> bytes:
        """A segment's members (0) or points (1) file, checked against its sha256."""
        data: bytes = self.cache.read(f"{self.folder}/{segment['files'][which]}")
        if hashlib.sha256(data).hexdigest() != segment["sha256"][which]:
            raise ValueError(f"{segment['files'][which]} is not the file the checkpoint saved")
        return data

    def save(self, members: Members, start: int, points: list[Point], digests: list[str | None]) -> None:
        """A checkpoint at tar header `start`: the members and seek points since the last one."""
        if self.sums:  # a part hashed whole is checked now: a bad first part stops the run early
            check_sums(self.archive.part_urls, self.archive.names, digests, self.sums)
        if points:  # the newest seek point
            self.resume_at = (points[-1].bit, points[-1].offset)
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
                 "digests": digests, "segments": self.segments}  # fmt: skip
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
        at = tuple(state["point"])
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
        self.resume_at = (point.bit, point.offset)
        return Resume(members, start, point, last, _before(digests, self.archive.sizes, point.bit // 8), self)

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
