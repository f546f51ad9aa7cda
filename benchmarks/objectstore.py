"""Object storage against local disk, whole epochs: the same output read from SeaweedFS behind a proxy
adding 20 ms per request, and from the local disk; 1080p source. Prints S3/local ratios, requests per
clip (counted at the proxy, index reads included), the time to the first clip, and the CPU each
side spends per clip.

    .venv/bin/python benchmarks/objectstore.py [--rounds 3] [--cases sam2@240,sam2,clips@240]

Cases: `sam2[@N]` is SAM 2's sampling (tests/sam2_like.py: RandomUniformSampler + VOSDataset's
construct, 8-frame clips, <= 3 objects) over `ShardRawDataset(short_side=N)` in a DataLoader with 2
workers; `clips[@N]` is `ClipDataset(clip_length=8, short_side=N)` in a `ClipLoader` with 1 worker;
a suffix `:W` sets W workers on both storages (`sam2@240:4`).
Every measurement is a fresh process running `--epochs` epochs: the first timed from the dataset's
construction (manifest and index reads included) to its last clip, the later ones from a new
loader (new workers, as SAM 2's trainer makes one per epoch). Rounds interleave the cases and the
two storages (the order alternating); medians are reported.

CPU per clip is counted by whose: the benchmark's processes (readers: the main process and its
DataLoader workers, from rusage), the S3 server (`weed`, from /proc) and the latency proxy (this
driver's threads). The server and the proxy share this machine's cores with the readers, which a
cloud bucket does not: on 2 cores, S3 epochs are bounded by local CPU / (readers + server + proxy).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.proctree import cpu_seconds  # noqa: E402

NUM_FRAMES, MAX_OBJECTS = 8, 3


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- one epoch, in a fresh process --------------------------------------------------------------------


def sam2_epochs(cfg: dict[str, Any]) -> list[tuple[int, float, float]]:
    import torch

    from mose_shards.sam2 import ShardRawDataset
    from tests.sam2_like import sample_clip

    class Clips(torch.utils.data.Dataset):  # type: ignore[misc]
        def __init__(self, raw: Any) -> None:
            self.raw, self.epoch = raw, 0

        def __len__(self) -> int:
            return len(self.raw) * cfg["per_video"]

        def __getitem__(self, item: int) -> int:
            video, segment_loader = self.raw.get_video(item % len(self.raw))
            rng = random.Random((cfg["seed"] * 1_000_003 + item) * 7 + self.epoch)
            return len(sample_clip(video, segment_loader, NUM_FRAMES, MAX_OBJECTS, rng)["images"])

    start = time.perf_counter()
    clips = Clips(ShardRawDataset(cfg["url"], storage_options=cfg["options"], short_side=cfg["short_side"]))
    out = []
    for epoch in range(cfg["epochs"]):  # SAM 2's trainer makes a new DataLoader (new workers) per epoch
        clips.epoch = epoch
        loader = torch.utils.data.DataLoader(clips, batch_size=None, num_workers=cfg["workers"])
        out.append(_timed(loader, start, lambda frames: 1 if frames == NUM_FRAMES else _bad(frames)))
        start = time.perf_counter()
    return out


def clips_epochs(cfg: dict[str, Any]) -> list[tuple[int, float, float]]:
    from mose_shards.loader import ClipDataset, ClipLoader

    start = time.perf_counter()
    ds = ClipDataset(cfg["url"], clip_length=NUM_FRAMES, short_side=cfg["short_side"], seed=cfg["seed"],
                     storage_options=cfg["options"], clips_per_video=cfg["per_video"])  # fmt: skip
    out = []
    for epoch in range(cfg["epochs"]):
        ds.set_epoch(epoch)
        loader = ClipLoader(ds, num_workers=cfg["workers"])
        out.append(_timed(loader, start, lambda batch: len(batch["video_id"])))
        start = time.perf_counter()
    return out


def _timed(loader: Any, start: float, count: Any) -> tuple[int, float, float]:
    """(clips, seconds to the first, seconds to the last) of one pass over a loader."""
    first, clips = 0.0, 0
    for item in loader:
        clips += count(item)
        first = first or time.perf_counter() - start
    return clips, first, time.perf_counter() - start


def _bad(frames: int) -> int:
    raise AssertionError(f"a clip of {frames} frames, not {NUM_FRAMES}")


def run(path: str) -> None:
    import torch

    torch.set_num_threads(1)  # as in a DataLoader worker, and the machine is shared
    cfg = json.loads(Path(path).read_text())
    epochs = (sam2_epochs if cfg["case"] == "sam2" else clips_epochs)(cfg)
    keys = ("clips", "first", "seconds")
    print("RESULT " + json.dumps([dict(zip(keys, e, strict=True)) for e in epochs]), flush=True)


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


Results = dict[tuple[str, str], list[dict[str, Any]]]  # (case, storage) -> a measure() per round


def measure(cfg: dict[str, Any], work: Path, server_pid: int) -> dict[str, Any]:
    """One fresh process: {"epochs": [{clips, first, seconds}, ...], "cpu": {readers, server, proxy}},
    the CPU seconds its processes (the readers), the S3 server and this process (the latency proxy's
    threads) spent while it ran."""
    path = work / "config.json"
    path.write_text(json.dumps(cfg))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    before = cpu_seconds(server_pid), resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time()
    done = subprocess.run([sys.executable, __file__, "run", str(path)], capture_output=True, text=True,
                          env=env, timeout=1800)  # fmt: skip
    after = cpu_seconds(server_pid), resource.getrusage(resource.RUSAGE_CHILDREN), time.process_time()
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            readers = sum(getattr(after[1], f) - getattr(before[1], f) for f in ("ru_utime", "ru_stime"))
            cpu = {"readers": readers, "server": after[0] - before[0], "proxy": after[2] - before[2]}
            return {"epochs": json.loads(line[len("RESULT ") :]), "cpu": cpu}
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
    ap.add_argument(
        "--epochs", type=int, default=2,
        help="epochs per process: the first from the dataset's construction, the others with a new "
        "loader (new workers), as SAM 2's trainer makes one per epoch",
    )  # fmt: skip
    args = ap.parse_args()
    import fsspec

    from benchmarks.latency_proxy import latency_proxy
    from tests import s3server

    work = Path(args.work)
    out = prepare(work, args)
    cases = args.cases.split(",")
    results: Results = {}
    with s3server.running(work / "s3") as server:
        opts = server.storage_options()
        fsspec.filesystem("s3", **opts).put(str(out), f"{server.bucket}/out", recursive=True)
        with latency_proxy(server.ports["s3"], args.delay) as proxy:
            slow = {**opts, "endpoint_url": f"http://127.0.0.1:{proxy.port}"}
            for r in range(args.rounds):
                for case in cases:
                    spec, _, count = case.partition(":")
                    name, _, side = spec.partition("@")
                    workers = int(count) if count else 2 if name == "sam2" else 1
                    storages = ["local", "s3"] if r % 2 == 0 else ["s3", "local"]
                    for storage in storages:
                        cfg = {"case": name, "storage": storage, "short_side": int(side) if side else None,
                               "workers": workers, "seed": r, "per_video": args.per_video,
                               "url": str(out) if storage == "local" else server.url("out"),
                               "options": None if storage == "local" else slow,
                               "epochs": args.epochs}  # fmt: skip
                        before = proxy.requests
                        result = measure(cfg, work, server.process.pid)
                        result["requests"] = proxy.requests - before
                        results.setdefault((case, storage), []).append(result)
                        log(f"round {r} {case} {storage}: {result}")
    report(args, cases, results)


def report(args: argparse.Namespace, cases: list[str], results: Results) -> None:
    """Per case: medians of the rates, and of each round's S3/local ratio (the two processes of a
    round ran one after the other, so a busy spell of a shared machine hits both): over the first
    epoch (from the dataset's construction), after its first clip, and over a later epoch (a new
    loader); requests per clip over all epochs; CPU per clip of the first epoch's process."""
    print(f"{args.videos} videos x {args.frames} frames at {args.size}, {args.per_video} clips of "
          f"{NUM_FRAMES} frames per video; S3 = SeaweedFS + {args.delay * 1000:.0f} ms/request; "
          f"medians of {args.rounds} rounds")  # fmt: skip
    print("| case | local clips/s | S3 clips/s | S3 / local, first epoch | after its first clip | "
          "later epoch | requests / clip | first clip local / S3 (later epoch) | CPU ms / clip: "
          "local / S3 readers + server + proxy |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for case in cases:
        local, s3 = results[(case, "local")], results[(case, "s3")]
        rate_l, rate_s = (
            statistics.median(_first(r)["clips"] / _first(r)["seconds"] for r in v) for v in (local, s3)
        )
        pairs = list(zip(local, s3, strict=True))
        whole = _median(_first(a)["seconds"] / _first(b)["seconds"] for a, b in pairs)
        steady = _median(_after_first(_first(a)) / _after_first(_first(b)) for a, b in pairs)
        later = (
            _median(_last(a)["seconds"] / _last(b)["seconds"] for a, b in pairs) if args.epochs > 1 else "-"
        )
        per_clip = statistics.median(r["requests"] / _clips(r) for r in s3)
        first_l, first_s = (statistics.median(_first(r)["first"] for r in v) for v in (local, s3))
        again_l, again_s = (statistics.median(_last(r)["first"] for r in v) for v in (local, s3))
        cpu_l, cpu_s = (_cpu_per_clip(v) for v in (local, s3))
        cpu = (
            f"{cpu_l['readers']:.0f} / {cpu_s['readers']:.0f} + {cpu_s['server']:.0f} + {cpu_s['proxy']:.0f}"
        )
        print(f"| {case} | {rate_l:.1f} | {rate_s:.1f} | {whole} | {steady} | {later} | {per_clip:.2f} | "
              f"{first_l:.2f} s / {first_s:.2f} s ({again_l:.2f} s / {again_s:.2f} s) | {cpu} |")  # fmt: skip


def _first(process: dict[str, Any]) -> dict[str, Any]:
    return process["epochs"][0]  # type: ignore[no-any-return]


def _last(process: dict[str, Any]) -> dict[str, Any]:
    return process["epochs"][-1]  # type: ignore[no-any-return]


def _clips(process: dict[str, Any]) -> int:
    return sum(e["clips"] for e in process["epochs"])


def _median(values: Any) -> str:
    return f"{statistics.median(values):.2f}x"


def _cpu_per_clip(processes: list[dict[str, Any]]) -> dict[str, float]:
    """Median milliseconds of CPU per clip, by whose, over each process's epochs."""
    return {
        who: statistics.median(r["cpu"][who] * 1000 / _clips(r) for r in processes)
        for who in ("readers", "server", "proxy")
    }


def _after_first(result: dict[str, Any]) -> float:
    """Seconds per clip after the first one."""
    return (result["seconds"] - result["first"]) / max(1, result["clips"] - 1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(sys.argv[2])
    else:
        main()
