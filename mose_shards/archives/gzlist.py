"""Listing a .tar.gz: the one pass that finds the tar headers, builds the seek index and hashes the
parts, saving checkpoints on the way so a run killed while listing goes on from its last one.

A listing from the start decompresses with rapidgzip (parallel, fastest) and keeps the seek points it
passes (`gzindex.Capture`). Every `EVERY` bytes of the tar it saves a checkpoint (`gzcheckpoints`);
a rerun checks it against the archive and goes on from there; anything off, or any error while
going on, and it lists from the start.

Going on: rapidgzip cannot start from an imported partial index (it takes it for the whole index and
decodes the rest as one chunk, in memory), and indexed_gzip, which can, decompressed at about 0.4x
rapidgzip's speed here. So the rerun hands rapidgzip a raw deflate stream made to rejoin the original
(`gzindex.rejoin_prefix`: a few KB that output the seek point's window, then the original bytes
from that point on, read through the same parts reader, hashed as they pass); the seek points it
finds are mapped back onto the original stream. Its CRC-32 is not checked (the stream is entered
midway); its length is, against the gzip trailer, and the parts' sha256 when there are sums.
"""

from __future__ import annotations

import io
import logging
import re
from typing import TYPE_CHECKING, Any

from ..core import tarscan
from ..core.cores import available_cores
from ..core.errors import LayoutError
from .gzcheckpoints import Checkpoints, Resume
from .gzindex import Capture, Point, from_bytes, load_rapidgzip, rejoin_prefix, to_bytes
from .listfile import Listing, Members
from .parts import ChecksumError, Listed, PartsFile, SeekableRaw, check_sums, reporting

if TYPE_CHECKING:
    from .archive import Archive

log = logging.getLogger(__name__)


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
            reader = _Rejoined(raw, resume, threads, spacing)
        found = tarscan.scan(reader, archive.url, seek_gap=None, drain=True, block=4 << 20, start=start)
        scanned = reporting(found, raw, listed)
        for member in scanned:
            members.append(member)
            if book is not None and member.following >= book.due:
                following = member.following
                points = reader.take(following)
                book.save(members, following, points, raw.part_digests(), reader.taken_crc())
        index = reader.index()
    except ChecksumError:
        raise
    except (LayoutError, RuntimeError, ValueError, OSError) as exc:
        raise _gzip_error(raw, archive, sums, exc, reader.pos if reader is not None else -1) from None
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

    def taken_crc(self) -> int | None:
        """The CRC-32 of the stream before the last point taken."""
        return self.capture.taken_crc if self.capture is not None else None

    def index(self) -> bytes:
        buffer = io.BytesIO()
        self.gz.export_index(buffer)
        return buffer.getvalue()

    def close(self) -> None:
        self.gz.close()


class _Rejoined:
    """rapidgzip going on from a checkpoint's seek point, through a stream that rejoins the original;
    the bytes from the point on are read through a Capture, which goes on with the CRC-32 the
    checkpoint saved for the point: the gzip trailer's is checked at the end."""

    def __init__(self, raw: PartsFile, resume: Resume, threads: int, spacing: int) -> None:
        point = resume.point
        head, low = rejoin_prefix(point)
        self.file = _RejoinedFile(raw, head, low, point.bit)
        self.spacing = spacing
        self.out_shift = point.offset - len(point.window)  # original offset = rejoined offset + this
        self.bit_shift = 8 * (point.bit // 8 - len(head))
        self.last = resume.last  # the points up to here are saved already
        self.resume, self.raw = resume, raw
        self.gz = load_rapidgzip().RapidgzipFile(self.file, parallelization=threads, chunk_size=spacing)
        self.gz.seek(len(point.window))  # the window, output by the prefix, is not the stream's
        self.capture = Capture(self.gz, pos=len(point.window), crc=resume.crc, tail=point.window)
        while self.capture.pos < resume.start - self.out_shift:  # to the next header, for the CRC-32
            if not self.capture.read(min(4 << 20, resume.start - self.out_shift - self.capture.pos)):
                raise LayoutError(f"the gzip stream ends before {resume.start}, where the checkpoint goes on")
        self.origin = point.offset
        self.pos = resume.start

    def read(self, size: int) -> bytes:
        data: bytes = self.capture.read(size)
        self.pos += len(data)
        return data

    def taken_crc(self) -> int | None:
        return self.capture.taken_crc

    def _mapped(self, points: list[Point]) -> list[Point]:
        mapped = [Point(p.bit + self.bit_shift, p.offset + self.out_shift, p.window) for p in points]
        mapped = [p for p in mapped if p.offset > self.last]
        if mapped:
            self.last = mapped[-1].offset
        return mapped

    def take(self, upto: int) -> list[Point]:
        return self._mapped(self.capture.take(upto - self.out_shift))

    def index(self) -> bytes:
        trailer = self.raw.total - 8
        self.raw.seek(trailer)
        trailer_bytes = self.raw.read(8)
        crc, size = int.from_bytes(trailer_bytes[:4], "little"), int.from_bytes(trailer_bytes[4:], "little")
        if size != self.pos % (1 << 32):  # also a stream of several gzip members: listed from the start
            raise LayoutError(f"the gzip stream's length ({self.pos}) is not the one its trailer gives")
        if crc != self.capture.crc:  # a rerun lists from the start, where rapidgzip names the fault
            raise LayoutError("the gzip stream's CRC-32 is not the one its trailer gives")
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


def _gzip_error(
    raw: PartsFile, archive: Archive, sums: dict[str, str] | None, exc: Exception, decoded: int
) -> LayoutError:
    """Name the part at fault: by checksum when there are sums, else the part being read; a tar
    cut short inside a whole gzip stream (its trailer gives the length decoded) is the tar's fault."""
    if sums:
        check_sums(archive.part_urls, archive.names, raw.finish_hashes(), sums)
    whole = isinstance(exc, tarscan.Truncated) and _trailer_length(raw) == decoded % (1 << 32)
    index = raw.part_at(max(0, raw.frontier - 1))
    last = index == len(archive.paths) - 1 and raw.frontier >= raw.total
    text = str(exc).removeprefix(f"{archive.url}: ") if isinstance(exc, LayoutError) else _reason(exc)
    if isinstance(exc, LayoutError) and not (last and isinstance(exc, tarscan.Truncated) and not whole):
        return exc  # the tar inside is at fault (a bad header, a sparse member, a whole gzip of a cut tar)
    if "Mismatching" in text or "its trailer gives" in text:  # the stream is whole, its bytes are not
        where = archive.url if len(archive.paths) == 1 else f"{archive.url}.* ({', '.join(archive.names)})"
        return LayoutError(f"{where}: damaged gzip data ({text}); check the parts against their checksums")
    if last:
        return LayoutError(f"{archive.part_urls[index]}: truncated (the gzip stream ends early: {text})")
    return LayoutError(f"{archive.part_urls[index]}: damaged gzip data ({text})")


def _trailer_length(raw: PartsFile) -> int | None:
    """The uncompressed length (mod 2**32) the gzip trailer gives."""
    try:
        raw.seek(raw.total - 8)
        trailer = raw.read(8)
    except (OSError, ValueError):
        return None
    return int.from_bytes(trailer[4:], "little") if len(trailer) == 8 else None


def _reason(exc: Exception) -> str:
    """The decoder's message, short: without its [Wrapper][Thread N] prefixes and bit positions."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = re.sub(r"^(\[[^\]]*\]\s*)+", "", text)
    text = re.sub(r"Decoding failed with error code -?\d+: ", "", text)
    return text.split("!")[0].strip()[:100]
