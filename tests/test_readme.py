"""The README stays true: its examples run, its column reference matches schemas/."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mose_shards.core.schema import markdown

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE = re.compile(r"```python\n# example: (?P<name>[\w-]+)\n(?P<code>.*?)```", re.S)


def examples(prefix: str = "") -> dict[str, str]:
    """name -> code of the README's `# example: name` python blocks."""
    found = {m["name"]: m["code"] for m in EXAMPLE.finditer(README.read_text())}
    return {k: v for k, v in found.items() if k.startswith(prefix)}


READING = ["webdataset", "pyarrow", "duckdb", "rle", "range-read"]


def test_first_code_block_is_make_demo_then_make_test() -> None:
    """The README's first code block is exactly `make demo` and `make test`."""
    first = re.search(r"```\w*\n(.*?)```", README.read_text(), re.S)
    assert first is not None and first.group(1).split("\n")[:2] == ["make demo", "make test"]


def test_column_reference_matches_the_schema_files() -> None:
    """The README's table reference is the one generated from schemas/*.json."""
    text = README.read_text()
    block = text.split("<!-- tables:start", 1)[1].split("-->", 1)[1].split("<!-- tables:end -->")[0]
    assert block.strip() == markdown().strip()


@pytest.mark.parametrize("name", READING)
def test_reading_example_runs(name: str, converted: Path, capsys) -> None:
    """Each 'Reading the output' example runs against a real conversion."""
    code = examples()[name].replace('OUT = "demo/out"', f"OUT = {str(converted)!r}")
    assert f"OUT = {str(converted)!r}" in code
    exec(compile(code, f"README:{name}", "exec"), {})
    if name != "rle":
        assert capsys.readouterr().out.strip()
