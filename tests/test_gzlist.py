"""A .tar.gz listing killed midway goes on from its checkpoint: seek points captured from rapidgzip,
checkpoints saved under OUT/.mose-shards/sources/, validated, rejoined by rapidgzip."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import struct
from pathlib import Path

import pytest
import rapidgzip

from mose_shards import archives
from mose_shards.archives import gzcheckpoints, gzindex, members
from mose_shards.archives import listing as archive_listing
from mose_shards.archives.gzindex import WINDOW, Capture, Point, from_bytes, to_bytes
from mose_shards.archives.parts import ChecksumError, find_sums
from mose_shards.core.errors import LayoutError
from mose_shards.core.layout import listing_checkpoint
from mose_shards.core.storage import Store
from tests.helpers import tar_bytes
from tests.test_archives import cut, write_sums

SPACING = 64 << 10
EVERY = 400_000


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Path, dict[str, bytes], bytes]:
    """A .tar.gz of 60 members (~2.4 MB, mostly incompressible) in three parts, with SHA256SUMS."""
    rng = random.Random(5)
    files = {f"v{i // 10}/{i:05d}.jpg": rng.randbytes(rng.randrange(20_000, 60_000)) for i in range(60)}
    tar = tar_bytes(files)
    src = tmp_path / "src"
    src.mkdir()
    cut(gzip.compress(tar, compresslevel=1, mtime=0), src, "x.tar.gz", 3)
    write_sums(src)
    return src, files, tar


@pytest.fixture
def hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gzcheckpoints.TEST_HOOKS, json.dumps({"every": EVERY, "spacing": SPACING}))


class _Killed(Exception):
    pass


def _kill_after_checkpoints(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """The listing stops (as if killed) right after its `count`-th checkpoint is saved."""
    original = gzcheckpoints.Checkpoints.save
    saved = []

    def save(self: gzcheckpoints.Checkpoints, *args: object) -> None:
        original(self, *args)  # type: ignore[arg-type]
        saved.append(1)
        if len(saved) == count:
            raise _Killed

    monkeypatch.setattr(gzcheckpoints.Checkpoints, "save", save)


def _list_until_killed(src: Path, out: Path, monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """List `src` into `out`, stopped (as if killed) right after its `count`-th checkpoint; the test
    hooks stay set for the rerun."""
    with monkeypatch.context() as patch:
        _kill_after_checkpoints(patch, count)
        with pytest.raises(_Killed):
            _list(src, out)


def _list(src: Path, out: Path) -> tuple[archives.Archive, archives.Listing]:
    local = Store(str(src))
    found = archives.group_parts({p.name: local.fs.info(str(p)) for p in src.iterdir()}, str(src), str(src))
    sums = find_sums(local.fs, str(src), str(src), found[0].names)
    listing = archives.load_or_scan(local.fs, found[0], Store(str(out)), sums)
    return found[0], listing


def _read_back(archive: archives.Archive, listing: archives.Listing, src: Path, out: Path) -> list[bytes]:
    archive_listing._INDEXES.clear()  # another process's view: the index comes from OUT
    stream = members.open_members(Store(str(src)).fs, archive, Store(str(out)))
    try:
        got = []
        for member in listing.members[::-1]:
            stream.seek(member.offset)
            got.append(stream.read(member.size))
    finally:
        stream.close()
    return got[::-1]


def _read_through(src: Path) -> tuple[bytes, Capture, bytes]:
    """The parts' bytes, a Capture that read the whole stream through rapidgzip, and the index
    rapidgzip exports at the end."""
    data = b"".join(p.read_bytes() for p in sorted(src.glob("x.tar.gz.*")))
    stream = gzindex.load_rapidgzip().RapidgzipFile(io.BytesIO(data), parallelization=1, chunk_size=SPACING)
    try:
        capture = Capture(stream)
        while capture.read(1 << 20):
            pass
        exported = io.BytesIO()
        stream.export_index(exported)
    finally:
        stream.close()
    return data, capture, exported.getvalue()


def test_captured_points_are_rapidgzips_own(parts: tuple[Path, dict[str, bytes], bytes]) -> None:
    """The seek points captured while reading are the block starts rapidgzip exports, each with the
    32 KiB before it as window; GZIDX bytes round trip."""
    src, _, tar = parts
    data, capture, exported = _read_through(src)
    points = capture.take(len(tar))
    theirs, size = from_bytes(exported)
    assert size == len(tar) and len(points) >= 20
    assert [(p.bit, p.offset) for p in points] == [(p.bit, p.offset) for p in theirs if p.offset <= len(tar)]
    assert all(p.window == tar[max(0, p.offset - WINDOW) : p.offset] for p in points)
    assert from_bytes(to_bytes(points, len(data), len(tar), SPACING)) == (points, len(tar))
    with pytest.raises(ValueError):
        from_bytes(to_bytes(points, len(data), 0, SPACING)[:-1])


def test_a_rejoining_prefix_continues_the_stream_at_each_seek_point(
    parts: tuple[Path, dict[str, bytes], bytes],
) -> None:
    """Prefix + the original bytes from a seek point inflate (zlib, raw) to the window and then the
    tar from that point, whatever the point's bit position and window."""
    import zlib

    from mose_shards.archives.gzindex import rejoin_prefix

    src, _, tar = parts
    data, capture, _ = _read_through(src)
    points = capture.take(len(tar) - 1)
    assert len({p.bit % 8 for p in points}) >= 4
    for point in points:
        head, low = rejoin_prefix(point)
        byte, keep = point.bit // 8, (1 << point.bit % 8) - 1
        joined = head + bytes([(low & keep) | (data[byte] & (0xFF ^ keep))]) + data[byte + 1 :]
        out = zlib.decompressobj(-15).decompress(joined)
        assert out == point.window + tar[point.offset :], point
    # Every bit position, with a window of low bytes (no 9-bit literal to shift by): rapidgzip too.
    for shift in range(8):
        window = b"\0" * (WINDOW - 3) + b"ab\n"
        head, low = rejoin_prefix(Point(8 * 1000 + shift, 5000, window))
        final = low | (0b011 << shift)  # the original bits: an empty final block at `shift`
        stream = head + final.to_bytes((shift + 17) // 8, "little")
        assert zlib.decompress(stream, -15) == window
        gz = b"\x1f\x8b\x08\0\0\0\0\0\0\xff" + stream + struct.pack("<II", zlib.crc32(window), WINDOW)
        with rapidgzip.RapidgzipFile(io.BytesIO(gz), parallelization=1) as decoder:
            assert decoder.read() == window


def test_a_killed_listing_goes_on_from_its_checkpoint(
    parts: tuple[Path, dict[str, bytes], bytes], tmp_path: Path, hooks: None, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Stopped after two checkpoints, the listing goes on from the second: the same members, an index
    that reads every member back, parts hashed again only from the part the checkpoint stopped in."""
    src, files, tar = parts
    _, clean = _list(src, tmp_path / "clean")
    out = tmp_path / "out"
    _list_until_killed(src, out, monkeypatch, 2)
    (folder,) = (out / ".mose-shards" / "sources").glob("*.partial")
    state = json.loads((folder / "state.json").read_text())
    caplog.set_level("INFO")
    archive, listing = _list(src, out)
    assert "listing resumed from a checkpoint" in caplog.text
    assert listing.members == clean.members and listing.verified
    assert 2 * EVERY <= state["start"] < 2 * EVERY + 60_000 + 1024  # after the member that crossed it
    resumed_from = int(caplog.text.split("decompressing from byte ")[1].split(")")[0])
    assert state["start"] - SPACING - 60_000 < resumed_from <= state["start"]  # a nearby seek point
    decompressed = int(caplog.text.split("members; ")[1].split(" bytes")[0])
    assert decompressed == len(tar) - resumed_from  # the bytes before the seek point: not again
    again = int(caplog.text.split("hashed ")[1].split(" bytes again")[0])  # only the current part's start
    assert 0 < again < max(p.stat().st_size for p in src.glob("x.tar.gz.a?"))
    assert _read_back(archive, listing, src, out) == [files[m.name] for m in listing.members]
    assert not (out / listing_checkpoint(archive.key)).exists()  # the whole listing is saved instead


def _flip_byte(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _members_file(folder: Path) -> None:
    _flip_byte(folder / "members-000001.members", 100)


def _state_garbled(folder: Path) -> None:
    (folder / "state.json").write_text('{"format": 1, "key": ')


def _start_moved(folder: Path) -> None:
    state = json.loads((folder / "state.json").read_text())
    state["start"] += 512
    (folder / "state.json").write_text(json.dumps(state))


def _window_wrong_but_hashed(folder: Path) -> None:
    """A checkpoint consistent with itself (hashes match) but wrong: only going on can tell."""
    path = folder / "points-000001.gzidx"
    points, _ = from_bytes(path.read_bytes())
    points[-1] = Point(points[-1].bit + 3, points[-1].offset, points[-1].window)
    data = to_bytes(points, 0, 0, SPACING)
    path.write_bytes(data)
    state = json.loads((folder / "state.json").read_text())
    state["segments"][0]["sha256"][1] = hashlib.sha256(data).hexdigest()
    (folder / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize("damage", [_members_file, _state_garbled, _start_moved, _window_wrong_but_hashed])
def test_a_bad_checkpoint_is_never_trusted(
    parts: tuple[Path, dict[str, bytes], bytes], tmp_path: Path, hooks: None, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, damage: object,
) -> None:  # fmt: skip
    """A damaged or inconsistent checkpoint is dropped with a warning and the archive is listed from
    the start, to the same members."""
    src, files, _ = parts
    _, clean = _list(src, tmp_path / "clean")
    out = tmp_path / "out"
    _list_until_killed(src, out, monkeypatch, 1)
    (folder,) = (out / ".mose-shards" / "sources").glob("*.partial")
    damage(folder)  # type: ignore[operator]
    caplog.set_level("INFO")
    archive, listing = _list(src, out)
    assert "listing from the start" in caplog.text
    assert listing.members == clean.members
    assert "from byte 0 of" in caplog.text.splitlines()[-1] or "from byte 0 of" in caplog.text
    assert _read_back(archive, listing, src, out) == [files[m.name] for m in listing.members]


def test_a_part_changed_in_place_is_refused_after_resuming(
    parts: tuple[Path, dict[str, bytes], bytes], tmp_path: Path, hooks: None, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """A part whose bytes changed under the same size and mtime (the archive key cannot tell) is
    refused by its checksum when the listing goes on from a checkpoint, naming the part."""
    src, _, _ = parts
    out = tmp_path / "out"
    _list_until_killed(src, out, monkeypatch, 1)
    part = src / "x.tar.gz.ac"
    stamp = part.stat()
    _flip_byte(part, 1000)
    os.utime(part, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    with pytest.raises(ChecksumError, match=r"x\.tar\.gz\.ac: sha256 mismatch"):
        _list(src, out)
    assert not list((out / ".mose-shards" / "sources").glob("*.members"))


def test_a_resumed_listing_checks_the_gzip_crc(
    parts: tuple[Path, dict[str, bytes], bytes], tmp_path: Path, hooks: None,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Without checksums, a trailer whose CRC-32 no longer matches the bytes (changed under the same
    size and mtime) is caught by a listing that goes on from a checkpoint: it lists from the start,
    and the run stops naming the archive as damaged, with nothing saved."""
    src, _, _ = parts
    (src / "SHA256SUMS").unlink()
    out = tmp_path / "out"
    _list_until_killed(src, out, monkeypatch, 1)
    part = src / "x.tar.gz.ac"
    stamp = part.stat()
    _flip_byte(part, stamp.st_size - 6)  # in the trailer's CRC-32
    os.utime(part, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    caplog.set_level("INFO")
    with pytest.raises(LayoutError, match=r"x\.tar\.gz.*damaged gzip data"):
        _list(src, out)
    assert "listing resumed from a checkpoint" in caplog.text
    assert "CRC-32 is not the one its trailer gives" in caplog.text
    assert not list((out / ".mose-shards" / "sources").glob("*.members"))


def test_a_stream_of_several_gzip_members_is_listed_again_from_the_start(
    tmp_path: Path, hooks: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Concatenated gzip members (the rejoined stream cannot cross into the next member's header):
    going on fails, the archive is listed from the start, to the right members and index."""
    rng = random.Random(6)
    files = {f"v/{i:05d}.jpg": rng.randbytes(rng.randrange(20_000, 60_000)) for i in range(60)}
    tar = tar_bytes(files)
    src = tmp_path / "src"
    src.mkdir()
    half = len(tar) // 2
    members = [gzip.compress(piece, compresslevel=1, mtime=0) for piece in (tar[:half], tar[half:])]
    cut(b"".join(members), src, "x.tar.gz", 3)
    write_sums(src)
    _list_until_killed(src, tmp_path / "out", monkeypatch, 1)
    caplog.set_level("INFO")
    archive, listing = _list(src, tmp_path / "out")
    assert "listing resumed from a checkpoint" in caplog.text and "listing from the start" in caplog.text
    assert [m.name for m in listing.members] == list(files) and listing.verified
    assert _read_back(archive, listing, src, tmp_path / "out") == list(files.values())


def test_a_checkpoint_made_without_checksums_goes_on_checking_them(
    parts: tuple[Path, dict[str, bytes], bytes], tmp_path: Path, hooks: None, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A run without SHA256SUMS killed after a checkpoint; rerun with them: it goes on, hashing the
    parts before the seek point again from the start (compressed bytes), and checks every part."""
    src, _, _ = parts
    sums = (src / "SHA256SUMS").read_bytes()
    (src / "SHA256SUMS").unlink()
    _list_until_killed(src, tmp_path / "out", monkeypatch, 3)  # the seek point in the second part
    (src / "SHA256SUMS").write_bytes(sums)
    caplog.set_level("INFO")
    _, listing = _list(src, tmp_path / "out")
    assert "listing resumed from a checkpoint" in caplog.text
    again = int(caplog.text.split("hashed ")[1].split(" bytes again")[0])
    assert again > (src / "x.tar.gz.aa").stat().st_size  # the first part (no digest saved) and more
    assert listing.verified


@pytest.mark.slow
def test_kill_9_while_listing_then_rerun_goes_on_and_is_identical(tmp_path: Path) -> None:
    """kill -9 of a real `convert` while it lists the split train.tar.gz (held after its first
    checkpoint); the rerun goes on from that checkpoint and ends byte-identical to a clean run."""
    import signal
    import subprocess
    import sys
    import time

    from mose_shards.synth import SynthSpec, generate
    from tests.helpers import tree_bytes
    from tests.test_archives import hub
    from tests.test_resume import _kill_group

    raw = generate(tmp_path / "raw", spec=SynthSpec(videos=6, frames=8, size=(320, 240), seed=3))
    src = hub(raw, tmp_path / "hub")  # train.tar.gz.aa..ac (~1.2 MB of tar), valid.tar.gz, SHA256SUMS
    hooks = {"every": 300_000, "spacing": SPACING}
    env = dict(os.environ, **{gzcheckpoints.TEST_HOOKS: json.dumps(hooks)})

    def command(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-m", "mose_shards.cli", "convert", str(src), str(out), "--shard-size", "1",
                *extra]  # fmt: skip

    clean = tmp_path / "clean"
    assert subprocess.run(command(clean, "-q"), env=env).returncode == 0
    out, held = tmp_path / "out", tmp_path / "held"
    held_env = {**env, gzcheckpoints.TEST_HOOKS: json.dumps({**hooks, "pause": str(held)})}
    proc = subprocess.Popen(command(out, "-q"), env=held_env, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not held.exists():  # the run waits there, after its first checkpoint, until killed
            assert proc.poll() is None, "the conversion ended before its first listing checkpoint"
            assert time.monotonic() < deadline, "no listing checkpoint within two minutes"
            time.sleep(0.005)  # a poll interval, not a timing assumption
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        _kill_group(proc)
    assert not list((out / ".mose-shards" / "sources").glob("*.members"))  # killed while listing
    (folder,) = (out / ".mose-shards" / "sources").glob("*.partial")
    start = json.loads((folder / "state.json").read_text())["start"]
    rerun = subprocess.run(command(out, "-v"), env=env, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    (resumed,) = [line for line in rerun.stderr.splitlines() if "listing resumed from a checkpoint" in line]
    assert "train.tar.gz" in resumed and f"the tar from byte {start} " in resumed
    origin = int(resumed.split("decompressing from byte ")[1].rstrip(")"))
    assert 0 < origin <= start
    (listed,) = [line for line in rerun.stderr.splitlines() if "train.tar.gz: listed" in line]
    decompressed, total = int(listed.split("; ")[1].split()[0]), int(listed.rsplit(" ", 1)[1])
    assert decompressed == total - origin  # the stream before the checkpoint's seek point: not again
    assert not (folder).exists()  # the whole listing saved instead
    assert tree_bytes(out) == tree_bytes(clean)
