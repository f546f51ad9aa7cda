"""The house rules seen from outside: what importing a stage loads, and what plotting leaves alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mose_shards.cli import main

HEAVY = (
    "pycocotools", "ray", "duckdb", "matplotlib", "mose_shards.conversion", "mose_shards.analytics",
    "mose_shards.archives",
)  # fmt: skip
CHECK = Path(__file__).resolve().parent.parent / ".ci" / "check_modules.py"


def loaded_after(statement: str) -> list[str]:
    """The HEAVY modules present in sys.modules after running `statement` in a fresh interpreter."""
    code = f"import sys, json; {statement}; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return list(json.loads(proc.stdout))


def test_loader_import_loads_no_conversion_or_analytics_code() -> None:
    """`import mose_shards.loader` loads none of pycocotools, ray, duckdb, matplotlib, conversion code or
    the archive readers."""
    assert loaded_after("import mose_shards.loader") == []


def test_the_probe_sees_heavy_imports() -> None:
    """The probe above can fail: importing the converter does load pycocotools."""
    assert "pycocotools" in loaded_after("import mose_shards.conversion.masks")


def check_modules(*args: str, path: Path | None = None) -> subprocess.CompletedProcess[str]:
    """.ci/check_modules.py (what `make lint` runs), on mose_shards or on a package found in `path`."""
    env = {**os.environ, "PYTHONPATH": str(path)} if path is not None else None
    return subprocess.run([sys.executable, str(CHECK), *args], capture_output=True, text=True, env=env)


def test_no_import_cycles_and_no_long_modules() -> None:
    """No module of mose_shards imports, directly or through others (lazily, in a function, too), a
    module that imports it; none is over 400 lines."""
    proc = check_modules()
    assert (proc.returncode, proc.stderr) == (0, "")


def test_the_module_check_sees_cycles_and_long_modules(tmp_path: Path) -> None:
    """The check above can fail: a cycle closed by a function-level import, and a 401-line module."""
    pkg = tmp_path / "cyclic_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("import cyclic_pkg.a\n")
    (pkg / "d.py").write_text("from . import a\n" + "x = 1\n" * 400)
    proc = check_modules("--package", "cyclic_pkg", path=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "import cycle: cyclic_pkg.a <-> cyclic_pkg.b <-> cyclic_pkg.c",
        "cyclic_pkg/d.py: 401 lines (at most 400; split it by responsibility)",
    ]


@pytest.mark.parametrize("backend", ["pdf", "svg"])
def test_plots_leave_the_callers_matplotlib_backend_alone(
    converted: Path, tmp_path: Path, backend: str
) -> None:
    """write_plots draws without pyplot: a backend the caller chose (as a notebook does) stays chosen."""
    code = (
        f"import matplotlib; matplotlib.use({backend!r}); "
        "from mose_shards.analytics.plots import write_plots; "
        f"files = write_plots({str(converted)!r}, {str(tmp_path)!r}); "
        "print(matplotlib.get_backend(), len(files))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    name, count = proc.stdout.split()
    assert name == backend and int(count) > 0


def test_plot_command_still_writes_pngs(converted: Path, tmp_path: Path, capsys) -> None:
    """The stats --plot command writes PNG files (the CLI is unchanged by the move)."""
    assert main(["stats", str(converted), "--plot", str(tmp_path)]) == 0
    pngs = sorted(tmp_path.glob("*.png"))
    assert pngs and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
