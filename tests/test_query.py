"""SQL over the tables (local, memory://, S3), the README's queries and Polars / pyarrow examples."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.parquet as pq
import pytest

from mose_shards.analytics.query import connect, format_result, query
from mose_shards.cli import main
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.core.errors import ConfigError
from mose_shards.core.schema import TABLES, table_schema
from tests.test_stats import hand_tree

pytest.importorskip("duckdb")


def readme_blocks(language: str, marker: str) -> dict[str, str]:
    """The README's and docs' fenced blocks of a language whose first line is `<marker> <name>`, by name."""
    from tests.test_readme import text

    found = re.findall(rf"```{language}\n{re.escape(marker)} ([\w-]+)[^\n]*\n(.*?)```", text(), re.S)
    return {name: body for name, body in found}


def python_example(name: str, out: Path) -> str:
    """A README example with the demo output path replaced by out."""
    code = readme_blocks("python", "# example:")[name]
    assert 'OUT = "demo/out"' in code
    return code.replace('OUT = "demo/out"', f"OUT = {str(out)!r}")


def table_rows(out: Path, table: str) -> list[dict[str, Any]]:
    doc = json.loads((out / "manifest.json").read_text())
    return [
        r
        for s in doc["splits"].values()
        for p in s["tables"][table]
        for r in pq.read_table(out / p).to_pylist()
    ]


def sql(name: str) -> str:
    return readme_blocks("sql", "-- query:")[name]


@pytest.fixture(scope="module")
def hand_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hand-made tree of test_stats (with categories), converted."""
    raw = hand_tree(tmp_path_factory.mktemp("hand-q"))
    out = raw / "out"
    convert(ConvertConfig(source=str(raw), output=str(out)))
    return out


def test_views_count_every_split(converted: Path) -> None:
    """Each view has a split column and the manifest's row counts per split."""
    doc = json.loads((converted / "manifest.json").read_text())
    con = connect(str(converted))
    for table, key in (("videos", "videos"), ("frames", "frames"), ("masks", "masks")):
        got = dict(con.execute(f"SELECT split, count(*) FROM {table} GROUP BY split").fetchall())
        assert got == {s: doc["splits"][s][key] for s in doc["splits"]}, table
    objects = con.execute("SELECT count(*) FROM objects").fetchone()
    assert objects == (len(table_rows(converted, "objects")),)
    assert [c[0] for c in con.execute("SELECT * FROM masks LIMIT 0").description] == table_schema(
        "masks"
    ).names


def test_connect_one_split(converted: Path) -> None:
    """connect(splits=...) limits every view to those splits; an unknown split is a ConfigError."""
    con = connect(str(converted), splits=["valid"])
    assert con.execute("SELECT DISTINCT split FROM frames").fetchall() == [("valid",)]
    with pytest.raises(ConfigError, match="nope"):
        connect(str(converted), splits=["nope"])


def test_memory_filesystem(converted: Path) -> None:
    """A non-local fsspec URL goes through the registered filesystem and gives the same answers."""
    fs = fsspec.filesystem("memory")
    fs.put(str(converted), "/q-test/out", recursive=True)
    try:
        statement = "SELECT split, count(*) AS n, sum(area) AS a FROM masks GROUP BY split ORDER BY split"
        assert (
            query("memory://q-test/out", statement).to_pylist()
            == query(str(converted), statement).to_pylist()
        )
    finally:
        fs.rm("/q-test", recursive=True)


@pytest.mark.s3
def test_s3(s3_converted: str, s3_server: Any, converted: Path) -> None:
    """On the SeaweedFS S3 server, the views read the tables through s3fs."""
    statement = "SELECT split, count(*) AS n FROM frames GROUP BY split ORDER BY split"
    got = query(s3_converted, statement, s3_server.storage_options())
    assert got.to_pylist() == query(str(converted), statement).to_pylist()


def test_empty_table_view(converted: Path, tmp_path: Path) -> None:
    """A table without any part still gets a view with every column and no row."""
    out = tmp_path / "out"
    shutil.copytree(converted, out)
    doc = json.loads((out / "manifest.json").read_text())
    for split in doc["splits"].values():
        split["tables"]["masks"] = []
    (out / "manifest.json").write_text(json.dumps(doc))
    table = query(str(out), "SELECT * FROM masks")
    assert table.num_rows == 0 and table.column_names == table_schema("masks").names


# --- the README's queries --------------------------------------------------------------------------


def test_readme_has_the_five_queries() -> None:
    """The README shows the five queries the issue asks for."""
    assert set(readme_blocks("sql", "-- query:")) == {
        "reappearing",
        "crowded",
        "tiny",
        "categories",
        "offsets",
    }


def test_query_reappearing(converted: Path) -> None:
    """Objects that disappear and come back: exactly the objects flagged `reappears`."""
    got = query(str(converted), sql("reappearing")).to_pylist()
    want = [r for r in table_rows(converted, "objects") if r["reappears"]]
    assert want and {(r["split"], r["video_id"], r["object_id"]) for r in got} == {
        (r["split"], r["video_id"], r["object_id"]) for r in want
    }
    absent = [r["absent_frames"] for r in got]
    assert absent == sorted(absent, reverse=True) and min(absent) >= 1


def test_query_crowded(converted: Path) -> None:
    """The most crowded frames are the ten largest object counts."""
    got = [r["num_objects"] for r in query(str(converted), sql("crowded")).to_pylist()]
    assert got == sorted((r["num_objects"] for r in table_rows(converted, "frames")), reverse=True)[:10]


def test_query_tiny(converted: Path) -> None:
    """Tiny objects: the mask instances under 0.5% of the frame."""
    got = query(str(converted), sql("tiny")).to_pylist()
    want = [r for r in table_rows(converted, "masks") if r["area"] < 0.005 * r["width"] * r["height"]]
    key = ("split", "video_id", "frame_index", "object_id")
    assert sorted(tuple(r[k] for k in key) for r in got) == sorted(tuple(r[k] for k in key) for r in want)


def test_query_categories(hand_out: Path, converted: Path) -> None:
    """Per-category counts on the hand-made tree; '(none)' for everything without meta.json."""
    got = {
        r["category"]: (r["objects"], r["masks"]) for r in query(str(hand_out), sql("categories")).to_pylist()
    }
    assert got == {"cat": (5, 6), "emu": (3, 3), "dog": (1, 2)}
    rows = query(str(converted), sql("categories")).to_pylist()
    assert {r["category"] for r in rows} == {"(none)"}
    assert sum(r["masks"] for r in rows) == len(table_rows(converted, "masks"))


def test_query_offsets(converted: Path, raw_tree: Path) -> None:
    """The offsets the query returns point at the frame's source JPEG and PNG bytes in the shard."""
    (row,) = query(str(converted), sql("offsets")).to_pylist()
    video = min(r["video_id"] for r in table_rows(converted, "videos") if r["split"] == "train")
    with open(converted / row["shard"], "rb") as shard:
        shard.seek(row["jpg_offset"])
        jpg = shard.read(row["jpg_size"])
        shard.seek(row["png_offset"])
        png = shard.read(row["png_size"])
    assert jpg == (raw_tree / "train" / "JPEGImages" / video / "00003.jpg").read_bytes()
    assert png == (raw_tree / "train" / "Annotations" / video / "00003.png").read_bytes()


# --- the README's Python examples --------------------------------------------------------------------


def _run(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    return out.getvalue()


def test_example_read_by_offset(converted: Path) -> None:
    """The README's read-by-offset example runs (it asserts the JPEG magic itself)."""
    _run(python_example("read-by-offset", converted))


def test_example_polars(converted: Path) -> None:
    """The README's Polars example prints mask counts per split that match the tables."""
    pytest.importorskip("polars")
    printed = _run(python_example("polars", converted))
    rows = table_rows(converted, "masks")
    for split in ("train", "valid"):
        count = sum(r["split"] == split for r in rows)
        assert re.search(rf"│ {split}\s*┆ {count}\s*┆", printed), printed


def test_example_pyarrow_dataset(converted: Path) -> None:
    """The README's pyarrow.dataset example counts the reappearing train objects."""
    printed = _run(python_example("pyarrow-dataset", converted))
    want = sum(r["reappears"] and r["split"] == "train" for r in table_rows(converted, "objects"))
    assert printed.split()[0] == str(want) and want > 0


# --- formats and the command -------------------------------------------------------------------------


def test_cli_formats(converted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--format csv, json and table print the same rows."""
    statement = (
        "SELECT split, count(*) AS n, [1, 2] AS l, NULL AS z FROM frames GROUP BY split ORDER BY split"
    )
    assert main(["query", str(converted), statement, "--format", "json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert main(["query", str(converted), statement, "--format", "csv"]) == 0
    as_csv = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert main(["query", str(converted), statement]) == 0
    as_text = capsys.readouterr().out.splitlines()
    assert [r["split"] for r in as_json] == [r["split"] for r in as_csv] == ["train", "valid"]
    assert [r["n"] for r in as_json] == [int(r["n"]) for r in as_csv] == [32, 32]
    assert as_json[0]["l"] == [1, 2] and as_csv[0]["l"] == "[1,2]" and as_json[0]["z"] is None
    assert as_text[0].split() == ["split", "n", "l", "z"] and as_text[-1] == "(2 rows)"
    assert as_text[2].split() == ["train", "32", "[1,2]", "NULL"]


def test_cli_bad_sql(converted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SQL DuckDB rejects is a one-line error, not a traceback."""
    assert main(["query", str(converted), "SELECT nope FROM masks"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("mose-shards: error: query 'SELECT nope FROM masks' failed:")
        and len(err.strip().splitlines()) == 1
    )


def test_cli_not_an_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder without a manifest is named in a one-line error."""
    assert main(["query", str(tmp_path), "SELECT 1"]) == 1
    assert str(tmp_path) in capsys.readouterr().err


def test_format_result_unknown() -> None:
    """An unknown format is a ConfigError listing the known ones."""
    with pytest.raises(ConfigError, match="table, csv, json"):
        format_result(table_schema("videos").empty_table(), "xml")


def test_every_table_has_a_view(converted: Path) -> None:
    """All four tables are queryable by name."""
    con = connect(str(converted))
    for table in TABLES:
        assert con.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0
