"""The peers' virtual environments for benchmarks/peers.py, one per peer under WORK/venvs, made on
first use: mosaicml-streaming pulls transformers, whose huggingface-hub pin clashes with `datasets`.

Each gets the peer, numpy, Pillow and the CPU torch 2.13.0 the project pins. Both peers pull in
PyPI's torchvision, which does not import beside that torch (a CUDA build: `operator
torchvision::nms does not exist`). LitData never imports it; Mosaic Streaming does (`import
streaming` fails), so if it fails there, Mosaic's environment alone gets the torch/torchvision pair
lying on this machine's disk for its architecture (on x86_64 a CUDA build, about 5.5 GB in the
venv; it runs on the CPU).
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

PEER_VENVS = {"mosaic-streaming": ["mosaicml-streaming"], "litdata": ["litdata"]}
IMPORTS_TORCHVISION = {"mosaic-streaming"}
TORCH = "torch==2.13.0"  # the CPU wheel the project pins
# a torch and a torchvision that import together, by `uname -m` (both on this machine's disk)
TORCHVISION_PAIRS = {
    "x86_64": ["torch==2.14.1", "torchvision==0.29.1"],
    "aarch64": ["torch==2.9.1", "torchvision==0.24.1"],
}
RECIPE = "2"  # written to .ready; an environment made by another recipe is made again


def last_lines(text: str, n: int = 3) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("WARNING")]
    return " | ".join(lines[-n:])[:500]


def peer_python(work: Path, system: str, log: Callable[[str], None]) -> tuple[str | None, str | None]:
    """(python of the system's environment, None) or (None, why it could not be made)."""
    if system not in PEER_VENVS:
        return sys.executable, None
    venv = work / "venvs" / system
    python = str(venv / "bin" / "python")
    ready = venv / ".ready"
    if ready.exists() and ready.read_text().startswith(RECIPE):
        return python, None
    log(f"creating {venv} ({' '.join(PEER_VENVS[system])}, {TORCH}, numpy, pillow)")
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    why = _pip(python, [*PEER_VENVS[system], TORCH, "numpy", "pillow"])
    if why:
        return None, why
    torch = TORCH
    broken = _torchvision_error(python) if system in IMPORTS_TORCHVISION else None
    if broken:
        pair = TORCHVISION_PAIRS.get(platform.machine())
        if pair is None:
            return None, f"torchvision beside {TORCH}: {broken} (no known pair for {platform.machine()})"
        log(f"{system}: torchvision beside {TORCH} fails ({broken}); installing {' '.join(pair)}")
        why = _pip(python, pair) or _torchvision_error(python)
        if why:
            return None, f"with {' '.join(pair)}: {why}"
        torch = " ".join(pair)
    ready.write_text(f"{RECIPE} {torch}\n")
    return python, None


def _pip(python: str, requirements: list[str]) -> str | None:
    done = subprocess.run(
        [python, "-m", "pip", "install", "-q", *requirements], capture_output=True, text=True
    )
    return f"pip install failed: {last_lines(done.stderr)}" if done.returncode else None


def _torchvision_error(python: str) -> str | None:
    """None if the environment has no torchvision or it imports; else its error line."""
    probe = "import importlib.util as u, sys\nu.find_spec('torchvision') or sys.exit(0)\nimport torchvision"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True)
    return last_lines(done.stderr, 1) if done.returncode else None
