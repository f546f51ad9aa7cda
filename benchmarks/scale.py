"""Scale: the speed-up of 2 worker processes over 1, and peak memory at two dataset sizes.

Each configuration runs the real `mose-shards convert` command in a subprocess. Peak RSS is the
largest sum, over the command and all its worker processes, of their resident memory, sampled from
/proc every 10 ms (Linux). Memory is bounded when the peak at the larger size is about the peak at
the smaller one (ratio ~1.0), whatever the dataset size; the speed-up is wall(1 worker) / wall(2),
each the best of --repeat runs, 1 and 2 workers taking turns so a noisy neighbour hits both alike.

    python benchmarks/scale.py [--videos 64] [--frames 20] [--size 640x480] [--shard-size 4MB] [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.proctree import convert_command, measure  # noqa: E402
from mose_shards.synth import SynthSpec, generate, parse_size  # noqa: E402


def run(raw: Path, out: Path, workers: int, shard_size: str) -> tuple[float, int]:
    """(wall seconds, peak tree RSS bytes) of one conversion."""
    shutil.rmtree(out, ignore_errors=True)
    result = measure(convert_command(str(raw), str(out), workers, shard_size))
    if result.returncode != 0:
        raise SystemExit(f"convert failed with exit code {result.returncode}: {result.stderr[-500:]}")
    return result.seconds, result.rss_tree


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=64, help="videos at the smaller size (doubled after)")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--size", default="640x480")
    parser.add_argument("--shard-size", default="4MB")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    size = parse_size(args.size)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mose-scale-") as tmp:
        for factor in (1, 2):
            spec = SynthSpec(videos=args.videos * factor, frames=args.frames, size=size, splits=("train",))
            raw = generate(Path(tmp) / f"raw{factor}", spec=spec)
            source_mb = sum(p.stat().st_size for p in raw.rglob("*") if p.is_file()) / 1e6
            frames = spec.videos * spec.frames
            best: dict[int, tuple[float, int]] = {}
            for _ in range(args.repeat):
                for workers in (1, 2):
                    wall, peak = run(raw, Path(tmp) / "out", workers, args.shard_size)
                    old = best.get(workers, (wall, peak))
                    best[workers] = (min(wall, old[0]), max(peak, old[1]))
            for workers, (wall, peak) in sorted(best.items()):
                rows.append((factor, workers, frames, source_mb, wall, peak))
                print(
                    f"{frames:>5} frames ({source_mb:6.1f} MB)  workers={workers}  {wall:6.2f} s  "
                    f"{frames / wall:6.1f} frames/s  peak RSS {peak / 1e6:6.1f} MB",
                    flush=True,
                )
    _ratios(rows)


def _ratios(rows: list[tuple[int, int, int, float, float, int]]) -> None:
    by = {(factor, workers): (wall, peak) for factor, workers, _, _, wall, peak in rows}
    cores = len(os.sched_getaffinity(0))
    for factor in (1, 2):
        speedup = by[(factor, 1)][0] / by[(factor, 2)][0]
        print(f"speed-up of 2 workers over 1 at size x{factor}: {speedup:.2f} (ideal 2.00; {cores} cores)")
    for workers in (1, 2):
        growth = by[(2, workers)][1] / by[(1, workers)][1]
        print(f"peak RSS at 2x the data / at 1x, workers={workers}: {growth:.2f} (bounded memory: ~1.00)")


if __name__ == "__main__":
    main()
