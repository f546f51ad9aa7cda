"""Hostile and broken archives (issue 20), each built here in a few KB: headers that would loop, a
tar cut short, members that inflate to 2 GiB, duplicates, zip directories that lie. Every one ends
within the timeout with one line naming the file, exit 1, nothing committed and a peak under 1 GB;
`--on-error skip` skips a video for a member-level problem and stops for archive damage."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

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
    last = tarfile.open(fileobj=io.BytesIO(body + h.END)).getmembers()[-1]
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
    first = tarfile.open(fileobj=io.BytesIO(body + h.END)).getmember(name).offset_data
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
    needle = f"{src}:{name}: {2 * h.GIB} bytes, over the limit of {256 << 20} for one source file (--max-member-size)"
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
