"""Decoded clips/s and MB/s: ClipDataset over shards vs a raw-tree loader, locally and from SeaweedFS
through a loopback proxy adding per-request latency. Prints ratios measured in this run.

The raw-tree baseline does what SAM 2's PNGRawDataset does: list a video's frames, then open and
PIL-decode each sampled frame and mask file. Both sides cut the same clips (same sampler, seed and
object selection), so only the data path differs. Single process on both sides.

    .venv/bin/python benchmarks/stream.py [--videos 12] [--frames 24] [--size 320x240] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.latency_proxy import latency_proxy  # noqa: E402
from mose_shards.conversion.config import ConvertConfig  # noqa: E402
from mose_shards.conversion.orchestrate import convert  # noqa: E402
from mose_shards.core.maskpng import object_ids  # noqa: E402
from mose_shards.loader import ClipDataset  # noqa: E402
from mose_shards.loader.decode import keep_objects  # noqa: E402
from mose_shards.loader.sampling import choose_objects, item_rng, sample_positions  # noqa: E402
from mose_shards.synth import SynthSpec, generate  # noqa: E402
from tests import s3server  # noqa: E402


def _rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def raw_tree_clips(root: str, ds: ClipDataset, opts: dict[str, Any]) -> tuple[int, int]:
    """The baseline: per video a listing, then one open + PIL decode per frame and per mask."""
    fs, base = fsspec.core.url_to_fs(root, **opts)
    clips = pixels = 0
    for entry in ds.videos:
        jpg_dir, png_dir = (
            f"{base}/train/JPEGImages/{entry.video_id}",
            f"{base}/train/Annotations/{entry.video_id}",
        )
        names = sorted(p.rsplit("/", 1)[-1][:-4] for p in fs.ls(jpg_dir, detail=False))
        rng = item_rng(ds.seed, 0, entry.video_id, 0)
        positions, _ = sample_positions(entry.num_objects, ds.options, rng)
        images = [_rgb(fs.cat_file(f"{jpg_dir}/{names[p]}.jpg")) for p in positions]
        masks = [
            np.asarray(Image.open(io.BytesIO(fs.cat_file(f"{png_dir}/{names[p]}.png")))) for p in positions
        ]
        # the same object selection as ClipDataset, so both sides produce identical clips
        keep = choose_objects(object_ids(masks[0], ds.void_label), ds.options.max_objects, rng)
        masks = [keep_objects(m, keep, ds.void_label) for m in masks]
        pixels += sum(i.nbytes for i in images) + sum(m.nbytes for m in masks)
        clips += 1
    return clips, pixels


def shard_clips(ds: ClipDataset) -> tuple[int, int]:
    """Our loader, constructed beforehand (its start-up, reading the frames table, is timed apart)."""
    clips = pixels = 0
    for item in ds:
        pixels += sum(i.nbytes for i in item["images"]) + sum(
            m.nbytes for m in item["masks"] if m is not None
        )
        clips += 1
    return clips, pixels


def timed(fn: Any, *args: Any) -> tuple[float, float]:
    start = time.perf_counter()
    clips, pixels = fn(*args)
    seconds = time.perf_counter() - start
    return clips / seconds, pixels / seconds / 1e6


def _median(runs: list[tuple[float, float]]) -> tuple[float, float]:
    ordered = sorted(runs)
    return ordered[len(ordered) // 2]


def report(label: str, raw: tuple[float, float], ours: tuple[float, float]) -> float:
    ratio = ours[0] / raw[0]
    print(f"{label:<28} raw tree {raw[0]:8.1f} clips/s {raw[1]:8.1f} MB/s | shards {ours[0]:8.1f} clips/s "
          f"{ours[1]:8.1f} MB/s | ratio {ratio:5.2f}x")  # fmt: skip
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--clip-length", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5, help="local rounds, interleaved; medians reported")
    ap.add_argument("--delay", type=float, default=0.02, help="seconds added per request by the proxy")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    spec = SynthSpec(videos=args.videos, frames=args.frames, size=(width, height), seed=1, splits=("train",))
    raw = generate(work / "raw", spec=spec)
    out = work / "out"
    convert(ConvertConfig(source=str(raw), output=str(out)))
    print(f"{args.videos} videos x {args.frames} frames at {args.size}, clips of {args.clip_length}")
    ds = ClipDataset(str(out), clip_length=args.clip_length, shuffle=False)
    rounds = [(timed(raw_tree_clips, str(raw), ds, {}), timed(shard_clips, ds)) for _ in range(args.repeat)]
    local = report("local disk (median)", *(_median([r[i] for r in rounds]) for i in (0, 1)))
    with s3server.running(work / "s3") as server:
        opts = server.storage_options()
        fsspec.filesystem("s3", **opts).put(str(raw), f"{server.bucket}/raw", recursive=True)
        convert(ConvertConfig(source=str(raw), output=server.url("out"), storage_options=opts))
        with latency_proxy(server.ports["s3"], args.delay) as proxy:
            slow = {**opts, "endpoint_url": f"http://127.0.0.1:{proxy.port}"}
            start = time.perf_counter()
            remote_ds = ClipDataset(server.url("out"), clip_length=args.clip_length, shuffle=False,
                                    storage_options=slow)  # fmt: skip
            startup = time.perf_counter() - start
            remote = report(
                f"S3 + {args.delay * 1000:.0f} ms/request",
                timed(raw_tree_clips, server.url("raw"), ds, slow),
                timed(shard_clips, remote_ds),
            )
            print(f"{'':<28} (ClipDataset start-up over the proxy, not in the figures: {startup:.2f} s)")
    print(f"ratios (shards / raw tree, decoded clips/s): local {local:.2f}x (target >= 1.0x), "
          f"latency {remote:.2f}x (target >= 10x)")  # fmt: skip


if __name__ == "__main__":
    main()
