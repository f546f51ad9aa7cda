"""Hostile and broken archives (issue 20), each built here in a few KB: headers that would loop, a
tar cut short, members that inflate to 2 GiB, duplicates, zip directories that lie. Every one ends
within the timeout with one line naming the file, exit 1, nothing committed and a peak under 1 GB;
`--on-error skip` skips a video for a member-level problem and stops for archive damage."""

from __future__ import annotations

import contextlib
import gzip
import io
import itertools
import json
import signal
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from pathlib import Path

import fsspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mose_shards.archives import Archive
from mose_shards.archives.listing import scan as archive_scan
from mose_shards.archives.zipsource import scan_zip
from mose_shards.core import tarscan
from mose_shards.core.errors import DataError, LayoutError
from mose_shards.synth import SynthSpec, generate

from . import hostile as h

SPEC = SynthSpec(videos=2, frames=3, size=(32, 24), seed=5, splits=("train",))
LIMIT = 1 << 30  # the peak memory every case must stay under


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """The raw tree's files as (member name, bytes): train/JPEGImages/<video>/00000.jpg, ..."""
    return h.tree_files(generate(tmp_path_factory.mktemp("raw") / "raw", spec=SPEC) / "train")


def _frames(files: list[tuple[str, bytes]]) -> list[str]:
    return [name for name, _ in files if name.endswith(".jpg")]


def _refused(run: h.Run, out: Path, *needles: str) -> None:
    """Exit 1, an error line holding every needle, no traceback, nothing committed, under 1 GB."""
    assert run.code == 1, run.err
    assert "Traceback" not in run.err
    errors = [line for line in run.err.splitlines() if line.startswith(("mose-shards: error: ", "  "))]
    assert any(all(n in line for n in needles) for line in errors), run.err
    _nothing_committed(out)
    assert run.peak < LIMIT, run.peak


def _nothing_committed(out: Path) -> None:
    """No manifest; each file in shards/ and tables/ belongs to a shard with a done marker."""
    assert not (out / "manifest.json").exists()
    done = {p.stem for p in (out / ".mose-shards" / "done").glob("*.json")}
    for path in [*(out / "shards").rglob("*"), *(out / "tables").rglob("*")]:
        assert path.is_dir() or path.stem in done, f"{path} is not part of a finished shard"


def _convert(src: Path, out: Path, *extra: str) -> h.Run:
    return h.run_cli("convert", str(src), str(out), "--workers", "1", "-q", *extra)


# --- archive damage: always stops the run, --on-error skip or not ----------------------------------

NAME = "train/JPEGImages/zz/00000.jpg"


def _at_end(body: bytes, extra: bytes) -> tuple[bytes, int]:
    """The archive with `extra` blocks after the members, and the offset where they start."""
    return body + extra + h.END, len(body)


def _members(body: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(body + h.END)) as archive:
        return archive.getmembers()


def _negative_size(body: bytes) -> tuple[bytes, str]:
    data, at = _at_end(body, h.header(NAME, h.negative_size(-512)))
    return data, f"damaged tar header at byte {at} (size -512)"


def _pax_length_zero(body: bytes) -> tuple[bytes, str]:
    data, at = _at_end(body, h.pax(b"0 path=x\n") + h.header(NAME, 0))
    return data, f"damaged pax header at byte {at} (record length 0)"


def _pax_size_huge(body: bytes) -> tuple[bytes, str]:
    data, at = _at_end(body, h.pax(h.record("size", "9" * 20)) + h.header(NAME, 0))
    return data, f"damaged pax header at byte {at} (size '99999999999999999999')"


def _pax_size_negative(body: bytes) -> tuple[bytes, str]:
    data, at = _at_end(body, h.pax(h.record("size", "-1000000")) + h.header(NAME, 0))
    return data, f"damaged pax header at byte {at} (size '-1000000')"


def _sparse(body: bytes) -> tuple[bytes, str]:
    return _at_end(body, h.header(NAME, 0, b"S"))[0], f":{NAME}: GNU sparse member, not supported"


def _cut_in_padding(body: bytes) -> tuple[bytes, str]:
    last = _members(body)[-1]
    cut = last.offset_data + last.size + 10  # inside the zero padding after its data
    assert last.size % h.BLOCK and cut < len(body)
    return body[:cut], "truncated tar archive"


def _no_end_marker(body: bytes) -> tuple[bytes, str]:
    return body, f"truncated tar archive (ends at byte {len(body)} before its end-of-archive marker"


def _cut_in_end_marker(body: bytes) -> tuple[bytes, str]:
    return body + bytes(700), "truncated tar archive (ends at byte"


DAMAGE: dict[str, Callable[[bytes], tuple[bytes, str]]] = {
    "negative-base256-size": _negative_size,
    "pax-record-length-0": _pax_length_zero,
    "pax-size-huge": _pax_size_huge,
    "pax-size-negative": _pax_size_negative,
    "gnu-sparse": _sparse,
    "cut-in-padding": _cut_in_padding,
    "no-end-marker": _no_end_marker,
    "cut-in-end-marker": _cut_in_end_marker,
}


@pytest.mark.parametrize("kind", ["tar", "tar.gz"])
@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_archive_damage_stops_the_run(
    files: list[tuple[str, bytes]], tmp_path: Path, case: str, kind: str
) -> None:
    """Headers that looped forever or were misread, and tars cut short: one line naming the archive,
    exit 1 even under --on-error skip, nothing committed, under 1 GB."""
    data, needle = DAMAGE[case](h.tar_body(files))
    src = tmp_path / f"train.{kind}"
    src.write_bytes(gzip.compress(data) if kind == "tar.gz" else data)
    out = tmp_path / "out"
    _refused(_convert(src, out, "--on-error", "skip"), out, str(src), needle)


# --- member-level problems: strict stops, skip leaves the video out --------------------------------


def _skipped(run: h.Run, out: Path, video: str, *needles: str) -> None:
    """Exit 0; `video` skipped with a reason holding the needles; the other video converted."""
    assert run.code == 0, run.err
    assert "Traceback" not in run.err
    split = json.loads((out / "manifest.json").read_text())["splits"]["train"]
    reasons = {entry["video_id"]: entry["reason"] for entry in split["skipped"]}
    assert set(reasons) == {video} and all(n in reasons[video] for n in needles), reasons
    assert split["videos"] == SPEC.videos - 1
    assert run.peak < LIMIT, run.peak


def test_a_duplicate_member_is_refused_naming_both(files: list[tuple[str, bytes]], tmp_path: Path) -> None:
    """A frame listed twice with different bytes (extracting would keep the second silently): strict
    refuses naming both offsets; skip leaves its video out."""
    name = _frames(files)[1]
    body = h.tar_body(files)
    first = next(m.offset_data for m in _members(body) if m.name == name)
    src = tmp_path / "train.tar"
    src.write_bytes(body + h.tar_body([(name, b"other bytes")]) + h.END)
    needle = f"{src}:{name}: two members of this name (at bytes {first} and {len(body) + h.BLOCK})"
    _refused(_convert(src, tmp_path / "strict"), tmp_path / "strict", needle)
    _skipped(
        _convert(src, tmp_path / "skip", "--on-error", "skip"), tmp_path / "skip", name.split("/")[2], needle
    )


def _with_big_member(src: Path, files: list[tuple[str, bytes]], size: int) -> str:
    """A .tar whose second frame declares `size` bytes of data, written as a hole (a sparse file:
    a few KB on disk): the honest big member; returns its name."""
    name = _frames(files)[1]
    kept = [(n, d) for n, d in files if n != name]
    with src.open("wb") as fh:
        fh.write(h.tar_body(kept) + h.header(name, size))
        fh.seek(size + -size % h.BLOCK, 1)
        fh.write(h.END)
    return name


def test_a_member_over_the_size_limit_is_refused_before_reading(
    files: list[tuple[str, bytes]], tmp_path: Path
) -> None:
    """A frame of 2 GiB (honest sizes) is refused before any of it is read: naming it and the
    option; skip converts the rest; a larger --max-member-size lets it through to the JPEG check."""
    src = tmp_path / "train.tar"
    name = _with_big_member(src, files, 2 * h.GIB)
    limit = f"over the limit of {256 << 20} for one source file (--max-member-size)"
    needle = f"{src}:{name}: {2 * h.GIB} bytes, {limit}"
    _refused(_convert(src, tmp_path / "strict"), tmp_path / "strict", needle)
    _skipped(
        _convert(src, tmp_path / "skip", "--on-error", "skip"), tmp_path / "skip", name.split("/")[2], needle
    )
    small = tmp_path / "small.tar"
    _with_big_member(small, files, 3 << 20)
    run = _convert(small, tmp_path / "raised", "--max-member-size", "4MiB")
    _refused(run, tmp_path / "raised", f"{small}:{name}: not a JPEG")


@pytest.mark.slow
def test_a_2gib_member_in_a_tar_gz_stays_bounded(files: list[tuple[str, bytes]], tmp_path: Path) -> None:
    """A ~2 MB .tar.gz holding a 2 GiB member of zeros (honest header): listed in bounded memory,
    the member refused by the size limit, the run under 1 GB."""
    name = _frames(files)[1]
    kept = [(n, d) for n, d in files if n != name]
    src = tmp_path / "train.tar.gz"
    src.write_bytes(h.gzip_of([h.tar_body(kept) + h.header(name, 2 * h.GIB), 2 * h.GIB, h.END]))
    assert src.stat().st_size < 8 << 20
    out = tmp_path / "out"
    _refused(_convert(src, out), out, f"{src}:{name}: {2 * h.GIB} bytes, over the limit")


def _zip(files: list[tuple[str, bytes]], change: dict[str, h.ZipEntry]) -> bytes:
    return h.zip_of([change.get(n, h.stored(n, d)) for n, d in files])


def test_a_zip_member_that_inflates_past_its_size_is_capped(
    files: list[tuple[str, bytes]], tmp_path: Path
) -> None:
    """A 2 MB zip whose frame says 4 MiB (a size its compressed bytes can have) and inflates to 2 GiB:
    never more than 4 MiB and a byte are inflated; strict refuses naming it, skip leaves its video
    out; under 1 GB."""
    name = _frames(files)[1]
    bomb = h.ZipEntry(name, h.zeros_deflate(2 * h.GIB), 4 << 20, 8)
    src = tmp_path / "train.zip"
    src.write_bytes(_zip(files, {name: bomb}))
    assert src.stat().st_size < 4 << 20
    needle = f"{src}:{name}: damaged zip member (inflates to more than the {4 << 20} bytes"
    _refused(_convert(src, tmp_path / "strict"), tmp_path / "strict", needle)
    _skipped(
        _convert(src, tmp_path / "skip", "--on-error", "skip"), tmp_path / "skip", name.split("/")[2], needle
    )


def test_a_zip_member_declaring_2gib_is_refused_by_the_limit(
    files: list[tuple[str, bytes]], tmp_path: Path
) -> None:
    """The same bomb with an honest declared size (2 GiB): refused by the size limit, nothing inflated."""
    name = _frames(files)[1]
    bomb = h.ZipEntry(name, h.zeros_deflate(2 * h.GIB), 2 * h.GIB, 8)
    src = tmp_path / "train.zip"
    src.write_bytes(_zip(files, {name: bomb}))
    out = tmp_path / "out"
    _refused(_convert(src, out), out, f"{src}:{name}: {2 * h.GIB} bytes, over the limit")


def _zip_case(files: list[tuple[str, bytes]], case: str) -> tuple[bytes, str]:
    name = _frames(files)[1]
    data = dict(files)[name]
    if case == "outside-the-file":
        entry = h.stored(name, data)
        entry.offset = 0xFFFF_FF00
        return _zip(files, {name: entry}), f":{name}: damaged zip directory (member at byte {0xFFFF_FF00}"
    if case == "method":
        return _zip(files, {name: h.ZipEntry(name, data, len(data), 99)}), f":{name}: compression method 99"
    if case == "packed-far-larger":
        big = h.ZipEntry(name, bytes(200_000), 10, 8)
        return _zip(files, {name: big}), f":{name}: damaged zip directory (200000 compressed bytes for 10"
    assert case == "duplicate"
    twice = h.zip_of([*(h.stored(n, d) for n, d in files), h.stored(name, b"other bytes")])
    return twice, f":{name}: two members of this name"


@pytest.mark.parametrize("case", ["outside-the-file", "method", "packed-far-larger", "duplicate"])
def test_zip_directory_lies_are_one_line(files: list[tuple[str, bytes]], tmp_path: Path, case: str) -> None:
    """A zip directory pointing outside the file, an unknown method, a compressed size no deflate
    makes, a name twice: one line naming the member, exit 1, nothing committed."""
    data, needle = _zip_case(files, case)
    src = tmp_path / "train.zip"
    src.write_bytes(data)
    out = tmp_path / "out"
    _refused(_convert(src, out), out, f"{src}{needle}")


# --- the listing always ends: mutated tar, pax and zip headers -------------------------------------


@contextlib.contextmanager
def _watchdog(seconds: int) -> Iterator[None]:
    """Fail (instead of hanging) when the block takes longer than `seconds`: a loop is a bug."""

    def _hang(*_: object) -> None:
        raise AssertionError(f"the listing did not end within {seconds} s")

    previous = signal.signal(signal.SIGALRM, _hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _base_tar(records: bytes | None = None) -> tuple[bytes, list[int]]:
    """A small tar of plain members, a pax header (path, size), a GNU long name and a base-256
    size: the bytes and where each header block starts (to fix checksums after a mutation)."""
    parts: list[bytes] = []
    starts: list[int] = []

    def add(block: bytes, data: bytes = b"") -> None:
        starts.append(sum(map(len, parts)))
        parts.append(block + h.padded(data))

    for i in range(3):
        add(h.header(f"train/JPEGImages/v/{i:05d}.jpg", 700 + i), bytes([i]) * (700 + i))
    if records is None:
        records = h.record("path", "train/JPEGImages/" + "p" * 120 + "/00000.jpg") + h.record("size", "5")
    add(h.header("PaxHeaders/x", len(records), b"x"), records)
    add(h.header("placeholder", 0), b"hello")
    long = ("train/Annotations/" + "q" * 120 + "/00000.png").encode() + b"\0"
    add(h.header("././@LongLink", len(long), b"L"), long)
    add(h.header("short", 3), b"abc")
    add(h.header("train/JPEGImages/v/big.jpg", b"\x80" + (9).to_bytes(11, "big")), b"123456789")
    return b"".join(parts) + h.END, starts


def _fix_checksums(data: bytearray, starts: list[int]) -> None:
    for at in starts:
        block = data[at : at + h.BLOCK]
        if len(block) == h.BLOCK:
            block[148:156] = b" " * 8
            data[at + 148 : at + 156] = b"%06o\0 " % sum(block)


# Bytes that mean something in a header: NUL, '0', space, 0xff/0x80 (base-256), '-', '9', '7', newline.
_BYTES = st.one_of(st.sampled_from(list(b"\x00\x30\x20\xff\x80\x2d\x39\x37\x0a")), st.integers(0, 255))
_EDITS = st.lists(st.tuples(st.integers(0, 1 << 16), _BYTES), min_size=1, max_size=6)
# Whole size fields and pax records as an attacker writes them (each once made the parser loop,
# misread or raise something else), put in by the tests besides the random bytes.
_SIZES = st.sampled_from([h.negative_size(-512), h.negative_size(-1), b"\x80" + b"\xff" * 11,
                          b"-0000001000\0",
                          b"99999999999\0", b"7_7\0" + bytes(8), b"\xff" * 12, b"           \0"])  # fmt: skip
_RECORDS = st.sampled_from([b"0 path=x\n", b"3 a\n", b"99999 size=1\n", b"12 size=-10\n", b"9 size=1x\n",
                            h.record("size", "9" * 20), h.record("size", "9" * 5000), b"x size=1\n",
                            h.record("GNU.sparse.major", "1"), b"5 a=b\n"])  # fmt: skip
_HEADER_EDITS = st.lists(st.tuples(st.integers(0, 1 << 16), _BYTES), min_size=1, max_size=3)
_FIELDS = [*range(0, 4), *range(124, 136), *range(148, 157)]  # name, size, checksum, type flag


def _targets(starts: list[int]) -> list[int]:
    """Where the edits go: the fields that steer the parser, and the pax records and long name."""
    data = [starts[3] + h.BLOCK + i for i in range(48)] + [starts[5] + h.BLOCK + i for i in range(4)]
    return [at + field for at in starts for field in _FIELDS] + data


_SETTINGS = settings(max_examples=400, deadline=timedelta(seconds=10), derandomize=True)


def _mutated(base: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytearray:
    data = bytearray(base)
    for position, value in edits:
        data[position % len(data)] = value
    return data[:cut] if cut is not None else data


def _ends_with_a_listing_or_our_error(listing: Callable[[], Iterable[object]], bound: int) -> None:
    """The listing ends within seconds, yields at most `bound` members, and fails only with ours."""
    with _watchdog(20):
        try:
            members = list(itertools.islice(listing(), bound + 1))
        except (LayoutError, DataError):
            return
    assert len(members) <= bound


@_SETTINGS
@given(
    edits=_HEADER_EDITS,
    sizes=st.lists(st.tuples(st.integers(0, 7), _SIZES), max_size=2),
    records=st.one_of(st.none(), _RECORDS),
    fix=st.booleans(),
    cut=st.one_of(st.none(), st.integers(0, 8000)),
    sized=st.booleans(),
)
def test_mutated_tar_headers_always_end(
    edits: list[tuple[int, int]], sizes: list[tuple[int, bytes]], records: bytes | None, fix: bool,
    cut: int | None, sized: bool,
) -> None:  # fmt: skip
    """Random bytes and hostile size fields in a tar's headers, hostile pax records (checksums fixed
    or not, the tar cut or not, its size known as for a .tar or not as for a .tar.gz): a listing or
    LayoutError, never a hang or another exception."""
    base, starts = _base_tar(records)
    targets = _targets(starts)
    data = _mutated(base, [(targets[p % len(targets)], v) for p, v in edits], cut)
    for number, field in sizes:
        at = starts[number] + 124
        if at + 12 <= len(data):
            data[at : at + 12] = field
    if fix:
        _fix_checksums(data, starts)
    blob = bytes(data)

    def listing() -> Iterable[object]:
        return tarscan.scan(io.BytesIO(blob), "t.tar", size=len(blob) if sized else None, seek_gap=None)

    _ends_with_a_listing_or_our_error(listing, len(blob) // h.BLOCK)


def _base_zip() -> tuple[bytes, int]:
    """A small zip (stored and deflated members) and where its central directory starts."""
    packer = zlib.compressobj(6, zlib.DEFLATED, -15)
    text = b"frame " * 200
    packed = packer.compress(text) + packer.flush()
    deflated = h.ZipEntry("train/JPEGImages/v/00001.jpg", packed, len(text), 8, zlib.crc32(text))
    entries = [h.stored("train/JPEGImages/v/00000.jpg", b"jpeg" * 50), deflated, h.stored("train/x", b"")]
    data = h.zip_of(entries)
    return data, data.index(b"PK\x01\x02")


@_SETTINGS
@given(edits=_EDITS, cut=st.one_of(st.none(), st.integers(0, 2000)))
def test_mutated_zip_directories_always_end(edits: list[tuple[int, int]], cut: int | None) -> None:
    """Random bytes in a zip's central directory and end record: a listing or LayoutError, never a
    hang or another exception (zipfile's own are named as an unreadable zip)."""
    base, directory = _base_zip()
    span = len(base) - directory
    data = bytes(_mutated(base, [(directory + p % span, v) for p, v in edits], cut))
    archive = Archive("zip", "t.zip", ("t.zip",), (len(data),), ("",))

    def listing() -> Iterable[object]:
        members = scan_zip(io.BytesIO(data), archive).members
        return list(members.names)

    _ends_with_a_listing_or_our_error(listing, 10)


@settings(max_examples=40, deadline=timedelta(seconds=20), derandomize=True)
@given(edits=_HEADER_EDITS, fix=st.booleans(), in_gzip=st.booleans())
def test_mutated_tar_gz_listing_always_ends(edits: list[tuple[int, int]], fix: bool, in_gzip: bool) -> None:
    """A .tar.gz listed as convert lists it, with its tar's headers or its gzip bytes mutated: a
    listing or LayoutError, never a hang or another exception."""
    base, starts = _base_tar()
    targets = _targets(starts)
    if in_gzip:
        packed = gzip.compress(base, mtime=0)
        blob = bytes(_mutated(packed, edits, None))
    else:
        data = _mutated(base, [(targets[p % len(targets)], v) for p, v in edits], None)
        if fix:
            _fix_checksums(data, starts)
        blob = gzip.compress(bytes(data), mtime=0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.tar.gz"
        path.write_bytes(blob)
        fs = fsspec.filesystem("file")
        archive = Archive("tar.gz", str(path), (str(path),), (len(blob),), ("",))

        def listing() -> Iterable[object]:
            return range(len(archive_scan(fs, archive, None, threads=1).members))

        _ends_with_a_listing_or_our_error(listing, len(base) // h.BLOCK)
