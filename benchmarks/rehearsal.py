"""Rehearsal at MOSEv2 size: the whole job on a generated `train.tar` of MOSEv2's shape.

The source has 5,024 videos (40-146 frames each, ~470k frames), every frame annotated with 1-3
objects (~800k masks), at a tiny resolution (32x24) so the run measures the pipeline, not JPEG
decoding. Each step runs the real command in a subprocess and is measured for wall time and peak
RSS, sampled from /proc every 20 ms: the largest single process (what `/usr/bin/time -v` reports) and
the sum over the process tree (the command plus its workers).

Steps: convert with 1 worker and with 2 (rounds interleaved, medians reported), verify (1 and 2
workers), stats, query and the loader's split index. Checks the outputs of 1 and 2 workers are
byte-identical. Targets from issue 12: speed-up >= 1.8x, convert peak RSS <= 500 MB, verify >= 150
MB/s per core, stats <= 5 s, query <= 1 s.

    python benchmarks/rehearsal.py [--videos 5024] [--rounds 1] [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import random
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.proctree import measure as run_sampled  # noqa: E402

SIZE = (32, 24)
POOL = 48  # distinct frames and masks; a frame picks one by its number
QUERY = "SELECT split, video_id, object_id FROM objects WHERE reappears ORDER BY video_id, object_id LIMIT 20"
INDEX = (
    "import sys; from mose_shards.core.manifest import read; "
    "from mose_shards.loader.index import load_index; s, d = read(sys.argv[1]); "
    "print(len(load_index(s, d, 'train').videos))"
)
TARGETS = {"speedup": 1.8, "convert_rss_mb": 500, "verify_mb_s_per_core": 150, "stats_s": 5, "query_s": 1}


def _pools(seed: int) -> tuple[list[bytes], dict[int, list[bytes]]]:
    """Tiny JPEGs, and mask PNGs (palette) with 1, 2 or 3 objects."""
    rng = np.random.default_rng(seed)
    w, h = SIZE
    jpgs = []
    for _ in range(POOL):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, "JPEG", quality=80)
        jpgs.append(buf.getvalue())
    pngs: dict[int, list[bytes]] = {}
    for objects in (1, 2, 3):
        pngs[objects] = []
        for _ in range(POOL):
            ids = np.zeros((h, w), dtype=np.uint8)
            for oid in range(1, objects + 1):
                x, y = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 6))
                ids[y : y + int(rng.integers(3, 7)), x : x + int(rng.integers(3, 9))] = oid
            image = Image.fromarray(ids, "P")
            image.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
            buf = io.BytesIO()
            image.save(buf, "PNG")
            pngs[objects].append(buf.getvalue())
    return jpgs, pngs


def generate_tar(path: Path, videos: int, seed: int = 0) -> dict[str, int]:
    """A MOSEv2-shaped train.tar: JPEGImages/ then Annotations/, as the dataset ships."""
    rng = random.Random(seed)
    jpgs, pngs = _pools(seed)
    plan = []
    for v in range(videos):
        start = rng.choice((0, 0, 0, rng.randrange(0, 3000)))  # MOSEv2 names may start past zero
        plan.append(
            (f"{v:05d}{rng.getrandbits(24):06x}", start, rng.randint(40, 146), rng.choice((1, 1, 2, 2, 3)))
        )
    frames = masks = 0
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        for kind, ext in (("JPEGImages", "jpg"), ("Annotations", "png")):
            for video_id, start, count, objects in plan:
                for i in range(count):
                    data = jpgs[(i * 7 + start) % POOL] if ext == "jpg" else pngs[objects][(i * 5) % POOL]
                    info = tarfile.TarInfo(f"train/{kind}/{video_id}/{start + i:08d}.{ext}")
                    info.size, info.mtime, info.mode = len(data), 0, 0o644
                    archive.addfile(info, io.BytesIO(data))
                    if ext == "jpg":
                        frames += 1
                    else:
                        masks += objects
    return {"videos": videos, "frames": frames, "masks": masks, "bytes": path.stat().st_size}


def measure(command: list[str]) -> dict[str, float]:
    """Wall seconds, peak tree RSS and peak single-process RSS (MB) of one command."""
    result = run_sampled(command, interval=0.02)
    if result.returncode != 0:
        print(f"FAILED ({result.returncode}): {' '.join(command)}: {result.stderr[-500:]}")
        return {"seconds": float("nan"), "rss_sum_mb": float("nan"), "rss_max_mb": float("nan")}
    return {
        "seconds": result.seconds,
        "rss_sum_mb": result.rss_tree / 1e6,
        "rss_max_mb": result.rss_largest / 1e6,
    }


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mose_shards.cli", *args]


def digest_tree(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".mose-shards" not in p.parts):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=5024)
    parser.add_argument("--rounds", type=int, default=1, help="convert rounds per worker count (interleaved)")
    parser.add_argument("--work", help="folder for the source and outputs (default: a temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="mose-rehearsal-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        run(work, args.videos, args.rounds)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(work: Path, videos: int, rounds: int) -> None:
    src = work / "train.tar"
    started = time.perf_counter()
    shape = generate_tar(src, videos)
    took = time.perf_counter() - started
    print(f"source: {shape['videos']} videos, {shape['frames']} frames, {shape['masks']} masks, "
          f"{shape['bytes'] / 1e9:.2f} GB train.tar (generated in {took:.0f}s)")  # fmt: skip
    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    digests: dict[int, str] = {}
    for _ in range(rounds):
        for workers in (1, 2):
            out = work / f"out-{workers}"
            shutil.rmtree(out, ignore_errors=True)
            command = cli(
                "convert", str(src), str(out), "--pipeline", "mose-v2", "--workers", str(workers), "-q"
            )
            results[workers].append(measure(command))
            digests[workers] = digest_tree(out)
            print(f"convert, {workers} worker(s): {_fmt(results[workers][-1])}")
    med = {w: {k: statistics.median(r[k] for r in results[w]) for k in results[w][0]} for w in results}
    speedup = med[1]["seconds"] / med[2]["seconds"]
    out = work / "out-2"
    manifest = json.loads((out / "manifest.json").read_text())
    shard_bytes = sum(s["bytes"] for split in manifest["splits"].values() for s in split["shards"])
    steps = {
        "verify, 1 worker": cli("verify", str(out), "-q", "--workers", "1"),
        "verify, 2 workers": cli("verify", str(out), "-q", "--workers", "2"),
        "stats": cli("stats", str(out), "--json"),
        "query": cli("query", str(out), QUERY),
        "loader index": [sys.executable, "-c", INDEX, str(out)],
    }  # fmt: skip
    measured = {name: measure(command) for name, command in steps.items()}
    for name, m in measured.items():
        print(f"{name}: {_fmt(m)}")
    verify_rate = shard_bytes / 1e6 / measured["verify, 1 worker"]["seconds"]
    verify_rate2 = shard_bytes / 1e6 / measured["verify, 2 workers"]["seconds"] / 2
    print()
    same = digests[1] == digests[2]
    print(f"shards: {shard_bytes / 1e9:.2f} GB; outputs of 1 and 2 workers identical: {same}")
    rows = [
        ("speed-up, 2 workers vs 1 (whole run)", f"{speedup:.2f}x", f">= {TARGETS['speedup']}x"),
        ("convert peak RSS, largest process (1 / 2 workers)",
         f"{med[1]['rss_max_mb']:.0f} / {med[2]['rss_max_mb']:.0f} MB", f"<= {TARGETS['convert_rss_mb']} MB"),
        ("convert peak RSS, process tree (1 / 2 workers)",
         f"{med[1]['rss_sum_mb']:.0f} / {med[2]['rss_sum_mb']:.0f} MB", ""),
        ("verify per core (1 worker / 2 workers)", f"{verify_rate:.0f} / {verify_rate2:.0f} MB/s",
         f">= {TARGETS['verify_mb_s_per_core']} MB/s"),
        ("stats", f"{measured['stats']['seconds']:.2f} s", f"<= {TARGETS['stats_s']} s"),
        ("query", f"{measured['query']['seconds']:.2f} s", f"<= {TARGETS['query_s']} s"),
        ("loader index (train)", f"{measured['loader index']['seconds']:.2f} s", ""),
    ]  # fmt: skip
    for name, value, target in rows:
        print(f"{name:52s} {value:>18s}   {target}")
    if digests[1] != digests[2]:
        raise SystemExit("the outputs of 1 and 2 workers differ")


def _fmt(m: dict[str, float]) -> str:
    rss = f"peak RSS {m['rss_max_mb']:.0f} MB largest process, {m['rss_sum_mb']:.0f} MB tree"
    return f"{m['seconds']:.1f} s, {rss}"


if __name__ == "__main__":
    main()
