"""Object storage against local disk, whole epochs: the same output read from SeaweedFS behind a proxy
adding 20 ms per request, and from the local disk; 1080p source. Prints S3/local ratios, requests per
clip (counted at the proxy, index reads included) and the time to the first clip.

    .venv/bin/python benchmarks/objectstore.py [--rounds 3] [--cases sam2@240,sam2,clips@240]

Cases: `sam2[@N]` is SAM 2's sampling (tests/sam2_like.py: RandomUniformSampler + VOSDataset's
construct, 8-frame clips, <= 3 objects) over `ShardRawDataset(short_side=N)` in a DataLoader with 2
workers; `clips[@N]` is `ClipDataset(clip_length=8, short_side=N)` in a `ClipLoader` with 1 worker.
Every epoch runs in a fresh process and is timed from the dataset's construction (manifest and index
reads included) to its last clip. Rounds interleave the cases and the two storages (the order
alternating); medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

NUM_FRAMES, MAX_OBJECTS = 8, 3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- one epoch, in a fresh process --------------------------------------------------------------------


def sam2_epoch(cfg: dict[str, Any]) -> tuple[int, float, float]:
    import torch

    from mose_shards.sam2 import ShardRawDataset
    from tests.sam2_like import sample_clip

    class Clips(torch.utils.data.Dataset):  # type: ignore[misc]
        def __init__(self, raw: Any) -> None:
            self.raw = raw

        def __len__(self) -> int:
            return len(self.raw) * cfg["per_video"]

        def __getitem__(self, item: int) -> int:
            video, segment_loader = self.raw.get_video(item % len(self.raw))
            rng = random.Random(cfg["seed"] * 1_000_003 + item)
            return len(sample_clip(video, segment_loader, NUM_FRAMES, MAX_OBJECTS, rng)["images"])

    start = time.perf_counter()
    raw = ShardRawDataset(cfg["url"], storage_options=cfg["options"], short_side=cfg["short_side"])
    loader = torch.utils.data.DataLoader(Clips(raw), batch_size=None, num_workers=cfg["workers"])
    first, clips = 0.0, 0
    for frames in loader:
        assert frames == NUM_FRAMES
        clips += 1
        first = first or time.perf_counter() - start
    return clips, first, time.perf_counter() - start


def clips_epoch(cfg: dict[str, Any]) -> tuple[int, float, float]:
    from mose_shards.loader import ClipDataset, ClipLoader

    start = time.perf_counter()
    ds = ClipDataset(cfg["url"], clip_length=NUM_FRAMES, short_side=cfg["short_side"], seed=cfg["seed"],
                     storage_options=cfg["options"], clips_per_video=cfg["per_video"])  # fmt: skip
    first, clips = 0.0, 0
    for batch in ClipLoader(ds, num_workers=cfg["workers"]):
        clips += len(batch["video_id"])
        first = first or time.perf_counter() - start
    return clips, first, time.perf_counter() - start


def run(path: str) -> None:
    import torch

    torch.set_num_threads(1)  # as in a DataLoader worker, and the machine is shared
    cfg = json.loads(Path(path).read_text())
    clips, first, seconds = (sam2_epoch if cfg["case"] == "sam2" else clips_epoch)(cfg)
    print("RESULT " + json.dumps({"clips": clips, "first": first, "seconds": seconds}), flush=True)


# --- the driver -------------------------------------------------------------------------------------


def prepare(work: Path, args: argparse.Namespace) -> Path:
    from mose_shards.conversion.config import ConvertConfig
    from mose_shards.conversion.orchestrate import convert
    from mose_shards.synth import SynthSpec, generate

    out = work / f"{args.size}-{args.videos}x{args.frames}" / "out"
    if not (out / "manifest.json").exists():
        width, height = (int(v) for v in args.size.split("x"))
        spec = SynthSpec(videos=args.videos, frames=args.frames, size=(width, height), seed=1,
                         splits=("train",), objects=(3, 8))  # fmt: skip
        raw = generate(out.parent / "raw", spec=spec)
        convert(ConvertConfig(source=str(raw), output=str(out)))
    return out


def epoch(cfg: dict[str, Any], work: Path) -> dict[str, Any]:
    path = work / "config.json"
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, __file__, "run", str(path)], capture_output=True, text=True,
                          env=env, timeout=1800)  # fmt: skip
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"{cfg['case']} on {cfg['storage']}: exit {done.returncode}: {done.stderr[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/mose-bench-objectstore")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--per-video", type=int, default=4, help="clips per video in an epoch")
    ap.add_argument("--cases", default="sam2@240,sam2,clips@240")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians reported")
    ap.add_argument("--delay", type=float, default=0.02, help="seconds the proxy adds per request")
    args = ap.parse_args()
    import fsspec

    from benchmarks.latency_proxy import latency_proxy
    from tests import s3server

    work = Path(args.work)
    out = prepare(work, args)
    cases = args.cases.split(",")
    results: dict[tuple[str, str], list[dict[str, Any]]] = {}
    with s3server.running(work / "s3") as server:
        opts = server.storage_options()
        fsspec.filesystem("s3", **opts).put(str(out), f"{server.bucket}/out", recursive=True)
        with latency_proxy(server.ports["s3"], args.delay) as proxy:
            slow = {**opts, "endpoint_url": f"http://127.0.0.1:{proxy.port}"}
            for r in range(args.rounds):
                for case in cases:
                    name, _, side = case.partition("@")
                    storages = ["local", "s3"] if r % 2 == 0 else ["s3", "local"]
                    for storage in storages:
                        cfg = {"case": name, "storage": storage, "short_side": int(side) if side else None,
                               "workers": 2 if name == "sam2" else 1, "seed": r, "per_video": args.per_video,
                               "url": str(out) if storage == "local" else server.url("out"),
                               "options": None if storage == "local" else slow}  # fmt: skip
                        before = proxy.requests
                        result = epoch(cfg, work)
                        result["requests"] = proxy.requests - before
                        results.setdefault((case, storage), []).append(result)
                        log(f"round {r} {case} {storage}: {result}")
    report(args, cases, results)


Results = dict[tuple[str, str], list[dict[str, Any]]]


def report(args: argparse.Namespace, cases: list[str], results: Results) -> None:
    """Per case: medians of the rates, and of each round's S3/local ratio (the two epochs of a round
    ran one after the other, so a busy spell of a shared machine hits both), over the whole epoch
    and after the first clip."""
    print(f"{args.videos} videos x {args.frames} frames at {args.size}, {args.per_video} clips of "
          f"{NUM_FRAMES} frames per video; S3 = SeaweedFS + {args.delay * 1000:.0f} ms/request; "
          f"medians of {args.rounds} rounds")  # fmt: skip
    print("| case | local clips/s | S3 clips/s | S3 / local (per round) | after the first clip | "
          "requests / clip | first clip local / S3 |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for case in cases:
        local, s3 = results[(case, "local")], results[(case, "s3")]
        rate_l, rate_s = (statistics.median(r["clips"] / r["seconds"] for r in v) for v in (local, s3))
        whole = [a["seconds"] / b["seconds"] for a, b in zip(local, s3, strict=True)]
        steady = [_after_first(a) / _after_first(b) for a, b in zip(local, s3, strict=True)]
        per_clip = statistics.median(r["requests"] / r["clips"] for r in s3)
        first_l, first_s = (statistics.median(r["first"] for r in v) for v in (local, s3))
        ratios = f"{statistics.median(whole):.2f}x | {statistics.median(steady):.2f}x"
        print(f"| {case} | {rate_l:.1f} | {rate_s:.1f} | {ratios} | {per_clip:.2f} | "
              f"{first_l:.2f} s / {first_s:.2f} s |")  # fmt: skip


def _after_first(result: dict[str, Any]) -> float:
    """Seconds per clip after the first one."""
    return (result["seconds"] - result["first"]) / max(1, result["clips"] - 1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(sys.argv[2])
    else:
        main()
