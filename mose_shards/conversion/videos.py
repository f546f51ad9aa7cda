"""Source videos as discovery hands them to planning and to the tasks: files as columns.

A MOSEv2-size source has ~470k frames and ~1.3M files, and the parent holds the plan of all of them
for the whole run. One object per file (a `Blob` with its path string and int objects, a `Frame`
per frame) cost ~820 bytes a frame. So a video keeps each kind of file as columns: the folder once,
file names interned (`00000.jpg` repeats in every video), sizes and offsets in arrays. `Blob` and
`Frame` objects are built only when a task reads the video (`SourceVideo.frames`).
"""

from __future__ import annotations

import functools
import posixpath
import sys
from array import array
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.layout import name_problem

if TYPE_CHECKING:
    from ..archives import Archive

FRAME_EXTENSIONS = (".jpg", ".jpeg")
MASK_EXTENSIONS = (".png",)

Codec = tuple[int, int, int, int]  # a zip member: method, packed size, CRC-32, header


@dataclass(frozen=True, slots=True)
class Blob:
    """Where one source file's bytes are: a file, or a range of an archive."""

    path: str  # filesystem path of the file or of the archive
    size: int
    offset: int | None = None  # data offset inside the archive (a zip member: its local header)
    display: str = ""  # the name used in messages; an archive member's name (shown after the archive's URL)
    version: str = ""  # ETag or mtime from the listing (storage.version_of); '' inside an archive
    archive: Archive | None = None  # the archive holding the bytes, None for a plain file
    codec: Codec | None = None

    def __str__(self) -> str:
        return _shown(self.archive, self.display or self.path)


def _shown(archive: Archive | None, display: str) -> str:
    # Derived, not stored: an archive member is named by the archive's URL and its member name.
    return f"{archive.url}:{display}" if archive is not None and display else display


@dataclass(frozen=True, slots=True)
class Frame:
    name: str
    jpg: Blob
    png: Blob | None


@dataclass(frozen=True, slots=True)
class Files:
    """One kind of file (frames or masks) of one video, column by column; `blob(i)` is file i."""

    folder: str  # the folder holding them (a plain file's path is folder/name)
    shown: str  # what names them in messages before the file name: URL/folder/, or the member folder/
    names: tuple[str, ...]  # file names, interned
    sizes: array[int]
    offsets: array[int] | None = None  # data offsets in the archive; None for plain files
    versions: tuple[str, ...] | None = None  # ETag or mtime per plain file; None inside an archive
    codecs: tuple[Codec | None, ...] | None = None  # zip members
    archive: Archive | None = None

    def __len__(self) -> int:
        return len(self.names)

    def blob(self, i: int) -> Blob:
        name = self.names[i]
        return Blob(
            self.archive.paths[0] if self.archive is not None else f"{self.folder}/{name}",
            self.sizes[i],
            None if self.offsets is None else self.offsets[i],
            self.shown + name,
            "" if self.versions is None else self.versions[i],
            self.archive,
            None if self.codecs is None else self.codecs[i],
        )

    def version(self, i: int) -> str:
        return "" if self.versions is None else self.versions[i]

    def show(self, i: int) -> str:
        """File i as messages name it (the same as str(self.blob(i)))."""
        return _shown(self.archive, self.shown + self.names[i])

    def take(self, order: list[int]) -> Files:
        """These files in another order (or a subset)."""
        return Files(
            self.folder,
            self.shown,
            tuple(self.names[i] for i in order),
            array("q", (self.sizes[i] for i in order)),
            None if self.offsets is None else array("q", (self.offsets[i] for i in order)),
            None if self.versions is None else tuple(self.versions[i] for i in order),
            None if self.codecs is None else tuple(self.codecs[i] for i in order),
            self.archive,
        )


def no_files() -> Files:
    return Files("", "", (), array("q"))


@dataclass(frozen=True, slots=True)
class SourceVideo:
    split: str
    video_id: str
    names: tuple[str, ...]  # frame names (file names without extension), in frame order
    jpgs: Files  # frame i's JPEG is jpgs.blob(i)
    pngs: Files  # the masks there are, in frame order
    masked: array[int] | None = None  # the frame index of each mask; None: every frame has one
    categories: tuple[tuple[int, str], ...] = ()

    @property
    def num_frames(self) -> int:
        return len(self.names)

    def mask_of(self) -> list[int | None]:
        """Per frame, the index of its mask in `pngs`, or None."""
        if self.masked is None:
            return list(range(len(self.names)))
        out: list[int | None] = [None] * len(self.names)
        for index, frame in enumerate(self.masked):
            out[frame] = index
        return out

    @property
    def frames(self) -> tuple[Frame, ...]:
        """One Frame per frame, built now (a task's view of the video)."""
        jpgs, pngs = self.jpgs, self.pngs
        masks = self.mask_of()
        return tuple(
            Frame(name, jpgs.blob(i), None if masks[i] is None else pngs.blob(masks[i]))  # type: ignore[arg-type]
            for i, name in enumerate(self.names)
        )


class Gathered:
    """The files of one kind of one video as the listing gives them (any order), before pairing."""

    __slots__ = ("folder", "shown", "archive", "names", "sizes", "offsets", "versions", "codecs", "elsewhere")

    def __init__(self, folder: str, shown: str, archive: Archive | None) -> None:
        self.folder, self.shown, self.archive = folder, shown, archive
        self.names: list[str] = []
        self.sizes = array("q")
        self.offsets: array[int] | None = None
        self.versions: list[str] | None = None
        self.codecs: list[Codec | None] | None = None
        self.elsewhere: str | None = None  # a file of this video found in another folder

    def add(self, name: str, size: int, offset: int | None, version: str, codec: Codec | None) -> None:
        count = len(self.names)
        self.names.append(sys.intern(name))
        self.sizes.append(size)
        if offset is not None:
            if self.offsets is None:
                self.offsets = array("q", bytes(8 * count))
            self.offsets.append(offset)
        elif self.offsets is not None:
            self.offsets.append(0)
        if version or self.versions is not None:
            if self.versions is None:
                self.versions = [""] * count
            self.versions.append(version)
        if codec is not None or self.codecs is not None:
            if self.codecs is None:
                self.codecs = [None] * count
            self.codecs.append(codec)

    def files(self) -> Files:
        return Files(
            self.folder,
            self.shown,
            tuple(self.names),
            self.sizes,
            self.offsets,
            None if self.versions is None else tuple(self.versions),
            None if self.codecs is None else tuple(self.codecs),
            self.archive,
        )


def _twice(files: Files, first: int, second: int) -> str:
    where = files.show(second)
    if files.offsets is None:
        return f"{where}: listed twice"
    at = f"at bytes {files.offsets[first]} and {files.offsets[second]}"
    return f"{where}: two members of this name ({at}); refusing to pick one"


@functools.lru_cache(maxsize=1 << 16)
def _frame_key(file_name: str, exts: tuple[str, ...]) -> tuple[str, int | None, bool]:
    """(stem, frame number or None, extension ok) of a file name; cached: names repeat across videos."""
    stem, ext = posixpath.splitext(file_name)
    return sys.intern(stem), int(stem) if stem.isdigit() else None, ext.lower() in exts


def pair(
    split: str, video_id: str, jpgs: Gathered | None, pngs: Gathered | None, where: str
) -> tuple[SourceVideo | None, list[str]]:
    """Pair each JPEG with its mask by frame name and order frames numerically: the video, or every
    problem found (then no video)."""
    problems: list[str] = []
    unfit = name_problem(video_id)
    if unfit is not None:  # refused before any of its files is read: the other commands cannot carry it
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in where)  # one line, whatever the name
        return None, [f"{shown}: {unfit}"]
    found: dict[str, dict[int, int]] = {}  # kind -> frame number -> file index
    listed: dict[str, Files] = {}  # kind -> its files, in listing order
    for kind, gathered, exts in (("frame", jpgs, FRAME_EXTENSIONS), ("mask", pngs, MASK_EXTENSIONS)):
        files = listed[kind] = gathered.files() if gathered is not None else no_files()
        seen: dict[int, int] = {}
        # A name listed twice (a tar or zip may hold a member twice; extracting would keep the last
        # one silently): refused, even with the same bytes, since either choice would be a guess.
        latest: dict[str, int] = {}
        for i, name in enumerate(files.names):
            if name in latest:
                problems.append(_twice(files, latest[name], i))
            latest[name] = i
        for name, i in sorted(latest.items()):
            stem, number, ok_ext = _frame_key(name, exts)
            if not ok_ext:
                problems.append(f"{files.show(i)}: not a {kind} file (expected {' or '.join(exts)})")
            elif number is None:
                problems.append(f"{files.show(i)}: frame name {stem!r} is not numeric")
            elif number in seen:
                also = files.show(seen[number])
                problems.append(f"{files.show(i)}: duplicate frame number {number} (also {also})")
            else:
                seen[number] = i
        found[kind] = seen
        if gathered is not None and gathered.elsewhere is not None:
            problems.append(f"{where}: files of this video in two folders ({gathered.elsewhere})")
    frames, masks = found["frame"], found["mask"]
    pngs_files = listed["mask"]
    for number, i in sorted(masks.items()):
        if number not in frames:
            problems.append(f"{pngs_files.show(i)}: mask without a frame (no matching .jpg)")
    if not listed["frame"].names and not problems:
        problems.append(f"{where}: empty video folder (no .jpg frames)")
    if problems:
        return None, problems
    numbers = sorted(frames)
    jpg_files = listed["frame"].take([frames[n] for n in numbers])
    names = tuple(_frame_key(name, FRAME_EXTENSIONS)[0] for name in jpg_files.names)
    masked_numbers = [n for n in numbers if n in masks]
    png_files = pngs_files.take([masks[n] for n in masked_numbers])
    every = len(masked_numbers) == len(numbers)
    position = {n: index for index, n in enumerate(numbers)}
    masked = None if every else array("i", (position[n] for n in masked_numbers))
    return SourceVideo(split, video_id, names, jpg_files, png_files, masked), []
