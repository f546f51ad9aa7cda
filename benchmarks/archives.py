"""Shipped archives: converting the Hub layout (split .tar.gz parts) against the extracted folder.

Three measurements, each against a baseline run in the same script:

1. `mose-shards convert` of the Hub layout (train.tar.gz.aa..ac, valid.tar.gz, SHA256SUMS, checked)
   against the same command on the extracted folder, with 1 worker (one gzip thread) and with 2
   (two gzip threads while listing: rapidgzip's parallel decoder). Rounds alternate folder and
   archive; the ratio is median wall(folder) / median wall(archive): 1.0 means as fast as the folder.
   CPU seconds and peak RSS are the command plus its workers, sampled from /proc every 10 ms; on a
   shared machine the CPU ratio is the steadier one (other jobs stretch walls, not CPU time).
2. Reading a gzip stream in three parts (200 MB, JPEG-like; decompress + sha256 of every part):
   rapidgzip with 1 and 2 threads through our PartsFile, against Python's zlib on the same bytes.
3. Listing a tar of many tiny members (MOSEv2 has 933k): our header scanner against `tarfile`, and
   a rerun that loads the listing saved under OUT/.mose-shards/sources instead.

    python benchmarks/archives.py [--videos 24] [--frames 20] [--size 640x480] [--repeat 3]
                                  [--members 200000] [--stream-mb 200]
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
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
from mose_shards.conversion import archives  # noqa: E402
from mose_shards.core import tarscan  # noqa: E402
from mose_shards.core.storage import Store
from mose_shards.synth import SynthSpec, generate, parse_size

PAGE = os.sysconf("SC_PAGE_SIZE")


def ship(raw: Path, dest: Path) -> Path:
    """The Hugging Face layout of `raw`: train.tar.gz cut in three parts, valid.tar.gz, SHA256SUMS."""
    dest.mkdir(parents=True)
    for split in ("train", "valid"):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.add(raw / split, arcname=split)
        data = gzip.compress(buffer.getvalue(), compresslevel=6)
        if split == "valid":
            (dest / "valid.tar.gz").write_bytes(data)
            continue
        third = -(-len(data) // 3)
        for i, suffix in enumerate(("aa", "ab", "ac")):
            (dest / f"train.tar.gz.{suffix}").write_bytes(data[i * third : (i + 1) * third])
    sums = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted(dest.iterdir())]
    (dest / "SHA256SUMS").write_text("\n".join(sums) + "\n")
    return dest


def run(source: Path, out: Path, workers: int, shard_size: str) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the command and its workers, peak RSS bytes) of one conversion."""
    shutil.rmtree(out, ignore_errors=True)
    result = measure(convert_command(str(source), str(out), workers, shard_size))
    if result.returncode != 0:
        raise SystemExit(f"convert failed with exit code {result.returncode}: {result.stderr[-500:]}")
    return result.seconds, result.cpu_seconds, result.rss_tree


def convert_rounds(raw: Path, shipped: Path, tmp: Path, repeat: int, shard: str) -> None:
    """Wall and CPU seconds (the command and its workers) of folder and archive, in turns.
    On a shared machine the CPU ratio is the steadier one: other jobs stretch walls, not CPU time."""
    for workers in (1, 2):
        walls: dict[str, list[float]] = {"folder": [], "archive": []}
        cpus: dict[str, list[float]] = {"folder": [], "archive": []}
        peaks: dict[str, int] = {"folder": 0, "archive": 0}
        for _ in range(repeat):
            for name, source in (("folder", raw), ("archive", shipped)):
                wall, cpu, peak = run(source, tmp / f"out-{name}", workers, shard)
                cpus[name].append(cpu)
                walls[name].append(wall)
                peaks[name] = max(peaks[name], peak)
        folder, archive = statistics.median(walls["folder"]), statistics.median(walls["archive"])
        cpu_folder, cpu_archive = statistics.median(cpus["folder"]), statistics.median(cpus["archive"])
        print(
            f"convert, {workers} worker(s): folder {folder:.2f} s, split .tar.gz parts {archive:.2f} s; "
            f"ratio {folder / archive:.2f}x the folder's speed (target >= 0.8); CPU {cpu_folder:.2f} s "
            f"vs {cpu_archive:.2f} s, ratio {cpu_folder / cpu_archive:.2f}; "
            f"peak RSS {peaks['folder'] / 1e6:.0f} MB vs {peaks['archive'] / 1e6:.0f} MB",
            flush=True,
        )


def stream_parts(dest: Path, megabytes: int) -> Path:
    """A gzip stream of `megabytes` MB, JPEG-like (incompressible runs, some zeros), in three parts."""
    dest.mkdir()
    rng = random.Random(0)
    chunks = [rng.randbytes(800_000) + bytes(200_000) for _ in range(megabytes)]
    data = gzip.compress(b"".join(chunks), compresslevel=6)
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

    def with_rapidgzip(threads: int) -> float:
        start = time.perf_counter()
        with archive.open(local.fs, hashing=True) as raw:
            gz = archives._rapidgzip().RapidgzipFile(raw, parallelization=threads, chunk_size=4 << 20)
            try:
                while gz.read(4 << 20):
                    pass
            finally:
                gz.close()
            raw.finish_hashes()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"zlib": [], "rapidgzip x1": [], "rapidgzip x2": []}
    for _ in range(repeat):
        times["zlib"].append(with_zlib())
        times["rapidgzip x1"].append(with_rapidgzip(1))
        times["rapidgzip x2"].append(with_rapidgzip(2))
    base = statistics.median(times["zlib"])
    for name, values in times.items():
        wall = statistics.median(values)
        print(
            f"gzip stream ({len(whole) / 1e6:.0f} MB compressed, sha256 of the parts too), {name}: "
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--shard-size", default="8MB")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--members", type=int, default=200_000)
    parser.add_argument("--stream-mb", type=int, default=200, help="size of the gzip stream read alone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mose-archives-") as name:
        tmp = Path(name)
        spec = SynthSpec(videos=args.videos, frames=args.frames, size=parse_size(args.size))
        raw = generate(tmp / "raw", spec=spec)
        shipped = ship(raw, tmp / "shipped")
        mb = sum(p.stat().st_size for p in shipped.iterdir()) / 1e6
        print(
            f"source: {2 * args.videos} videos, {2 * args.videos * args.frames} frames, {mb:.0f} MB shipped"
        )
        convert_rounds(raw, shipped, tmp, args.repeat, args.shard_size)
        gzip_throughput(stream_parts(tmp / "stream", args.stream_mb), args.repeat)
        tar_listing(tmp, args.members, args.repeat)


if __name__ == "__main__":
    sys.exit(main())
