"""Shipped archives: converting the Hub layout (split .tar.gz parts) against the extracted folder.

Three measurements, each against a baseline run in the same script:

1. `mose-shards convert` of the Hub layout (train.tar.gz.aa..ac, valid.tar.gz, SHA256SUMS, checked)
   against the same command on the extracted folder: both pinned to one core with 1 worker (no
   decoding beside the conversion: the work's own ratio), then 1 and 2 workers on every core (the
   listing decodes with rapidgzip's threads, each worker decodes the next stretch and reads the next
   video in threads of their own: the parallel decoder). Rounds alternate folder and archive; the
   ratio is median wall(folder) / median wall(archive): 1.0 means as fast as the folder. CPU
   seconds and peak RSS are the command plus its workers, sampled from /proc every 10 ms; on a
   shared machine the CPU ratio is the steadier one (other jobs stretch walls, not CPU time).
2. Reading a gzip stream in three parts (~200 MB: the generated train split's tar, repeated): the
   listing's decoder (rapidgzip, 1 and 2 threads, through our PartsFile, sha256 of every part) and
   the conversion's (libdeflate, a stretch between seek points per call; alone and with the next
   stretch decoded ahead), against Python's zlib on the same bytes.
3. Listing a tar of many tiny members (MOSEv2 has 933k): our header scanner against `tarfile`, and
   a rerun that loads the listing saved under OUT/.mose-shards/sources instead.
4. Listing checkpoints: listing a .tar.gz in three parts (JPEG-like members, hashed) with
   checkpoints saved under OUT (seek points captured as they pass; the default interval, and one
   every 1/10 of the tar) against the same listing without; and a listing that goes on from a
   checkpoint halfway against the whole listing from the start.

The default source has MOSEv2's shape: 1920x1080 frames of ~170 KB (its 85 GB over ~500k frames;
JPEG quality 75 gives that on the generated frames) in tars whose videos are in no id order, as GNU
tar writes a folder (the order the file system lists it).

    python benchmarks/archives.py [--videos 12] [--frames 20] [--size 1920x1080] [--jpeg-quality 75]
                                  [--order shuffled|sorted] [--shard-size 24MB] [--repeat 3]
                                  [--members 200000] [--stream-mb 200]
                                  [--only convert|stream|checkpoints]

    # DAVIS / YouTube-VOS-like frames (640x480, ~46 KB): the gzip costs more per frame's work
    python benchmarks/archives.py --videos 24 --size 640x480 --jpeg-quality 90 --shard-size 8MB
    # heavy frames (1080p JPEGs of ~440 KB): the conversion costs less per MB, the gzip as much
    python benchmarks/archives.py --videos 8 --jpeg-quality 90 --order sorted --only convert
    # MOSEv2's seek-point spacing (~13 MB at 85 GB) and videos of ~70 frames
    MOSE_SHARDS_TEST_LISTING='{"spacing": 13000000}' python benchmarks/archives.py --videos 8 \
        --frames 70 --shard-size 48MB --only convert
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.proctree import convert_command, measure  # noqa: E402
from mose_shards import archives  # noqa: E402
from mose_shards.archives import gzcheckpoints, gzindex
from mose_shards.archives import listing as archive_listing
from mose_shards.archives.gzseek import GzipRanges
from mose_shards.core import tarscan  # noqa: E402
from mose_shards.core.storage import Store
from mose_shards.synth import SynthSpec, generate, parse_size

PAGE = os.sysconf("SC_PAGE_SIZE")


def ship(raw: Path, dest: Path, shuffled: bool = False) -> Path:
    """The Hugging Face layout of `raw`: train.tar.gz cut in three parts, valid.tar.gz, SHA256SUMS.
    `shuffled`: the videos in no id order (GNU tar writes a folder as the file system lists it),
    each video's files together, frames before masks."""
    dest.mkdir(parents=True)
    rng = random.Random(0)
    for split in ("train", "valid"):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            if not shuffled:
                archive.add(raw / split, arcname=split)
            for kind in ("JPEGImages", "Annotations") if shuffled else ():
                videos = sorted((raw / split / kind).iterdir())
                rng.shuffle(videos)
                for video in videos:
                    for path in sorted(video.iterdir()):
                        archive.add(path, arcname=f"{split}/{kind}/{video.name}/{path.name}")
        data = gzip.compress(buffer.getvalue(), compresslevel=6)
        if split == "valid":
            (dest / "valid.tar.gz").write_bytes(data)
        else:
            _three_parts(data, dest / "train.tar.gz")
    _write_sums(dest)
    return dest


def _three_parts(data: bytes, stem: Path) -> None:
    """`data` cut as the Hub cuts MOSEv2's train: STEM.aa, STEM.ab, STEM.ac."""
    third = -(-len(data) // 3)
    for i, suffix in enumerate(("aa", "ab", "ac")):
        stem.with_name(f"{stem.name}.{suffix}").write_bytes(data[i * third : (i + 1) * third])


def _write_sums(folder: Path) -> None:
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted(folder.iterdir())]
    (folder / "SHA256SUMS").write_text("\n".join(sums) + "\n")


# Runs a command on the first core only: nothing (listing threads, a read-ahead thread, a decoder
# thread) runs beside the conversion, so the ratio is the work's own.
ONE_CORE = [sys.executable, "-c",
            "import os, sys; os.sched_setaffinity(0, {0}); os.execv(sys.argv[1], sys.argv[1:])"]  # fmt: skip


def run(
    source: Path, out: Path, workers: int, shard_size: str, one_core: bool = False
) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the command and its workers, peak RSS bytes) of one conversion."""
    shutil.rmtree(out, ignore_errors=True)
    command = convert_command(str(source), str(out), workers, shard_size)
    result = measure([*ONE_CORE, *command] if one_core else command)
    if result.returncode != 0:
        raise SystemExit(f"convert failed with exit code {result.returncode}: {result.stderr[-500:]}")
    return result.seconds, result.cpu_seconds, result.rss_tree


def convert_rounds(raw: Path, shipped: Path, tmp: Path, repeat: int, shard: str) -> None:
    """Wall and CPU seconds (the command and its workers) of folder and archive, in turns.
    On a shared machine the CPU ratio is the steadier one: other jobs stretch walls, not CPU time.
    First both on one core: nothing decodes beside the conversion (no parallel decoder)."""
    for workers, one_core in ((1, True), (1, False), (2, False)):
        walls: dict[str, list[float]] = {"folder": [], "archive": []}
        cpus: dict[str, list[float]] = {"folder": [], "archive": []}
        peaks: dict[str, int] = {"folder": 0, "archive": 0}
        for _ in range(repeat):
            for name, source in (("folder", raw), ("archive", shipped)):
                wall, cpu, peak = run(source, tmp / f"out-{name}", workers, shard, one_core)
                cpus[name].append(cpu)
                walls[name].append(wall)
                peaks[name] = max(peaks[name], peak)
        folder, archive = statistics.median(walls["folder"]), statistics.median(walls["archive"])
        cpu_folder, cpu_archive = statistics.median(cpus["folder"]), statistics.median(cpus["archive"])
        where = "one core" if one_core else f"{os.cpu_count()} cores"
        print(
            f"convert, {workers} worker(s), {where}: folder {folder:.2f} s, "
            f"split .tar.gz parts {archive:.2f} s; "
            f"ratio {folder / archive:.2f}x the folder's speed (target >= 0.8); CPU {cpu_folder:.2f} s "
            f"vs {cpu_archive:.2f} s, ratio {cpu_folder / cpu_archive:.2f}; "
            f"peak RSS {peaks['folder'] / 1e6:.0f} MB vs {peaks['archive'] / 1e6:.0f} MB",
            flush=True,
        )


def stream_parts(dest: Path, megabytes: int, raw: Path) -> Path:
    """A gzip stream of ~`megabytes` MB in three parts: the tar of the generated train split (JPEG
    frames, PNG masks: deflate codes them in Huffman blocks, as it does real frames), repeated."""
    dest.mkdir()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(raw / "train", arcname="train")
    tar = buffer.getvalue()
    data = gzip.compress(tar * max(1, round(megabytes * 1e6 / len(tar))), compresslevel=6)
    third = -(-len(data) // 3)
    for i, suffix in enumerate(("aa", "ab", "ac")):
        (dest / f"train.tar.gz.{suffix}").write_bytes(data[i * third : (i + 1) * third])
    return dest


def gzip_throughput(shipped: Path, repeat: int) -> None:
    parts = sorted(shipped.glob("train.tar.gz.*"))
    local = Store(str(shipped))
    archive = archives.group_parts(
        {p.name: local.fs.info(str(p)) for p in parts}, str(shipped), str(shipped)
    )[0]
    whole = b"".join(p.read_bytes() for p in parts)
    out_bytes = 0

    def with_zlib() -> float:
        nonlocal out_bytes
        start = time.perf_counter()
        inflater, hasher, out_bytes = zlib.decompressobj(31), hashlib.sha256(), 0
        for offset in range(0, len(whole), 1 << 20):
            chunk = whole[offset : offset + (1 << 20)]
            hasher.update(chunk)
            out_bytes += len(inflater.decompress(chunk))
        return time.perf_counter() - start

    def with_stretches(threads: int) -> float:
        start = time.perf_counter()
        ranges = GzipRanges(lambda: archive.open(local.fs), index, spacing, threads)
        try:
            while ranges.read(32 << 20):  # a run of members, as a video's frames are
                pass
        finally:
            ranges.close()
        return time.perf_counter() - start

    def with_rapidgzip(threads: int) -> float:
        start = time.perf_counter()
        with archive.open(local.fs, hashing=True) as raw:
            gz = gzindex.load_rapidgzip().RapidgzipFile(raw, parallelization=threads, chunk_size=4 << 20)
            try:
                while gz.read(4 << 20):
                    pass
            finally:
                gz.close()
            raw.finish_hashes()
        return time.perf_counter() - start

    spacing = archive_listing.chunk_size(archive)
    index = archive_listing.scan(local.fs, archive, None, 1).index  # the seek index a listing builds
    assert index is not None
    names = ["zlib", "rapidgzip x1", "rapidgzip x2"]
    names += ["libdeflate stretches", "libdeflate stretches, 1 more thread"]
    times: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeat):
        times["zlib"].append(with_zlib())
        times["rapidgzip x1"].append(with_rapidgzip(1))
        times["rapidgzip x2"].append(with_rapidgzip(2))
        times["libdeflate stretches"].append(with_stretches(0))
        times["libdeflate stretches, 1 more thread"].append(with_stretches(1))
    base = statistics.median(times["zlib"])
    for name, values in times.items():
        wall = statistics.median(values)
        print(
            f"gzip stream ({len(whole) / 1e6:.0f} MB compressed"
            f"{'' if name.startswith('libdeflate') else ', sha256 of the parts too'}), {name}: "
            f"{out_bytes / wall / 1e6:.0f} MB/s out, {base / wall:.2f}x zlib"
        )


def tar_listing(tmp: Path, members: int, repeat: int) -> None:
    path = tmp / "tiny.tar"
    with tarfile.open(path, "w") as archive:
        for i in range(members):
            info = tarfile.TarInfo(f"train/JPEGImages/v{i // 100:05d}/{i % 100:08d}.jpg")
            info.size = 300 + i % 700
            archive.addfile(info, io.BytesIO(bytes(info.size)))
    local = Store(str(tmp))
    archive = archives.archive_at(local.fs, str(path), str(path))
    assert archive is not None
    cache = Store(str(tmp / "out"))
    times: dict[str, list[float]] = {"tarfile": [], "scanner": [], "saved": []}
    for _ in range(repeat):
        start = time.perf_counter()
        with tarfile.open(path) as reader:
            count = sum(1 for _ in reader)
        times["tarfile"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with open(path, "rb") as fh:
            assert sum(1 for _ in tarscan.scan(fh, str(path))) == count
        times["scanner"].append(time.perf_counter() - start)
        archives.load_or_scan(local.fs, archive, cache, None)  # saves the listing (first round)
        start = time.perf_counter()
        archives.load_or_scan(local.fs, archive, cache, None)
        times["saved"].append(time.perf_counter() - start)
    base = statistics.median(times["tarfile"])
    for name, values in times.items():
        wall = statistics.median(values)
        print(f"listing a tar of {count} members, {name}: {wall:.2f} s, {base / wall:.1f}x tarfile")


def listing_parts(dest: Path, megabytes: int) -> Path:
    """A .tar.gz of ~`megabytes` MB of JPEG-like members (60-400 KB), in three parts, with SHA256SUMS."""
    dest.mkdir()
    rng = random.Random(1)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        written, number = 0, 0
        while written < megabytes * 1_000_000:
            size = rng.randrange(60_000, 400_000)
            data = rng.randbytes(size * 4 // 5) + bytes(size - size * 4 // 5)
            info = tarfile.TarInfo(f"train/JPEGImages/v{number // 100:05d}/{number % 100:05d}.jpg")
            info.size = size
            archive.addfile(info, io.BytesIO(data))
            written, number = written + size, number + 1
    _three_parts(gzip.compress(buffer.getvalue(), compresslevel=6), dest / "train.tar.gz")
    _write_sums(dest)
    return dest


class _Stop(Exception):
    pass


def checkpoint_cost(shipped: Path, tmp: Path, repeat: int) -> None:
    """Listing throughput with checkpoints against without, and going on from one halfway."""
    from mose_shards.archives import find_sums

    local = Store(str(shipped))
    parts = sorted(shipped.glob("train.tar.gz.*"))
    archive = archives.group_parts(
        {p.name: local.fs.info(str(p)) for p in parts}, str(shipped), str(shipped)
    )[0]
    sums = find_sums(local.fs, str(shipped), str(shipped), archive.names)
    tar_size = 0

    def listing(every: int | None) -> float:
        nonlocal tar_size
        cache = Store(str(tmp / "ckpt-out"))
        shutil.rmtree(tmp / "ckpt-out", ignore_errors=True)
        if every is not None:
            os.environ[gzcheckpoints.TEST_HOOKS] = json.dumps({"every": every})
        start = time.perf_counter()
        try:
            found = archive_listing.scan(local.fs, archive, sums, 1, cache if every is not None else None)
        finally:
            os.environ.pop(gzcheckpoints.TEST_HOOKS, None)
        tar_size = found.members[-1].following
        return time.perf_counter() - start

    def half_of_listing(resumed: bool) -> float:
        """The second half of the tar, going on from a checkpoint; or the whole listing from the start."""
        cache = Store(str(tmp / "ckpt-half"))
        shutil.rmtree(tmp / "ckpt-half", ignore_errors=True)
        os.environ[gzcheckpoints.TEST_HOOKS] = json.dumps({"every": tar_size // 2})
        original = gzcheckpoints.Checkpoints.save

        def save_then_stop(self: gzcheckpoints.Checkpoints, *args: object) -> None:
            original(self, *args)  # type: ignore[arg-type]
            raise _Stop

        gzcheckpoints.Checkpoints.save = save_then_stop  # type: ignore[method-assign]
        try:
            archive_listing.scan(local.fs, archive, sums, 1, cache)
        except _Stop:
            pass
        finally:
            gzcheckpoints.Checkpoints.save = original  # type: ignore[method-assign]
        os.environ[gzcheckpoints.TEST_HOOKS] = json.dumps({"every": 1 << 62})
        try:
            start = time.perf_counter()
            archive_listing.scan(local.fs, archive, sums, 1, cache if resumed else None)
            return time.perf_counter() - start
        finally:
            os.environ.pop(gzcheckpoints.TEST_HOOKS, None)

    listing(None)  # warm the page cache
    times: dict[str, list[float]] = {"none": [], "default": [], "tenth": []}
    halves: dict[str, list[float]] = {"resumed": [], "whole": []}
    for _ in range(repeat):
        times["none"].append(listing(None))
        times["default"].append(listing(gzcheckpoints.EVERY))
        times["tenth"].append(listing(max(1, tar_size // 10)))
        halves["resumed"].append(half_of_listing(True))
        halves["whole"].append(half_of_listing(False))
    base = statistics.median(times["none"])
    labels = {
        "none": "no checkpoints",
        "default": f"checkpoints every {gzcheckpoints.EVERY >> 30} GiB (none here: seek points only)",
        "tenth": "a checkpoint every tenth of the tar",
    }
    for name, values in times.items():
        wall = statistics.median(values)
        print(f"listing a {tar_size / 1e6:.0f} MB .tar.gz (3 parts, hashed), {labels[name]}: "
              f"{tar_size / wall / 1e6:.0f} MB/s, {base / wall:.2f}x no checkpoints")  # fmt: skip
    each = (statistics.median(times["tenth"]) - base) / 10
    rate = tar_size / base
    print(f"one checkpoint costs {each * 1e3:.0f} ms: at one every {gzcheckpoints.EVERY >> 30} GiB of tar, "
          f"{each / (gzcheckpoints.EVERY / rate) * 100:.1f}% of this listing's time")  # fmt: skip
    resumed, whole = statistics.median(halves["resumed"]), statistics.median(halves["whole"])
    half = tar_size - tar_size // 2
    print(f"going on from a checkpoint halfway: {resumed:.2f} s ({half / resumed / 1e6:.0f} MB/s), "
          f"against {whole:.2f} s listing all from the start ({tar_size / whole / 1e6:.0f} MB/s): "
          f"{whole / resumed:.2f}x")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=12)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument(
        "--jpeg-quality", type=int, default=75,
        help="of the generated frames; 75 at 1920x1080 gives ~170 KB a frame, MOSEv2's average",
    )  # fmt: skip
    parser.add_argument("--shard-size", default="24MB")
    parser.add_argument(
        "--order", choices=["shuffled", "sorted"], default="shuffled",
        help="of the videos in the shipped tars: shuffled as GNU tar writes a folder (readdir order)",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--stream-mb", type=int, default=200, help="size of the gzip stream read alone")
    only = ["convert", "stream", "checkpoints"]
    parser.add_argument("--only", choices=only, help="run one measurement only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mose-archives-") as name:
        tmp = Path(name)
        if args.only == "checkpoints":
            checkpoint_cost(listing_parts(tmp / "listing", args.stream_mb), tmp, args.repeat)
            return
        spec = SynthSpec(
            videos=args.videos, frames=args.frames, size=parse_size(args.size), jpeg_quality=args.jpeg_quality
        )
        raw = generate(tmp / "raw", spec=spec)
        shipped = ship(raw, tmp / "shipped", shuffled=args.order == "shuffled")
        mb = sum(p.stat().st_size for p in shipped.iterdir()) / 1e6
        print(
            f"source: {2 * args.videos} videos, {2 * args.videos * args.frames} frames, {mb:.0f} MB shipped, "
            f"videos {args.order} in the tars"
        )
        if args.only != "stream":
            convert_rounds(raw, shipped, tmp, args.repeat, args.shard_size)
        if args.only == "convert":
            return
        gzip_throughput(stream_parts(tmp / "stream", args.stream_mb, raw), args.repeat)
        if args.only == "stream":
            return
        tar_listing(tmp, args.members, args.repeat)
        checkpoint_cost(listing_parts(tmp / "listing", args.stream_mb), tmp, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
