"""The README and the docs stay true: every Python block runs as it stands, links resolve, the column
reference matches schemas/, and the README stays short."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mose_shards.core.schema import markdown

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TABLES = DOCS / "guide" / "tables.md"
PAGES = [README, *sorted(DOCS.rglob("*.md"))]
EXAMPLE = re.compile(r"```python\n# example: (?P<name>[\w-]+)[^\n]*\n(?P<code>.*?)```", re.S)
PYTHON = re.compile(r"^```python\n(?P<code>.*?)^```", re.S | re.M)
LINK = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


def text() -> str:
    """README.md and every page of docs/, one after the other."""
    return "\n".join(page.read_text() for page in PAGES)


def examples(prefix: str = "") -> dict[str, str]:
    """name -> code of the `# example: name` python blocks of the README and the docs."""
    found: dict[str, str] = {}
    for match in EXAMPLE.finditer(text()):
        assert match["name"] not in found, f"two examples are called {match['name']}"
        found[match["name"]] = match["code"]
    return {k: v for k, v in found.items() if k.startswith(prefix)}


def python_blocks() -> list[tuple[str, str]]:
    """(page:line, code) of every ```python block of the README and the docs."""
    blocks = []
    for page in PAGES:
        source = page.read_text()
        for match in PYTHON.finditer(source):
            line = source.count("\n", 0, match.start()) + 1
            blocks.append((f"{page.relative_to(ROOT)}:{line}", match["code"]))
    return blocks


def test_first_code_block_is_make_demo_then_make_test() -> None:
    """The README's first code block is exactly `make demo` and `make test`."""
    first = re.search(r"```\w*\n(.*?)```", README.read_text(), re.S)
    assert first is not None and first.group(1).split("\n")[:2] == ["make demo", "make test"]


def test_readme_is_short() -> None:
    """The README is a first screen and a page per user, at most 300 lines; the rest is in docs/."""
    assert len(README.read_text().splitlines()) <= 300


def test_column_reference_matches_the_schema_files() -> None:
    """The docs' table reference is the one generated from schemas/*.json."""
    text = TABLES.read_text()
    block = text.split("<!-- tables:start", 1)[1].split("-->", 1)[1].split("<!-- tables:end -->")[0]
    assert block.strip() == markdown().strip()


def test_readme_links_point_at_files() -> None:
    """Every relative link of the README names a file or folder of the repository (the docs' own
    links are checked by `mkdocs build --strict` in `make docs`)."""
    targets = [m["target"] for m in LINK.finditer(README.read_text())]
    relative = [t.split("#")[0] for t in targets if "://" not in t and not t.startswith("#")]
    assert relative, "the README links to no page of docs/"
    missing = [t for t in relative if not (ROOT / t).exists()]
    assert not missing, missing


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding what `make demo` makes (demo/raw, demo/out), made by the real command."""
    cwd = tmp_path_factory.mktemp("make-demo")
    cli = Path(sys.executable).with_name("mose-shards")
    command = [str(cli), "demo", "demo", "--videos", "6", "--frames", "16", "-q"]
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    (cwd / "tmp").mkdir()
    return cwd


BLOCKS = python_blocks()


@pytest.mark.slow
@pytest.mark.parametrize("where,code", BLOCKS, ids=[where for where, _ in BLOCKS])
def test_python_block_runs_as_it_stands(where: str, code: str, demo_dir: Path) -> None:
    """Each ```python block, pasted into a file of its own and run as is, beside a fresh demo output,
    exits 0 (and prints, where it prints)."""
    script = demo_dir / "tmp" / (re.sub(r"\W", "_", where) + ".py")
    script.write_text(code)
    env = {**os.environ, "TMPDIR": str(demo_dir / "tmp")}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=demo_dir, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{where} exited {done.returncode}:\n{done.stderr[-3000:]}"
    if re.search(r"^\s*print\(", code, re.M):
        assert done.stdout.strip(), f"{where} printed nothing"


def test_every_block_needing_an_extra_says_so() -> None:
    """A block importing polars, datasets, duckdb, torch or iopath names it in a comment on its first
    line."""
    extras = ("polars", "datasets", "duckdb", "torch", "iopath")
    for where, code in BLOCKS:
        first = code.split("\n", 1)[0]
        for extra in extras:
            if re.search(rf"^\s*(import|from) {extra}\b", code, re.M):
                assert first.startswith("#") and extra in first, f"{where}: first line does not name {extra}"


def test_architecture_names_every_module() -> None:
    """docs/architecture.md's module table has a line for every module of the package, and names no
    module that is gone (a row may group modules of one folder: `loader/stream.py`, `retry.py`)."""
    table = (DOCS / "architecture.md").read_text().split("## Modules", 1)[1]
    named: set[str] = set()
    for cell in re.findall(r"^\| (`[^|]*`) \|", table, re.M):
        folder = ""
        for name in re.findall(r"`([^`]+)`", cell):
            if "/" in name:
                folder = name.rsplit("/", 1)[0] + "/"
            named.add(name if "/" in name else folder + name)
    package = ROOT / "mose_shards"
    real = {
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py")
    }
    hint = "docs/architecture.md, '## Modules': one line per module (a new module gets its line there)"
    assert sorted(real - named) == [], f"modules without a line; {hint}"
    assert sorted(named - real) == [], f"lines naming modules that do not exist; {hint}"


@pytest.mark.slow
def test_stats_output_shown_is_the_demos(demo_dir: Path) -> None:
    """The table docs/guide/analytics.md shows for `mose-shards stats demo/out` is what it prints."""
    page = (DOCS / "guide" / "analytics.md").read_text()
    shown = page.split("`mose-shards stats demo/out`", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    cli = Path(sys.executable).with_name("mose-shards")
    done = subprocess.run([str(cli), "stats", "demo/out"], cwd=demo_dir, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout == shown


def test_file_paths_named_in_the_docs_exist() -> None:
    """Every `folder/file.py` the README and the docs name is a file of the package or the repository
    (modules move; the prose must follow)."""
    named = set(re.findall(r"`([a-z_]+/[\w/]+\.py)`", text()))
    assert named, "no file path found"
    missing = sorted(p for p in named if not (ROOT / "mose_shards" / p).exists() and not (ROOT / p).exists())
    assert missing == [], missing
