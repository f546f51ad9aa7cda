"""How long `mose-shards browse` takes to start on a MOSEv2-shaped output, beside `mose-shards info`.

Generates rehearsal.py's MOSEv2-shaped train.tar (5,024 videos by default, tiny frames), converts it,
then times, each in a fresh process: `info OUT` (the baseline: interpreter, our imports, the manifest)
and `browse OUT` from its start to the line saying it listens (the index built from the Parquet
videos and objects tables, nothing decoded), and the first video page's frame. Prints the seconds and
the ratio browse / info.

    python benchmarks/browse.py [--videos 5024] [--work DIR]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.rehearsal import cli, generate_tar  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def time_info(out: Path) -> float:
    started = time.perf_counter()
    subprocess.run(cli("info", str(out)), check=True, capture_output=True)
    return time.perf_counter() - started


def time_browse(out: Path, video: str) -> tuple[float, float]:
    """(seconds to listening, seconds to the first frame of a video page after that)."""
    port = _port()
    started = time.perf_counter()
    proc = subprocess.Popen(cli("browse", str(out), "--port", str(port)), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        listening = time.perf_counter() - started
        if "browsing" not in line:
            raise SystemExit(f"browse did not start: {line!r}")
        t = time.perf_counter()
        for path in (f"/api/video/train/{video}", f"/frame/train/{video}/0.jpg", f"/mask/train/{video}/0"):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}") as response:
                response.read()
        return listening, time.perf_counter() - t
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=5024)
    parser.add_argument("--work", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        src, out = work / "train.tar", work / "out"
        if not (out / "manifest.json").exists():
            shape = generate_tar(src, args.videos)
            print(f"source: {shape['videos']} videos, {shape['frames']} frames, {shape['masks']} masks")
            convert = cli("convert", str(src), str(out), "--pipeline", "mose-v2", "--workers", "2", "-q")
            subprocess.run(convert, check=True)
        import pyarrow.parquet as pq

        video = str(pq.read_table(next((out / "tables" / "videos").rglob("*.parquet")))["video_id"][0])
        info = min(time_info(out) for _ in range(2))
        runs = [time_browse(out, video) for _ in range(2)]
        start, page = min(r[0] for r in runs), min(r[1] for r in runs)
        print(f"info (baseline): {info:.2f} s")
        print(f"browse, listening: {start:.2f} s ({start / info:.2f}x info)")
        print(f"first video page (json, frame, mask): {page:.2f} s")


if __name__ == "__main__":
    main()
