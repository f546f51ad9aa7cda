"""SAM 2-style clips/s: ShardRawDataset from SeaweedFS behind a 20 ms/request proxy, against SAM 2's
PNGRawDataset-style reading of the raw tree on local disk. Prints ratios and GETs per clip.

Both sides run the same SAM 2 sampling and construct code (tests/sam2_like.py: consecutive frames
from a random start, the first mask loaded until it shows an object, at most 3 objects, every image
opened through iopath's g_pathmgr and decoded by PIL, every mask loaded) with the same seeds, so
they cut the same clips. Rounds alternate between the sides; medians are reported. The frames read
ahead are forgotten before every clip, so no clip is served by another's GETs.

    .venv/bin/python benchmarks/sam2.py [--videos 12] [--frames 24] [--size 320x240] [--delay 0.02]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fsspec
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.latency_proxy import latency_proxy  # noqa: E402
from mose_shards.conversion.config import ConvertConfig  # noqa: E402
from mose_shards.conversion.orchestrate import convert  # noqa: E402
from mose_shards.sam2 import ShardRawDataset  # noqa: E402
from mose_shards.synth import SynthSpec, generate  # noqa: E402
from tests import s3server  # noqa: E402
from tests.sam2_like import PNGRawLike, sample_clip  # noqa: E402

NUM_FRAMES, MAX_OBJECTS = 8, 3


@contextmanager
def counting_gets() -> Iterator[list[int]]:
    """Counts the S3 requests this process sends (at the s3fs client)."""
    import s3fs

    count = [0]
    original = s3fs.S3FileSystem._call_s3

    async def counted(self: Any, method: Any, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return await original(self, method, *args, **kwargs)

    s3fs.S3FileSystem._call_s3 = counted  # type: ignore[method-assign]
    try:
        yield count
    finally:
        s3fs.S3FileSystem._call_s3 = original  # type: ignore[method-assign]


class SampledClips(torch.utils.data.Dataset):
    """`per_video` SAM 2 clips of every video, each from its own seed; an item is its frame count."""

    def __init__(self, raw_dataset: Any, seed: int, forget: bool, per_video: int) -> None:
        self.raw_dataset, self.seed, self.forget, self.per_video = raw_dataset, seed, forget, per_video

    def __len__(self) -> int:
        return len(self.raw_dataset) * self.per_video

    def __getitem__(self, item: int) -> int:
        if self.forget:  # the frames read ahead for another clip
            self.raw_dataset._reader.ahead.clear()
        video, segment_loader = self.raw_dataset.get_video(item % len(self.raw_dataset))
        rng = random.Random(self.seed * 1_000_003 + item)
        return len(sample_clip(video, segment_loader, NUM_FRAMES, MAX_OBJECTS, rng)["images"])


def clips(dataset: Any, seed: int, forget: bool, workers: int) -> tuple[int, float]:
    """SAM 2 clips, in this process or through a DataLoader with `workers` processes; (clips, seconds)."""
    per_video = 1 if workers == 0 else 2 * workers  # enough items that worker start-up does not dominate
    items = SampledClips(dataset, seed, forget, per_video)
    start = time.perf_counter()
    if workers == 0:
        frames = [items[i] for i in range(len(items))]
    else:
        frames = list(torch.utils.data.DataLoader(items, batch_size=None, num_workers=workers))
    assert frames == [NUM_FRAMES] * len(items)
    return len(items), time.perf_counter() - start


def rounds(sides: dict[str, Callable[[int], tuple[int, float]]], repeat: int) -> dict[str, float]:
    """Median clips/s per side, rounds interleaved."""
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for r in range(repeat):
        for name, run in sides.items():
            n, seconds = run(r)
            rates[name].append(n / seconds)
    return {name: statistics.median(v) for name, v in rates.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", default="320x240")
    ap.add_argument("--repeat", type=int, default=3, help="rounds per side, interleaved; medians reported")
    ap.add_argument("--delay", type=float, default=0.02, help="seconds added per request by the proxy")
    ap.add_argument("--workers", type=int, default=4, help="DataLoader workers, second figures")
    args = ap.parse_args()
    # as in a DataLoader worker, where SAM 2's sampling runs: one torch thread (with more, each small
    # `segment.sum()` of the sampler waits on the thread pool, tens of ms on a busy machine)
    torch.set_num_threads(1)
    width, height = (int(v) for v in args.size.split("x"))
    work = Path(tempfile.mkdtemp(prefix="bench-sam2-"))
    spec = SynthSpec(videos=args.videos, frames=args.frames, size=(width, height), seed=1, splits=("train",))
    raw = generate(work / "raw", spec=spec)
    convert(ConvertConfig(source=str(raw), output=str(work / "out")))
    print(f"{args.videos} videos x {args.frames} frames at {args.size}; SAM 2 clips of {NUM_FRAMES} frames, "
          f"<= {MAX_OBJECTS} objects; one clip per video per round")  # fmt: skip
    baseline = PNGRawLike(raw / "train")
    local = ShardRawDataset(str(work / "out"))
    with s3server.running(work / "s3") as server:
        opts = server.storage_options()
        uploader = fsspec.filesystem("s3", **opts)
        uploader.put(str(work / "out"), f"{server.bucket}/out", recursive=True)
        with latency_proxy(server.ports["s3"], args.delay) as proxy:
            slow = {**opts, "endpoint_url": f"http://127.0.0.1:{proxy.port}"}
            with counting_gets() as gets:
                start = time.perf_counter()
                remote = ShardRawDataset(server.url("out"), storage_options=slow)
                startup, index_gets = time.perf_counter() - start, gets[0]
                gets[0] = 0
                sides = {
                    "raw tree, local disk (PNGRawDataset-style)": (baseline, False),
                    "shards, local disk": (local, True),
                    f"shards, S3 + {args.delay * 1000:.0f} ms/request": (remote, True),
                }
                rates = rounds({n: (lambda r, d=d, f=f: clips(d, r, f, 0)) for n, (d, f) in sides.items()},
                               args.repeat)  # fmt: skip
                per_clip = gets[0] / (args.repeat * len(remote))
            if args.workers:
                pooled = rounds(
                    {n: (lambda r, d=d, f=f: clips(d, r, f, args.workers)) for n, (d, f) in sides.items()},
                    args.repeat,
                )
    report("one process", rates)
    if args.workers:
        report(f"DataLoader, {args.workers} workers", pooled)
    print(f"GETs per {NUM_FRAMES}-frame clip from S3: {per_clip:.2f} (bound 2)")
    print(f"start-up over the proxy (manifest + frames table, not in the figures): {index_gets} GETs, "
          f"{startup:.2f} s")  # fmt: skip


def report(label: str, rates: dict[str, float]) -> None:
    print(label)
    base = next(iter(rates.values()))
    for name, rate in rates.items():
        print(f"  {name:<44} {rate:8.1f} clips/s   ratio {rate / base:5.2f}x")


if __name__ == "__main__":
    main()
