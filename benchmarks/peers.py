"""mose-shards side by side with its peers on identical clips: Mosaic Streaming (MDS), LitData,
webdataset over our shards, and the raw tree read with Pillow; locally and from SeaweedFS behind a
proxy adding 20 ms per request; 1 and 2 DataLoader workers; at 854x480 and 1920x1080.

    make bench-peers            # or: .venv/bin/python benchmarks/peers.py [--rounds 3]

Every measurement is one epoch in a fresh process (benchmarks/peer_loaders.py); the peers run in
virtual environments of their own under WORK/venvs, made on first use (benchmarks/peer_venvs.py).
Before timing, one verifying epoch per system and storage hashes every clip: each must equal
mose-shards' clips. A peer that fails is reported with its error text and left out; nothing is
tuned around it. Rounds are interleaved (order rotated each round) and medians reported, with
ratios from the same run.

Also measured, at 1920x1080 locally: the targets' naive baselines (`raw-tree` is Pillow decode +
`np.asarray` + numpy object filtering; `raw-tree@480` adds a full-size bilinear/nearest resize to a
480 shorter side) against ClipDataset at full size and with `short_side=480`; and, with
`--epoch-seconds`, ClipDataset with 1 and 2 workers on an epoch lasting at least that long.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import fsspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.latency_proxy import latency_proxy  # noqa: E402
from benchmarks.peer_venvs import last_lines, peer_python  # noqa: E402
from mose_shards.conversion.config import ConvertConfig  # noqa: E402
from mose_shards.conversion.orchestrate import convert  # noqa: E402
from mose_shards.core.sizes import parse_size  # noqa: E402
from mose_shards.loader import ClipDataset  # noqa: E402
from mose_shards.loader.sampling import choose_objects, item_rng, sample_positions  # noqa: E402
from mose_shards.synth import SynthSpec, generate  # noqa: E402
from tests import s3server  # noqa: E402

RUNNER = Path(__file__).with_name("peer_loaders.py")
FORMATS = {"mds": "2: bytes + ndarray:int64 offsets, no pkl", "litdata": ""}  # versions of prepare()
SYSTEMS = ["mose-shards", "mosaic-streaming", "litdata", "webdataset", "raw-tree"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def make_plan(out: Path, clip_length: int, seed: int) -> dict[str, Any]:
    """Per video: the clip's frame positions and kept objects, exactly as ClipDataset cuts them."""
    ds = ClipDataset(str(out), clip_length=clip_length, shuffle=False, seed=seed)
    videos = []
    for entry in ds.videos:
        rng = item_rng(seed, 0, entry.video_id, 0)
        positions, _ = sample_positions(entry.num_objects, ds.options, rng)
        objects = entry.objects
        assert objects is not None
        keep = choose_objects(list(objects[positions[0]]), ds.options.max_objects, rng)
        videos.append({"video_id": entry.video_id, "positions": positions, "keep": keep})
    return {"videos": videos, "void_label": ds.void_label}


class Bench:
    """One resolution's data (raw tree, our shards, MDS, LitData; local and on S3) and its runs."""

    def __init__(self, work: Path, args: argparse.Namespace, size: str) -> None:
        self.args, self.size, self.dir = args, size, work / size
        self.work = work
        self.failures: dict[str, str] = {}
        self.reference: dict[str, str] | None = None
        self.pythons: dict[str, str] = {}
        width, height = (int(v) for v in size.split("x"))
        raw = self.dir / "raw"
        if not (self.dir / "out" / "manifest.json").exists():
            shutil.rmtree(self.dir, ignore_errors=True)
            videos = args.videos_1080 if height >= 1080 else args.videos_480
            spec = SynthSpec(videos=videos, frames=args.frames, size=(width, height), seed=1,
                             splits=("train",), objects=(3, 8))  # fmt: skip
            generate(raw, spec=spec)
            # small shards so that webdataset's split by worker (by shard) has several to split
            convert(
                ConvertConfig(
                    source=str(raw), output=str(self.dir / "out"), shard_size=parse_size(args.shard_size)
                )
            )
        self.plan = make_plan(self.dir / "out", args.clip_length, args.seed)
        (self.dir / "plan.json").write_text(json.dumps(self.plan))
        for system in args.systems.split(","):
            python, why = peer_python(work, system.partition("@")[0], log)
            if python is None:
                self.failures[system] = str(why)
            else:
                self.pythons[system] = python
        self._prepare("mosaic-streaming", "mds")
        self._prepare("litdata", "litdata")

    def _prepare(self, system: str, kind: str) -> None:
        target = self.dir / kind
        marker = target / ".done"  # holds the format's version: an older format is rewritten
        if system not in self.pythons or (marker.exists() and marker.read_text() == FORMATS[kind]):
            return
        shutil.rmtree(target, ignore_errors=True)
        cmd = [self.pythons[system], str(RUNNER), "prepare", kind, str(self.dir / "raw" / "train"),
               str(self.dir / "plan.json"), str(target)]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode:
            self.failures[system] = f"writing {kind}: {last_lines(done.stderr)}"
            return
        marker.write_text(FORMATS[kind])

    def upload(self, server: s3server.S3Server) -> None:
        fs = fsspec.filesystem("s3", **server.storage_options())
        for name in ("raw", "out", "mds", "litdata"):
            if (self.dir / name).exists():
                fs.put(str(self.dir / name), f"{server.bucket}/{self.size}/{name}", recursive=True)

    def config(self, system: str, storage: str, workers: int, s3: dict[str, Any] | None, bucket: str,
               **extra: Any) -> dict[str, Any]:  # fmt: skip
        local = storage == "local"
        base = str(self.dir) if local else f"s3://{bucket}/{self.size}"
        shards = sorted(
            str(p.relative_to(self.dir / "out")) for p in (self.dir / "out").glob("shards/*/*.tar")
        )
        return {
            "system": system, "storage": storage, "workers": workers, "plan": self.plan,
            "clip_length": self.args.clip_length, "seed": self.args.seed,
            "source": f"{base}/raw/train" if not local else str(self.dir / "raw" / "train"),
            "out": f"{base}/out", "shards": [f"{base}/out/{s}" for s in shards],
            "mds": f"{base}/mds", "litdata": f"{base}/litdata", "s3": s3 or {},
            "cache": str(self.work / "cache" / f"{system}-{time.monotonic_ns()}"), **extra,
        }  # fmt: skip

    def run(self, cfg: dict[str, Any]) -> dict[str, Any]:
        """One epoch in a fresh process of the system's environment."""
        return self.run_together([cfg])[0]

    def run_together(self, cfgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Epochs in fresh processes running at the same time, one per config."""
        procs = []
        for i, cfg in enumerate(cfgs):
            path = self.work / f"config-{i}.json"
            path.write_text(json.dumps(cfg))
            python = self.pythons.get(cfg["system"], sys.executable)  # the peers' own, else ours
            command = [python, str(RUNNER), "run", str(path)]
            procs.append(subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                          env=self._env(cfg["s3"])))  # fmt: skip
        results = []
        for proc, cfg in zip(procs, cfgs, strict=True):
            try:
                out, err = proc.communicate(timeout=self.args.timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                results.append({"error": f"no result within {self.args.timeout} s"})
                continue
            finally:
                shutil.rmtree(cfg["cache"], ignore_errors=True)
            results.append(self._result(cfg, proc.returncode, out, err))
        return results

    @staticmethod
    def _env(s3: dict[str, Any]) -> dict[str, str]:
        env = {}
        if s3:  # the standard variables, and Mosaic Streaming's endpoint variable
            endpoint = s3["endpoint_url"]
            env = {"S3_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": s3["key"],
                   "AWS_SECRET_ACCESS_KEY": s3["secret"], "AWS_REGION": "us-east-1",
                   "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
        return {**os.environ, **env, "PYTHONPATH": str(ROOT)}

    @staticmethod
    def _result(cfg: dict[str, Any], code: int, out: str, err: str) -> dict[str, Any]:
        for line in out.splitlines():
            if line.startswith("RESULT "):
                result: dict[str, Any] = json.loads(line[len("RESULT ") :])
                if "error" in result:  # the whole story, for whoever reads the log
                    log(f"{cfg['system']} ({cfg['storage']}) stderr:\n{err[-3000:]}")
                return result
        return {"error": f"exit {code}: {last_lines(err)}"}


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


Key = tuple[str, str, str, int]  # size, system, storage, workers


def measure(args: argparse.Namespace) -> None:
    sizes, systems = args.sizes.split(","), args.systems.split(",")
    workers, storages = [int(w) for w in args.workers.split(",")], args.storage.split(",")
    runs: dict[Key, list[float]] = {}
    failed: dict[Key, str] = {}
    shutil.rmtree(args.work / "s3", ignore_errors=True)
    benches = {size: Bench(args.work, args, size) for size in sizes}
    with s3server.running(args.work / "s3") as server:
        for bench in benches.values():
            bench.upload(server)
        with latency_proxy(server.ports["s3"], args.delay) as proxy:
            s3 = {**server.storage_options(), "endpoint_url": f"http://127.0.0.1:{proxy.port}"}
            keys = [
                (size, system, st, w)
                for size in sizes
                for system in systems
                for st in storages
                for w in workers
            ]
            big = [s for s in sizes if s.endswith("x1080")]
            for size in big:  # the naive baselines of the targets, and ClipDataset at training size
                for system in ("mose-shards", "raw-tree", "mose-shards@480", "raw-tree@480"):
                    keys.append((size, system, "local", 0))
            for key in keys:  # verify each (size, system, storage) once, with one worker
                if key[3] == 1 and "@" not in key[1]:
                    why = _verify(benches[key[0]], key, server.bucket, s3)
                    if why:
                        failed.update({k: why for k in keys if k[:3] == key[:3]})
            for r in range(args.rounds):
                order = keys[r % len(keys) :] + keys[: r % len(keys)]
                for key in order:
                    if key in failed:
                        continue
                    result = _epoch(benches[key[0]], key, server.bucket, s3)
                    if "error" in result:
                        failed[key] = result["error"]
                        log(f"{key}: FAILED {result['error']}")
                        continue
                    runs.setdefault(key, []).append(result["clips"] / result["seconds"])
                    if result["clips"] > 1 and result["seconds"] > result["first"]:  # after the first clip
                        steady = (result["clips"] - 1) / (result["seconds"] - result["first"])
                        runs.setdefault((*key[:3], key[3] + 100), []).append(steady)
                    log(f"round {r + 1} {key}: {runs[key][-1]:.2f} clips/s")
            if args.epoch_seconds and big:
                _long_epoch(benches[big[-1]], args, server.bucket, s3, runs)
    report(args, sizes, systems, workers, storages, runs, failed)


def _cfg(bench: Bench, key: Key, bucket: str, s3: dict[str, Any], **extra: Any) -> dict[str, Any]:
    _, system, storage, workers = key
    name, _, short = system.partition("@")
    more = {"short_side": int(short)} if short else {}
    return bench.config(name, storage, workers, s3 if storage == "s3" else None, bucket, **more, **extra)


def _verify(bench: Bench, key: Key, bucket: str, s3: dict[str, Any]) -> str | None:
    """One epoch with hashes: every clip must equal mose-shards' local one; the failure, if any."""
    system = key[1]
    if system in bench.failures:
        return bench.failures[system]
    result = bench.run(_cfg(bench, key, bucket, s3, verify=True))
    if "error" in result:
        log(f"{key}: FAILED {result['error']}")
        return str(result["error"])
    if system == "mose-shards" and key[2] == "local":
        bench.reference = result["hashes"]
    reference = getattr(bench, "reference", None)
    if not reference:
        return "no mose-shards reference to compare with"
    if result["hashes"] != reference:
        bad = sorted(v for v in reference if result["hashes"].get(v) != reference[v])
        return f"clips differ from mose-shards' for {len(bad)} of {len(reference)} videos"
    log(f"{key}: {len(reference)} clips verified by hash")
    return None


def _epoch(bench: Bench, key: Key, bucket: str, s3: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return bench.run(_cfg(bench, key, bucket, s3, **extra))


def _decodes(data: bytes, count: int) -> int:
    from PIL import Image

    for _ in range(count):
        Image.open(io.BytesIO(data)).convert("RGB").tobytes()
    return count


def machine_parallelism(jpeg: bytes, count: int = 40) -> float:
    """How much faster 2 processes decode than 1 right now: what a shared machine has to give."""
    import multiprocessing

    rates = []
    for procs in (1, 2):
        with multiprocessing.get_context("fork").Pool(procs) as pool:
            start = time.perf_counter()
            pool.starmap(_decodes, [(jpeg, count)] * procs)
            rates.append(count * procs / (time.perf_counter() - start))
    return rates[1] / rates[0]


def _long_epoch(bench: Bench, args: argparse.Namespace, bucket: str, s3: dict[str, Any],
                runs: dict[Key, list[float]]) -> None:  # fmt: skip
    """mose-shards' ClipLoader, 1 vs 2 workers, locally and from S3, on shuffled epochs of at least
    epoch_seconds (each clip its own read); beside them, the machine's ceiling for the same work:
    two independent in-process epochs at once against one."""
    probe = _epoch(bench, (bench.size, "mose-shards", "local", 1), bucket, s3,
                   clips_per_video=4, shuffle=True, clip_loader=True)  # fmt: skip
    per_clip = (probe["seconds"] - probe["first"]) / max(1, probe["clips"] - 1)  # after start-up
    # 1.6x margin: the machine may be freer later in the run than during the probe
    clips = max(1, int(1.6 * args.epoch_seconds / per_clip / len(bench.plan["videos"])) + 1)
    jpeg = next((bench.dir / "raw" / "train" / "JPEGImages").glob("*/*.jpg")).read_bytes()
    long = {"clips_per_video": clips, "shuffle": True, "clip_loader": True}
    name = f"long-epoch x{clips}"
    measures = [("local", 1), ("local", 2), ("s3", 1), ("s3", 2), ("ceiling", 1), ("ceiling", 2)]
    for r in range(args.rounds):
        runs.setdefault((bench.size, "cpu-probe", "local", 2), []).append(machine_parallelism(jpeg))
        probed = runs[(bench.size, "cpu-probe", "local", 2)][-1]
        log(f"machine parallelism probe (JPEG decodes): {probed:.2f}x")
        for storage, w in measures[r % len(measures) :] + measures[: r % len(measures)]:
            if storage == "ceiling":  # w processes at once, each a whole in-process epoch
                cfg = _cfg(bench, (bench.size, "mose-shards", "local", 0), bucket, s3, **long)
                results = bench.run_together([{**cfg, "cache": f"{cfg['cache']}-{i}"} for i in range(w)])
                bad = [x["error"] for x in results if "error" in x]
                if bad:
                    log(f"ceiling, {w} process(es): FAILED {bad[0]}")
                    continue
                rate = sum(x["clips"] for x in results) / max(x["seconds"] for x in results)
                runs.setdefault((bench.size, "same-work", "local", w), []).append(rate)
                log(f"same work, {w} independent process(es): {rate:.2f} clips/s")
                continue
            result = _epoch(bench, (bench.size, "mose-shards", storage, w), bucket, s3, **long)
            if "error" in result:
                log(f"long epoch, {storage}, {w} workers: FAILED {result['error']}")
                continue
            runs.setdefault((bench.size, name, storage, w), []).append(result["clips"] / result["seconds"])
            log(f"long epoch, {storage}, {w} workers: {result['clips']} clips in {result['seconds']:.1f} s "
                f"(first clip after {result['first']:.2f} s)")  # fmt: skip


def report(args: argparse.Namespace, sizes: list[str], systems: list[str], workers: list[int],
           storages: list[str], runs: dict[Key, list[float]], failed: dict[Key, str]) -> None:  # fmt: skip
    med = {k: _median(v) for k, v in runs.items()}
    print(
        f"\n{time.strftime('%Y-%m-%d')}, {args.rounds} interleaved rounds, medians; clips of "
        f"{args.clip_length} frames, {args.frames} frames per video; S3 = SeaweedFS + "
        f"{args.delay * 1000:.0f} ms/request; first row clips/s, others x mose-shards in the same column"
    )
    cols = [(st, w) for st in storages for w in workers]
    for size in sizes:
        videos = args.videos_1080 if size.endswith("1080") else args.videos_480
        head = " | ".join(f"{st}, {w} worker{'s' * (w > 1)}" for st, w in cols)
        print(f"\n| {size}, {videos} videos | {head}"
              + " |\n|---|" + "---|" * len(cols))  # fmt: skip
        for system in systems:
            cells = []
            for st, w in cols:
                key, ours = (size, system, st, w), med.get((size, "mose-shards", st, w))
                if key in failed:
                    cells.append("failed (see below)")
                elif med.get(key) is None:
                    cells.append("-")
                elif system == "mose-shards" or not ours:
                    cells.append(f"{med[key]:.2f} clips/s")
                else:
                    cells.append(f"{med[key] / ours:.2f}x")
            print(f"| {system} | " + " | ".join(cells) + " |")
    print("\nTargets (ratios of medians from this run):")
    for size in sizes:
        targets = (
            ("mose-shards", "raw-tree", "full size vs naive loader, in process (>= 1.5x)"),
            ("mose-shards@480", "raw-tree@480", "short_side=480 vs naive decode + resize (>= 3x)"),
        )
        for a, b, what in targets:
            x, y = med.get((size, a, "local", 0)), med.get((size, b, "local", 0))
            if x and y:
                print(f"  {size}: {what}: {x / y:.2f}x ({x:.2f} vs {y:.2f} clips/s)")
        for w in workers:
            x, y = med.get((size, "mose-shards", "s3", w)), med.get((size, "mose-shards", "local", w))
            xs, ys = (
                med.get((size, "mose-shards", "s3", w + 100)),
                med.get((size, "mose-shards", "local", w + 100)),
            )
            if x and y and xs and ys:
                print(f"  {size}: S3 + {args.delay * 1000:.0f} ms vs local, {w} worker(s) (>= 0.9): "
                      f"{x / y:.2f} over the epoch, {xs / ys:.2f} after the first clip")  # fmt: skip
        x, y = med.get((size, "mose-shards", "local", 2)), med.get((size, "mose-shards", "local", 1))
        if x and y:
            print(
                f"  {size}: 2 workers vs 1, local (>= 1.8x on an epoch >= 30 s; this is short): {x / y:.2f}x"
            )
    for key in [k for k in med if k[1].startswith("long-epoch") and k[3] == 2]:
        one = med.get((*key[:3], 1))
        if one:
            print(f"  {key[0]}: 2 workers vs 1 on a long shuffled epoch, {key[2]} ({key[1]} clips/video, "
                  f"ClipLoader): {med[key] / one:.2f}x ({med[key]:.2f} vs {one:.2f} clips/s)")  # fmt: skip
    for key in [k for k in med if k[1].startswith("long-epoch") and k[2] == "s3"]:
        local = med.get((key[0], key[1], "local", key[3]))
        if local:
            print(f"  {key[0]}: S3 + {args.delay * 1000:.0f} ms vs local on the long epoch, "
                  f"{key[3]} worker(s) (>= 0.9): {med[key] / local:.2f}")  # fmt: skip
    for key in [k for k in med if k[1] == "same-work" and k[3] == 2]:
        one = med.get((*key[:3], 1))
        if one:
            print(f"  (meanwhile, 2 independent in-process epochs of the same clips ran "
                  f"{med[key] / one:.2f}x one: the machine's ceiling for 2 workers)")  # fmt: skip
    for key in [k for k in med if k[1] == "cpu-probe"]:
        print(f"  (and 2 processes decoding JPEGs ran {med[key]:.2f}x one process on this machine)")
    if failed:
        print("\nFailures (as reported by the system, for every configuration listed):")
        grouped: dict[tuple[str, str], list[str]] = {}
        for (size, system, st, w), why in sorted(failed.items()):
            grouped.setdefault((system, why), []).append(f"{size} {st} {w}w")
        for (system, why), where in grouped.items():
            print(f"  {system} ({', '.join(where)}): {why}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--work", type=Path, default=ROOT / ".bench-peers", help="data and venvs, kept between runs"
    )
    ap.add_argument("--sizes", default="854x480,1920x1080")
    ap.add_argument("--videos-480", type=int, default=24)
    ap.add_argument("--videos-1080", type=int, default=8)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--clip-length", type=int, default=8)
    ap.add_argument("--shard-size", default="24MB")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians reported")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--storage", default="local,s3")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--delay", type=float, default=0.02, help="seconds the proxy adds per request")
    ap.add_argument("--epoch-seconds", type=float, default=0.0,
                    help="also time ClipDataset, 1 vs 2 workers, on an epoch at least this long")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=900, help="seconds one measurement may take")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    measure(args)


if __name__ == "__main__":
    main()
