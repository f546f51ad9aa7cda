"""Evaluation speed: ours against the official algorithm as published, measured in the same run.

A 1080p video with 44 objects (ellipses that move, shrink and vanish) is generated, converted, and
predicted (the ground truth shifted, some objects missed). The baseline re-implements the official
MOSEv2 scorer's shape: per object and per 15-frame chunk it decodes every ground-truth and predicted
PNG of the chunk, and scores each frame on whole-frame masks (whole-frame boundary maps and
dilations, our numpy dilation standing in for OpenCV's). Ours: each frame decoded once for all its
objects, each object scored in its neighbourhood. The baseline runs on `--baseline-objects` objects
(its cost is the same for every object: each decodes the whole chunk) and is scaled to all of them.
Both numbers for those objects must agree.

    python benchmarks/evaluate.py [--frames 16] [--objects 44] [--baseline-objects 4]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

import mose_shards
from mose_shards.analytics.evaluate.metrics import boundary, f_measure, radii
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert

H, W = 1080, 1920
CHUNK = 15


def make(root: Path, frames: int, objects: int, videos: int) -> tuple[Path, Path]:
    for v in range(videos):
        make_video(root, f"bench{v:04d}", frames, objects, v)
    convert(ConvertConfig(source=str(root / "raw"), output=str(root / "out")))
    return root / "out", root / "pred"


def make_video(root: Path, video: str, frames: int, objects: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    split = root / "raw" / "train"
    for sub in ("JPEGImages", "Annotations"):
        (split / sub / video).mkdir(parents=True)
    (root / "pred" / video).mkdir(parents=True)
    centres = rng.uniform([0, 0], [H, W], size=(objects, 2))
    speeds = rng.uniform(-20, 20, size=(objects, 2))
    sizes = rng.choice([6, 15, 40, 90, 160], size=objects)
    yy, xx = np.ogrid[:H, :W]
    grey = Image.fromarray(np.full((H, W, 3), 90, np.uint8))
    palette = [c for k in range(256) for c in (k, (37 * k) % 256, (91 * k) % 256)]
    for f in range(frames):
        ids = np.zeros((H, W), np.uint8)
        for o in range(objects):
            if (o + f) % 11 == 0:
                continue  # vanishes for a frame now and then
            cy, cx = centres[o] + speeds[o] * f
            r = sizes[o]
            ids[((yy - cy) ** 2 + ((xx - cx) / 1.5) ** 2) <= r * r] = o + 1
        name = f"{f:05d}"
        grey.save(split / "JPEGImages" / video / f"{name}.jpg", quality=50)
        for where, arr in ((split / "Annotations" / video, ids), (root / "pred" / video, _predict(ids, f))):
            img = Image.fromarray(arr, mode="P")
            img.putpalette(palette)
            img.save(where / f"{name}.png")


def _predict(ids: np.ndarray, f: int) -> np.ndarray:
    p = np.roll(ids, (f % 5 - 2, 3 - f % 7), axis=(0, 1)).copy()
    p[p == (f % 44) + 1] = 0
    return p


def baseline(gt_dir: Path, pred_dir: Path, frames: int, objects: list[int]) -> dict[int, float]:
    """Per object and chunk: decode the chunk's PNGs, score whole frames (J and F_new means)."""
    names = sorted(p.stem for p in pred_dir.glob("*.png"))
    out = {}
    for obj in objects:
        js, fs = [], []
        for start in range(1, frames - 1, CHUNK):
            chunk = range(start, min(start + CHUNK, frames - 1))
            gts = np.stack([np.asarray(Image.open(gt_dir / f"{names[i]}.png").convert("P")) for i in chunk])
            preds = np.stack(
                [np.asarray(Image.open(pred_dir / f"{names[i]}.png").convert("P")) for i in chunk]
            )
            for g, p in zip(gts == obj, preds == obj, strict=True):
                inter, union = np.logical_and(g, p).sum(), np.logical_or(g, p).sum()
                js.append(1.0 if union == 0 else min((inter + 1) / (union + 1), 1.0))
                f_r, new_r = radii("mose-v2", (H, W), int(g.sum()))
                gb = boundary(np.pad(g, ((0, 1), (0, 1)), mode="edge"))
                pb = boundary(np.pad(p, ((0, 1), (0, 1)), mode="edge"))
                f_measure(gb, pb, f_r)  # the scorer computes F as well
                fs.append(f_measure(gb, pb, new_r))
        out[obj] = (np.mean(js) + np.mean(fs)) / 2 * 100
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--objects", type=int, default=44)
    ap.add_argument("--baseline-objects", type=int, default=4)
    ap.add_argument("--videos", type=int, default=2, help="videos (the 2-worker run spreads them)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mose-eval-bench-"))
    try:
        out, pred = make(root, args.frames, args.objects, args.videos)
        t0 = time.perf_counter()
        ours = mose_shards.evaluate(str(out), str(pred), split="train")
        t_ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        two = mose_shards.evaluate(str(out), str(pred), split="train", workers=2)
        t_two = time.perf_counter() - t0
        assert two.to_json() == ours.to_json()
        video = "bench0000"
        gt_ids = sorted(int(k.rsplit("_", 1)[1]) for k in ours.per_object if k.startswith(video + "_"))
        chosen = gt_ids[:: max(len(gt_ids) // args.baseline_objects, 1)][: args.baseline_objects]
        t0 = time.perf_counter()
        base = baseline(root / "raw" / "train" / "Annotations" / video, pred / video, args.frames, chosen)
        t_base = (time.perf_counter() - t0) * len(ours.per_object) / len(chosen)
        for obj, value in base.items():
            assert abs(value - float(ours.per_object[f"{video}_{obj}"]["J&F_new"] or 0)) < 1e-9, obj
        evaluated = (args.frames - 2) * args.videos
        print(
            f"1080p, {args.videos} videos of {len(gt_ids)} objects and {args.frames} frames, one worker each"
        )
        print(f"  official algorithm (scaled from {len(chosen)} objects): {t_base:8.2f} s")
        print(f"  mose-shards evaluate:                         {t_ours:8.2f} s   {t_base / t_ours:6.1f}x")
        print(
            f"  mose-shards evaluate --workers 2:             {t_two:8.2f} s   {evaluated / t_two:6.1f} frames/s"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
