"""Construction time of a mixture: three MOSEv2-size sources with SQL `where` subsets, against one source.

MOSEv2's train split has about 5,024 videos and 470k frames. Three outputs of that shape are made up
(manifest and tables only: constructing a dataset reads the tables, never a shard), then
`ClipDataset` is built, in rounds that interleave the two sides:

- single:  ClipDataset(A)
- mixture: ClipDataset([Source(A, where=<reappearing objects>), Source(B, repeat=0.5, where=<long
  videos>), Source(C, frame_interval=5)])

and the medians are reported as ratios to the single source. The mixture reads three frames tables, so
its floor is about 3x; the same three sources without `where` are measured too, to show what the two
DuckDB queries over the views add.

    .venv/bin/python benchmarks/mixture.py [--videos 5024] [--frames 94] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mose_shards.core import manifest  # noqa: E402
from mose_shards.core.schema import TABLES, schema_versions, table_schema  # noqa: E402
from mose_shards.loader import ClipDataset, Source  # noqa: E402

VIDEOS_PER_SHARD = 40
REAPPEARING = "video_id IN (SELECT video_id FROM objects WHERE reappears)"
LONG = "num_frames >= 90"


def _table(name: str, columns: dict[str, object]) -> pa.Table:
    schema = table_schema(name)
    return pa.table({f.name: pa.array(columns[f.name], f.type) for f in schema}, schema=schema)


def _shard_tables(
    rng: np.random.Generator, prefix: str, first: int, count: int, mean: int, shard: str
) -> tuple[dict[str, pa.Table], int, int]:
    """Frames, videos, objects and masks tables of `count` videos of one shard (tar offsets consistent),
    its byte size and its frame count."""
    lengths = np.clip(rng.normal(mean, mean / 3, count).astype(np.int64), 12, 4 * mean)
    n = int(lengths.sum())
    ids = np.array([f"{prefix}{first + i:07d}" for i in range(count)])
    video = np.repeat(np.arange(count), lengths)
    frame = np.arange(n) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    sizes = rng.integers(20_000, 120_000, (n, 3))
    sizes[:, 2] = 120  # jpg, png, json; each member is a 512-byte header, then its data padded
    spans = 512 + -(-sizes // 512) * 512
    ends = np.cumsum(spans.reshape(-1)).reshape(n, 3)
    offsets = ends - spans + 512
    objects_per_video = rng.integers(1, 7, count)
    visible = rng.integers(0, objects_per_video[video] + 1)
    visible[frame == 0] = np.maximum(visible[frame == 0], 1)
    names = np.char.zfill(frame.astype(str), 5)
    frames = {"split": ["train"] * n, "video_id": ids[video], "frame_index": frame, "frame_name": names,
              "key": np.char.add(np.char.add(ids[video], "/"), names), "has_mask": np.ones(n, bool),
              "width": np.full(n, 1280), "height": np.full(n, 720), "num_objects": visible,
              "shard": [shard] * n, "jpg_offset": offsets[:, 0], "jpg_size": sizes[:, 0],
              "png_offset": offsets[:, 1], "png_size": sizes[:, 1], "json_offset": offsets[:, 2],
              "json_size": sizes[:, 2], "jpg_sha256": ["0" * 64] * n,
              "png_sha256": ["0" * 64] * n}  # fmt: skip
    per_video = np.add.reduceat(sizes, np.cumsum(lengths) - lengths)
    videos = {"split": ["train"] * count, "video_id": ids, "width": np.full(count, 1280),
              "height": np.full(count, 720), "num_frames": lengths, "num_annotated_frames": lengths,
              "num_objects": objects_per_video, "first_frame_name": ["00000"] * count,
              "last_frame_name": np.char.zfill((lengths - 1).astype(str), 5), "jpg_bytes": per_video[:, 0],
              "png_bytes": per_video[:, 1], "shard": [shard] * count}  # fmt: skip
    owner = np.repeat(np.arange(count), objects_per_video)
    m = len(owner)
    reappears = rng.random(m) < 0.3
    objects = {"split": ["train"] * m, "video_id": ids[owner],
               "object_id": np.arange(m) - np.repeat(np.cumsum(objects_per_video) - objects_per_video,
                                                     objects_per_video) + 1,
               "category": [None] * m, "first_frame_index": np.zeros(m, int),
               "last_frame_index": lengths[owner] - 1, "num_visible_frames": lengths[owner] - 2,
               "num_annotated_frames": lengths[owner], "disappears": reappears, "reappears": reappears,
               "max_area": np.full(m, 5000), "mean_area": np.full(m, 2500.0)}  # fmt: skip
    at = np.repeat(np.arange(n), visible)  # one masks row per object visible in a frame
    k = len(at)
    masks = {"split": ["train"] * k, "video_id": ids[video[at]], "frame_index": frame[at],
             "frame_name": names[at],
             "object_id": np.arange(k) - np.repeat(np.cumsum(visible) - visible, visible) + 1,
             "area": np.full(k, 4000), "bbox": [[10, 10, 50, 80]] * k, "rle": ["0"] * k,
             "height": np.full(k, 720), "width": np.full(k, 1280)}  # fmt: skip
    tables = {"frames": frames, "videos": videos, "objects": objects, "masks": masks}
    return {name: _table(name, cols) for name, cols in tables.items()}, int(ends[-1, -1]) + 1024, n


def make_output(root: Path, videos: int, mean_frames: int, seed: int) -> str:
    """A MOSEv2-shaped output of one train split: manifest and tables, no shard bytes."""
    rng = np.random.default_rng(seed)
    entry: dict = {"videos": videos, "frames": 0, "annotated_frames": 0, "masks": 0, "shards": [],
                   "tables": {t: [] for t in TABLES}, "skipped": []}  # fmt: skip
    for index, first in enumerate(range(0, videos, VIDEOS_PER_SHARD)):
        count = min(VIDEOS_PER_SHARD, videos - first)
        shard = f"shards/train-{index:06d}.tar"
        tables, size, frames = _shard_tables(rng, f"s{seed}v", first, count, mean_frames, shard)
        for name, table in tables.items():
            rel = f"tables/{name}/train-{index:06d}.parquet"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, root / rel)
            entry["tables"][name].append(rel)
        entry["shards"].append({"path": shard, "bytes": size, "sha256": f"{index:064x}",
                                "samples": frames, "videos": count})  # fmt: skip
        entry["frames"] += frames
        entry["annotated_frames"] += frames
    doc = {"format": manifest.FORMAT, "format_version": manifest.FORMAT_VERSION, "tool_version": "bench",
           "source": "generated", "options": {"void_label": None}, "schemas": schema_versions(),
           "splits": {"train": entry}}  # fmt: skip
    (root / manifest.MANIFEST).write_text(json.dumps(doc))
    return str(root)


def build_single(a: str) -> ClipDataset:
    return ClipDataset(a, split="train", clip_length=8)


def build_mixture(a: str, b: str, c: str, where: bool = True) -> ClipDataset:
    first, second = (REAPPEARING, LONG) if where else (None, None)
    sources = [Source(a, where=first), Source(b, repeat=0.5, where=second), Source(c, frame_interval=5)]
    return ClipDataset(sources, clip_length=8)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=5024)
    parser.add_argument("--frames", type=int, default=94, help="mean frames per video")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mose-shards-bench-") as tmp:
        outs = []
        for seed in range(3):
            root = Path(tmp) / f"out{seed}"
            root.mkdir()
            outs.append(make_output(root, args.videos, args.frames, seed))
        build_mixture(*outs)  # warm-up, not counted: imports, DuckDB's first connection
        single, plain, mixture, sizes = [], [], [], (0, 0)
        for _ in range(args.rounds):  # interleaved, so every side sees the same machine load
            started = time.perf_counter()
            one = build_single(outs[0])
            single.append(time.perf_counter() - started)
            started = time.perf_counter()
            build_mixture(*outs, where=False)
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            mix = build_mixture(*outs)
            mixture.append(time.perf_counter() - started)
            sizes = (len(one.items(0)), len(mix.items(0)))
        frames = sum(
            json.loads(Path(o, "manifest.json").read_text())["splits"]["train"]["frames"] for o in outs
        )
        s, p, m = (statistics.median(t) for t in (single, plain, mixture))
        print(
            f"3 outputs x {args.videos} videos, {frames:,} frames in all; "
            f"items per epoch: single {sizes[0]}, mixture {sizes[1]}"
        )
        print(f"single source:                 median {s:.2f} s over {args.rounds} rounds")
        print(f"3-source mixture, no where:    median {p:.2f} s ({p / s:.2f}x single)")
        print(
            f"3-source mixture, 2 where:     median {m:.2f} s ({m / s:.2f}x single; where adds {m / p:.2f}x)"
        )


if __name__ == "__main__":
    main()
