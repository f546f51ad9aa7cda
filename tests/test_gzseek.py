"""Reading a .tar.gz by offset from its seek index (`gzseek.GzipRanges`): every stretch between two
seek points decoded by libdeflate in one call, and rapidgzip for a stream of several gzip members."""

from __future__ import annotations

import gzip
import io
import random
from pathlib import Path
from typing import Any

import pytest

from mose_shards.archives import gzindex, gzseek
from mose_shards.archives.gzindex import Table
from mose_shards.archives.gzseek import GzipRanges
from mose_shards.archives.parts import PartsFile
from mose_shards.core.storage import Store
from tests.helpers import tar_bytes

SPACING = 64 << 10


def _tar(seed: int, count: int) -> bytes:
    """Members that are partly incompressible, partly text (deflate blocks of both kinds)."""
    rng = random.Random(seed)
    files = {}
    for i in range(count):
        size = rng.randrange(2_000, 40_000)
        text = b"".join(b"%d," % rng.randrange(1000) for _ in range(size // 4))[:size]
        files[f"v{i // 8}/{i:05d}.{'jpg' if i % 3 else 'png'}"] = rng.randbytes(size) if i % 2 else text
    return tar_bytes(files)


def _index(data: bytes) -> bytes:
    with gzindex.load_rapidgzip().RapidgzipFile(io.BytesIO(data), chunk_size=SPACING) as stream:
        while stream.read(1 << 20):
            pass
        exported = io.BytesIO()
        stream.export_index(exported)
    return exported.getvalue()


def _ranges(
    tmp_path: Path, data: bytes, threads: int, parts: int = 3, reader: type = PartsFile
) -> GzipRanges:
    """GzipRanges over `data` cut into `parts` files (read through `reader`), with `threads`
    decoding ahead."""
    cut = -(-len(data) // parts)
    paths = []
    for i in range(parts):
        path = tmp_path / f"x.tar.gz.{i:03d}"
        path.write_bytes(data[i * cut : (i + 1) * cut])
        paths.append(str(path))
    fs = Store(str(tmp_path)).fs
    sizes = [Path(p).stat().st_size for p in paths]
    opener = lambda: reader(fs, paths, sizes, paths, hashing=False)  # noqa: E731
    return GzipRanges(opener, _index(data), SPACING, threads)


def _check_reads(ranges: GzipRanges, tar: bytes, seed: int) -> None:
    rng = random.Random(seed)
    table = ranges.table
    edges = [int(o) for o in table.offsets]
    starts = [rng.randrange(len(tar)) for _ in range(60)] + edges + [e - 1 for e in edges[1:]]
    for start in starts:
        size = rng.choice([1, 100, 5000, 3 * SPACING])
        ranges.seek(start)
        assert ranges.read(size) == tar[start : start + size], (start, size)
    ranges.seek(len(tar))
    assert ranges.read(10) == b""


@pytest.mark.parametrize(("threads", "heads"), [(0, False), (1, False), (2, False), (0, True), (2, True)])
def test_every_stretch_decodes_alone(tmp_path: Path, threads: int, heads: bool) -> None:
    """Reads anywhere (across stretches and parts, at the seek points, at the end) give the tar's
    bytes, and no stretch needs rapidgzip: every bit position of a seek point rejoins, whether a
    stretch is decoded whole (libdeflate) or only its head (zlib-ng, its compressed bytes read as it
    goes: `heads`, where the reads expected need one byte of each). Threads decoding a read's later
    stretches meanwhile change no byte."""
    tar = _tar(1, 160)
    data = gzip.compress(tar, compresslevel=6, mtime=0)
    ranges = _ranges(tmp_path, data, threads)
    try:
        table = Table(ranges.table.data)
        assert len(table) >= 20 and len({int(b) % 8 for b in table.bits[1:-1]}) >= 4
        if heads:
            ranges.expect([(int(o), int(o) + 1) for o in table.offsets[:-1]])
        _check_reads(ranges, tar, 2)
        assert ranges.through_rapidgzip == 0
        assert ranges.decoded >= (len(tar) if not heads else len(tar) // 2)
        assert any(not isinstance(kept, memoryview) for kept in ranges.kept.values()) == heads
    finally:
        ranges.close()


@pytest.mark.parametrize("threads", [0, 2])
def test_several_gzip_members(tmp_path: Path, threads: int) -> None:
    """A stream of several gzip members (`cat a.gz b.gz`): a stretch that crosses a member's end is
    read through rapidgzip, and every read is still the tar's bytes."""
    tar = _tar(3, 120)
    third = len(tar) // 3
    data = b"".join(gzip.compress(tar[i : i + third], mtime=0) for i in range(0, len(tar), third))
    ranges = _ranges(tmp_path, data, threads, parts=2)
    try:
        _check_reads(ranges, tar, 4)
        assert ranges.through_rapidgzip >= 1
    finally:
        ranges.close()


def test_damaged_stretch_is_an_error(tmp_path: Path) -> None:
    """Bytes changed after listing (the index no longer fits) end in an error, never other bytes."""
    tar = _tar(5, 60)
    data = bytearray(gzip.compress(tar, compresslevel=6, mtime=0))
    index = _index(bytes(data))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    path = tmp_path / "x.tar.gz"
    path.write_bytes(bytes(data))
    fs = Store(str(tmp_path)).fs
    opener = lambda: PartsFile(fs, [str(path)], [len(data)], [str(path)], False)  # noqa: E731
    ranges = GzipRanges(opener, index, SPACING, 2)
    try:
        with pytest.raises((ValueError, RuntimeError)):
            for start in range(0, len(tar), SPACING):
                ranges.seek(start)
                assert ranges.read(SPACING) == tar[start : start + SPACING]
    finally:
        ranges.close()


@pytest.mark.parametrize("threads", [0, 2])
def test_expected_reads_decode_only_the_heads_they_need(tmp_path: Path, threads: int) -> None:
    """Told the reads to come, a stretch they need only the head of is decoded that far and no
    further; a later read deeper into it goes on from there; every read is the tar's bytes."""
    tar = _tar(7, 160)
    ranges = _ranges(tmp_path, gzip.compress(tar, compresslevel=6, mtime=0), threads)
    try:
        offsets = [int(o) for o in ranges.table.offsets]
        assert len(offsets) >= 6
        size = offsets[3] - offsets[2]
        head = (offsets[2] + 100, offsets[2] + size // 3)  # in stretch 2, ending a third of the way
        across = (offsets[4] - 50, offsets[5] + 10)  # all of stretch 4, ten bytes of stretch 5
        ranges.expect([head, across])
        for start, end in (head, across):
            ranges.seek(start)
            assert ranges.read(end - start) == tar[start:end]
        decoded = ranges.decoded
        # Stretch 2 to `head`'s end, stretch 3's last 50 bytes need all of it, 4 whole, 5's first 10.
        wanted = (head[1] - offsets[2]) + (offsets[4] - offsets[3]) + (offsets[5] - offsets[4]) + 10
        assert decoded == wanted
        deeper = (offsets[2] + size // 2, offsets[2] + size // 2 + 1000)  # not expected: goes on
        ranges.seek(deeper[0])
        assert ranges.read(1000) == tar[deeper[0] : deeper[1]]
        assert ranges.decoded == decoded + (deeper[1] - head[1])
        assert ranges.through_rapidgzip == 0
        ranges.expect([])  # nothing said: whole stretches again
        _check_reads(ranges, tar, 8)
    finally:
        ranges.close()


class _Counting(PartsFile):
    """Parts that count the compressed bytes read through them."""

    read = 0

    def readinto(self, buffer: Any) -> int:
        got = super().readinto(buffer)
        _Counting.read += got
        return got


def test_a_head_reads_only_the_compressed_bytes_it_decodes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A head needing a tenth of its stretch reads about a tenth of the stretch's compressed bytes
    (the parts may be an object store), each once, not all of them."""
    monkeypatch.setattr(gzseek, "_FEED", 2048)  # stretches here are ~50 KB: feed it in small steps
    tar = _tar(11, 160)
    ranges = _ranges(tmp_path, gzip.compress(tar, compresslevel=6, mtime=0), 0, reader=_Counting)
    try:
        table = ranges.table
        low, size = int(table.offsets[3]), int(table.offsets[4]) - int(table.offsets[3])
        compressed = (int(table.bits[4]) - int(table.bits[3])) // 8
        ranges.expect([(low, low + size // 10)])
        _Counting.read = 0
        ranges.seek(low)
        assert ranges.read(size // 10) == tar[low : low + size // 10]
        assert _Counting.read < compressed // 3
    finally:
        ranges.close()


def test_a_read_past_a_kept_decoder_state_goes_on_from_it(tmp_path: Path) -> None:
    """Where a head stopped, its decoder's state is kept: once the head itself is dropped, a read
    that starts further into the stretch decodes from that state, not from the seek point."""
    tar = _tar(7, 160)
    ranges = _ranges(tmp_path, gzip.compress(tar, compresslevel=6, mtime=0), 0)
    try:
        offsets = [int(o) for o in ranges.table.offsets]
        assert len(offsets) >= 14
        low, size = offsets[2], offsets[3] - offsets[2]
        first, later = (low + 100, low + size // 3), (low + size // 2, low + size // 2 + 1000)
        ranges.expect([first, later])
        ranges.seek(first[0])
        assert ranges.read(first[1] - first[0]) == tar[first[0] : first[1]]
        for j in range(4, 12):  # other stretches, whole: stretch 2's head is dropped
            ranges.seek(offsets[j])
            assert ranges.read(offsets[j + 1] - offsets[j]) == tar[offsets[j] : offsets[j + 1]]
        assert 2 not in ranges.kept
        decoded = ranges.decoded
        ranges.seek(later[0])
        assert ranges.read(1000) == tar[later[0] : later[1]]
        assert ranges.decoded - decoded == later[1] - first[1]  # from where the first head stopped
    finally:
        ranges.close()


def test_expected_heads_in_several_gzip_members(tmp_path: Path) -> None:
    """A head that runs past a gzip member's end cannot go on in zlib-ng: rapidgzip reads that
    stretch, and the bytes are the tar's; a head that stops before the member's end decodes alone."""
    tar = _tar(9, 120)
    step = 10_000  # members much shorter than the seek points' spacing: some end inside a stretch
    data = b"".join(gzip.compress(tar[i : i + step], mtime=0) for i in range(0, len(tar), step))
    ranges = _ranges(tmp_path, data, 0, parts=2)
    try:
        offsets = [int(o) for o in ranges.table.offsets]
        inside = [
            end
            for low, high in zip(offsets, offsets[1:], strict=False)
            for end in range(step, len(tar), step)
            if low < end - 100 and end + 100 < high
        ]
        assert inside, "no gzip member ends inside a stretch"
        end = inside[0]
        for (start, stop), rapid in (((end - 100, end - 50), 0), ((end - 100, end + 100), 1)):
            ranges.expect([(start, stop)])
            ranges.seek(start)
            assert ranges.read(stop - start) == tar[start:stop]
            assert ranges.through_rapidgzip == rapid
    finally:
        ranges.close()
