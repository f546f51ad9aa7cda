"""The loader's split index at MOSEv2 size: build time and memory per DataLoader worker, columnar
(numpy/Arrow, what ClipDataset holds) against the per-video Python tuples it replaced, in one run.

A frames table and a masks table of MOSEv2's shape (5,024 videos, ~470k frames, 1-6 objects per
frame) are generated as local Parquet parts (one per shard, 300 shards). Build: reading the parts
and making the index plus the per-frame objects, median of --repeat rounds, interleaved. Memory: in
a fresh interpreter per layout, the RSS the index adds over the interpreter with the loader
imported, and the private memory a forked DataLoader-style worker dirties by reading every video
once (Python objects are written to by their reference counts, so a fork copies their pages).

    python benchmarks/index.py [--videos 5024] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mose_shards.core.manifest import split_entry  # noqa: E402
from mose_shards.core.storage import Store  # noqa: E402
from mose_shards.core.tables import read_parts  # noqa: E402
from mose_shards.loader.index import COLUMNS, load_index  # noqa: E402
from mose_shards.loader.objects import add_frame_objects  # noqa: E402

SHARDS = 300


def generate(root: Path, videos: int, seed: int = 0) -> dict[str, Any]:
    """Frames and masks table parts under root/tables, and the manifest document that lists them."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.normal(93.5, 40, videos).astype(int), 10, 300)
    shard_of = np.sort(rng.integers(0, SHARDS, videos))
    doc: dict[str, Any] = {
        "options": {"void_label": None},
        "splits": {"train": {"shards": [], "tables": {"frames": [], "masks": []}}},
    }
    entry = doc["splits"]["train"]
    (root / "tables").mkdir(parents=True)
    for s in range(SHARDS):
        mine = np.flatnonzero(shard_of == s)
        if not len(mine):
            continue
        n = lengths[mine]
        frames = int(n.sum())
        video = np.repeat(mine, n)
        position = np.arange(frames) - np.repeat(np.cumsum(n) - n, n)
        objects = rng.integers(0, 7, frames) * (rng.random(frames) < 0.9)
        offset = np.arange(frames, dtype=np.int64) * 60_000
        path = f"shards/train/train-{s:06d}.tar"
        ids = pa.array([f"{v:08x}" for v in video])
        pq.write_table(
            pa.table(
                {
                    "video_id": ids,
                    "frame_index": pa.array(position, pa.int32()),
                    "frame_name": pa.array([f"{p:05d}" for p in position]),
                    "has_mask": pa.array(objects > 0),
                    "num_objects": pa.array(objects, pa.int32()),
                    "shard": pa.array([path] * frames),
                    "jpg_offset": offset + 512,
                    "jpg_size": np.full(frames, 50_000),
                    "png_offset": offset + 51_200,
                    "png_size": np.full(frames, 3_000),
                    "json_offset": offset + 55_000,
                    "json_size": np.full(frames, 200),
                }
            ),
            root / f"tables/frames-{s:06d}.parquet",
        )
        rows = np.repeat(np.arange(frames), objects)
        object_id = np.arange(len(rows)) - np.repeat(np.cumsum(objects) - objects, objects) + 1
        pq.write_table(
            pa.table(
                {
                    "video_id": ids.take(pa.array(rows)),
                    "frame_index": pa.array(position[rows], pa.int32()),
                    "object_id": pa.array(object_id, pa.int32()),
                }
            ),
            root / f"tables/masks-{s:06d}.parquet",
        )
        entry["shards"].append(
            {
                "path": path,
                "bytes": int(offset[-1] + 60_000) if frames else 0,
                "sha256": hashlib.sha256(path.encode()).hexdigest(),
            }
        )
        entry["tables"]["frames"].append(f"tables/frames-{s:06d}.parquet")
        entry["tables"]["masks"].append(f"tables/masks-{s:06d}.parquet")
    (root / "doc.json").write_text(json.dumps(doc))
    return doc


def columnar(root: str) -> Any:
    """What ClipDataset builds: the split's index with every frame's objects."""
    store, doc = Store(root), json.loads(Path(root, "doc.json").read_text())
    index = load_index(store, doc, "train")
    add_frame_objects(store, doc, "train", index)
    return index


def tuples(root: str) -> Any:
    """The layout before: a tuple per video of tuples per frame, and a dict of per-frame object tuples."""
    store, doc = Store(root), json.loads(Path(root, "doc.json").read_text())
    entry = split_entry(store, doc, "train")
    videos = []
    for part in (t.to_pydict() for t in read_parts(store, entry["tables"]["frames"], COLUMNS)):
        by_video: dict[str, list[tuple[Any, ...]]] = {}
        for row in sorted(zip(*(part[c] for c in COLUMNS), strict=True), key=lambda r: r[6]):
            by_video.setdefault(row[0], []).append(row)
        for video_id, frames in by_video.items():
            frames.sort(key=lambda r: r[1])
            videos.append(
                (
                    video_id,
                    frames[0][5],
                    tuple(r[2] for r in frames),
                    tuple(bool(r[3]) for r in frames),
                    tuple(int(r[4]) for r in frames),
                    tuple(tuple(int(v) for v in r[6:12]) for r in frames),
                )
            )
    found: dict[str, dict[int, list[int]]] = {}
    for part in (
        t.to_pydict()
        for t in read_parts(store, entry["tables"]["masks"], ("video_id", "frame_index", "object_id"))
    ):
        for video_id, frame, obj in zip(
            part["video_id"], part["frame_index"], part["object_id"], strict=True
        ):
            found.setdefault(video_id, {}).setdefault(int(frame), []).append(int(obj))
    objects = {
        v[0]: tuple(tuple(sorted(found.get(v[0], {}).get(p, ()))) for p in range(len(v[2]))) for v in videos
    }
    return videos, objects


def touch(index: Any, layout: str) -> int:
    """Read every video once, as a worker's pass over an epoch does."""
    total = 0
    if layout == "columnar":
        for i in range(len(index)):
            total += int(index.video(i).num_objects.sum())
    else:
        videos, objects = index
        for v in videos:
            total += sum(v[4]) + len(objects[v[0]])
    return total


def _memory_fields() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        name, value = line.split(":", 1)
        out[name] = int(value.split()[0]) * 1024
    return out


def measure_memory(root: str, layout: str, mode: str) -> None:
    """In this fresh interpreter, with the loader imported: `build` prints the RSS that building the
    index adds (Arrow's buffers while reading included); `worker` loads the index pickled as a spawn
    worker receives it and prints the RSS that adds, then the private memory a forked worker dirties
    by one pass over every video."""
    import pickle

    import mose_shards.loader  # noqa: F401 - the baseline RSS includes what a worker imports anyway

    before = _memory_fields()["Rss"]
    if mode == "build":
        columnar(root) if layout == "columnar" else tuples(root)
        print(json.dumps({"build": _memory_fields()["Rss"] - before}))
        return
    index = pickle.loads(Path(root, f"{layout}.pickle").read_bytes())
    held = _memory_fields()["Rss"] - before
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a forked worker
        start = _memory_fields()
        touch(index, layout)
        end = _memory_fields()
        dirtied = (end["Private_Dirty"] - start["Private_Dirty"]) + (
            end["Private_Clean"] - start["Private_Clean"]
        )
        os.write(write, json.dumps({"dirtied": dirtied}).encode())
        os._exit(0)
    os.close(write)
    child = json.loads(os.read(read, 1 << 16))
    os.waitpid(pid, 0)
    print(json.dumps({"held": held, "dirtied": child["dirtied"]}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=5024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure_memory(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="mose-bench-index-") as tmp:
        generate(Path(tmp), args.videos)
        index = columnar(tmp)
        print(
            f"generated: {len(index)} videos, {len(index.has_mask)} frames, "
            f"{len(index.object_ids)} frame objects in {SHARDS} Parquet parts"
        )
        times: dict[str, list[float]] = {"columnar": [], "tuples": []}
        for _ in range(args.repeat):  # interleaved rounds
            for layout, build in (("columnar", columnar), ("tuples", tuples)):
                start = time.perf_counter()
                build(tmp)
                times[layout].append(time.perf_counter() - start)
        import pickle

        Path(tmp, "columnar.pickle").write_bytes(pickle.dumps(index))
        Path(tmp, "tuples.pickle").write_bytes(pickle.dumps(tuples(tmp)))
        memory: dict[str, dict[str, int]] = {"columnar": {}, "tuples": {}}
        for layout in ("columnar", "tuples"):
            for mode in ("build", "worker"):
                done = subprocess.run(
                    [sys.executable, __file__, "--child", tmp, layout, mode],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                memory[layout].update(json.loads(done.stdout))
    build = {k: statistics.median(v) for k, v in times.items()}
    mb = 1024 * 1024
    print(f"{'':<28}{'columnar':>12}{'tuples':>12}{'ratio':>8}")
    print(
        f"{'build (median s)':<28}{build['columnar']:>12.2f}{build['tuples']:>12.2f}"
        f"{build['tuples'] / build['columnar']:>7.1f}x"
    )
    rows = (
        ("build", "RSS of building (MB)"),
        ("held", "spawn worker holds (MB)"),
        ("dirtied", "fork worker dirties (MB)"),
    )
    for key, label in rows:
        a, b = memory["columnar"][key] / mb, memory["tuples"][key] / mb
        print(f"{label:<28}{a:>12.1f}{b:>12.1f}{b / max(a, 0.1):>7.1f}x")
    print(f"columnar arrays: {index.nbytes() / mb:.1f} MB (targets: build <= 5 s, <= 100 MB per worker)")


if __name__ == "__main__":
    main()
