"""mBOR speed: the vectorised kernel against a per-frame loop measured in the same run.

A masks table of MOSE train's shape (about 430k masks over 2,149 videos: ~5 objects per annotated
frame, fewer or more on some) is made up in memory; `stats.frame_bors` computes every frame's BOR
at once, grouped by box count, and the baseline calls the same exact per-frame routine
(`stats.union_area`) in a Python loop. Both results must agree; the ratio baseline / vectorised is
the speed-up.

    python benchmarks/stats.py [--frames 20000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from mose_shards.analytics import stats


def masks_table(frames: int, seed: int = 0) -> pa.Table:
    """`frames` annotated frames with 1..12 boxes each (mean ~5) in 1280x720, as masks-table columns."""
    rng = np.random.default_rng(seed)
    counts = np.clip(rng.poisson(4.5, frames) + 1, 1, 12)
    rows = int(counts.sum())
    xy = rng.integers(0, 1100, size=(rows, 2))
    wh = rng.integers(4, 300, size=(rows, 2))
    frame_of = np.repeat(np.arange(frames), counts)
    return pa.table(
        {
            "video_id": pa.array((frame_of // 200).astype(str)),
            "frame_index": pa.array(frame_of % 200, pa.int32()),
            "area": pa.array(wh.prod(axis=1)),
            "bbox": pa.array(np.column_stack([xy, wh]).tolist(), pa.list_(pa.int32())),
        }
    )


def baseline(table: pa.Table) -> np.ndarray:
    """One frame at a time: the union areas of its boxes with the exact per-frame routine."""
    rows = table.select(["video_id", "frame_index", "bbox"]).to_pylist()
    frames: dict[tuple[str, int], list[list[int]]] = {}
    for row in rows:
        x, y, w, h = row["bbox"]
        frames.setdefault((row["video_id"], row["frame_index"]), []).append([x, y, x + w, y + h])
    out = [stats.union_area(np.array(b), 2) / stats.union_area(np.array(b), 1) for b in frames.values()]
    return np.array(out)


def best_of(repeat: int, fn: Callable[[pa.Table], np.ndarray], table: pa.Table) -> tuple[float, np.ndarray]:
    """The best wall time of `repeat` runs, and the result."""
    best, result = float("inf"), np.zeros(0)
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn(table)
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frames", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    table = masks_table(args.frames)
    fast_s, fast = best_of(args.repeat, stats.frame_bors, table)
    slow_s, slow = best_of(args.repeat, baseline, table)
    assert np.isclose(np.mean(fast), np.mean(slow)), "vectorised and per-frame mBOR disagree"
    print(f"{args.frames} frames, {table.num_rows} masks, mbor {np.mean(fast):.4f}")
    print(f"  per-frame loop  {slow_s:8.3f} s  {args.frames / slow_s:10.0f} frames/s")
    print(f"  vectorised      {fast_s:8.3f} s  {args.frames / fast_s:10.0f} frames/s")
    print(f"  speed-up        {slow_s / fast_s:8.1f}x")


if __name__ == "__main__":
    main()
