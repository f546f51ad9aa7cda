"""What the hostile-input checks cost a conversion's mask work: `masks.analyze` (decode, ids, areas,
boxes, RLE) as it is (pixel cap from the header, then one bounded inflate that decodes the mask and
counts its rows, Pillow only for other PNG kinds), against the same call decoding with Pillow alone
and no check (as before the checks), in the same run; both must give the same objects.

Masks are made up like VOS annotations (a few blob-shaped objects on background, palette PNG as
Pillow writes it) at 1920x1080 and 854x480. Prints the ratio checked / unchecked per size.

    python benchmarks/hostile.py [--masks 40] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable
from unittest import mock

import numpy as np
from PIL import Image

from mose_shards.conversion import masks


def pillow_only(data: bytes, max_pixels: int = 0) -> np.ndarray:
    """The baseline decode: Pillow, no pixel cap, no row count."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img)


def make_masks(width: int, height: int, count: int, seed: int = 0) -> list[bytes]:
    """`count` palette PNGs with 1..6 elliptic objects each."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    for _ in range(count):
        ids = np.zeros((height, width), np.uint8)
        for obj in range(1, int(rng.integers(1, 7)) + 1):
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            rx, ry = rng.uniform(20, width / 4), rng.uniform(20, height / 4)
            ids[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = obj
        img = Image.fromarray(ids, "P")
        img.putpalette([0, 0, 0] + [255, 0, 0] * 255)
        buffer = io.BytesIO()
        img.save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def best(run: Callable[[], None], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--masks", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for width, height in ((1920, 1080), (854, 480)):
        data = make_masks(width, height, args.masks)

        def run(data: list[bytes] = data) -> None:
            for png in data:
                masks.analyze(png)

        checked = best(run, args.repeat)
        with mock.patch.object(masks, "decode_mask", pillow_only):
            unchecked = best(run, args.repeat)
            baseline = [masks.analyze(png) for png in data]
        assert baseline == [masks.analyze(png) for png in data]  # the same objects, areas, boxes, RLEs
        ms = checked / len(data) * 1e3
        print(f"{width}x{height}: checked / Pillow-only = {checked / unchecked:.3f} ({ms:.2f} ms a mask)")


if __name__ == "__main__":
    main()
