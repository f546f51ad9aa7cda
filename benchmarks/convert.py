"""Conversion throughput against a floor measured in the same run.

The floor is the least any converter must do per frame: read and hash every JPEG, decode every mask
PNG, and RLE-encode every object (pycocotools). `convert` adds the tar, the tables, the JPEG header
check and the bookkeeping; the ratio convert / floor (one core each) is the overhead. Target: <= 1.3.

    python benchmarks/convert.py [--videos 4] [--frames 12] [--size 1920x1080] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.synth import SynthSpec, generate, parse_size


def floor(raw: Path) -> int:
    """Read + hash every JPEG, decode every mask, RLE-encode every object; returns frames seen."""
    frames = 0
    for jpg in sorted(raw.glob("*/JPEGImages/*/*.jpg")):
        hashlib.sha256(jpg.read_bytes()).hexdigest()
        frames += 1
        png = jpg.parents[2] / "Annotations" / jpg.parent.name / f"{jpg.stem}.png"
        if not png.exists():
            continue
        ids = np.asarray(Image.open(io.BytesIO(png.read_bytes())))
        fortran = np.asfortranarray(ids)
        counts = np.bincount(ids.ravel(), minlength=256)
        for object_id in np.flatnonzero(counts[1:255]) + 1:
            coco_mask.encode((fortran == object_id).view(np.uint8)[:, :, None])
    return frames


def best_of(repeat: int, fn) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mose-bench-"))
    try:
        size = parse_size(args.size)
        spec = SynthSpec(videos=args.videos, frames=args.frames, size=size, splits=("train",))
        raw = generate(work / "raw", spec=spec)
        frames = floor(raw)  # also warms the page cache for both contenders

        def run_convert() -> None:
            out = work / "out"
            shutil.rmtree(out, ignore_errors=True)
            convert(ConvertConfig(source=str(raw), output=str(out), workers=1))

        t_floor = best_of(args.repeat, lambda: floor(raw))
        t_convert = best_of(args.repeat, run_convert)
        print(f"data: {frames} frames at {args.size}, every frame annotated ({args.videos} videos)")
        for label, seconds in (("floor (hash jpg, decode png, RLE objects)", t_floor),
                               ("convert (workers=1)", t_convert)):  # fmt: skip
            print(f"{label:<44} {seconds:7.3f} s  {frames / seconds:7.1f} frames/s")
        print(f"ratio convert/floor per core: {t_convert / t_floor:.2f}  (target <= 1.3)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
