"""The SQL sandbox (core/sql.py): `query` and `where=` run one SELECT over the four tables and touch
nothing else: no file, no URL, no extension, no setting, no second statement, no Python variable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from mose_shards.analytics.query import query
from mose_shards.cli.main import main
from mose_shards.core import manifest
from mose_shards.core.errors import ConfigError
from mose_shards.loader.mixture import Source, select_videos

pytest.importorskip("duckdb")


def where_subset(source: Source) -> set[str] | None:
    """select_videos for a source with a `where`, against its own output."""
    store, doc = manifest.read(source.url, source.storage_options)
    known = query(
        source.url, f"SELECT video_id FROM videos WHERE split = '{source.split}'", source.storage_options
    )
    return select_videos(source, source.name(0), store, doc, known.column("video_id").to_pylist())


def refused(url: str, sql: str, storage_options: Any = None) -> str:
    """The one-line message `query` refuses `sql` with."""
    with pytest.raises(ConfigError) as info:
        query(url, sql, storage_options)
    text = str(info.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1) TO '{target}'",
        "ATTACH '{target}' AS x",
        "EXPORT DATABASE '{target}'",
        "CREATE TABLE t AS SELECT 1",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "PRAGMA version",
        "EXPLAIN SELECT 1",
        "SELECT 1; COPY (SELECT 1) TO '{target}'",
        "SELECT 1; SELECT 2",
    ],
)
def test_only_one_select_runs(converted: Path, tmp_path: Path, statement: str) -> None:
    """Anything but one SELECT is refused before it runs, naming the SQL; nothing is written."""
    target = tmp_path / "written"
    sql = statement.format(target=target)
    text = refused(str(converted), sql)
    assert text.startswith("SQL ") and ("only one SELECT" in text or "only a SELECT" in text)
    assert not target.exists() and os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM read_blob('/etc/hostname')",
        "SELECT * FROM glob('/etc/*')",
        "SELECT * FROM sniff_csv('/etc/passwd')",
        "SELECT * FROM read_parquet('{part}')",
        "SELECT * FROM parquet_metadata('{part}')",
        "SELECT * FROM read_json('http://127.0.0.1:9/x.json')",
        "SELECT * FROM query('COPY (SELECT 1) TO ''{target}''')",
        "WITH a AS (SELECT 1) SELECT * FROM a, read_csv('/etc/passwd')",
    ],
)
def test_a_select_cannot_read_files_or_urls(converted: Path, tmp_path: Path, sql: str) -> None:
    """A SELECT that reaches for a file, a URL or another statement fails in one line, naming the SQL."""
    part = next((converted / "tables").rglob("*.parquet"))
    target = tmp_path / "written"
    text = refused(str(converted), sql.format(part=part, target=target))
    assert text.startswith("query ") and " failed: " in text
    assert "root:" not in text and not target.exists()


def test_python_variables_are_not_tables(converted: Path) -> None:
    """DuckDB's replacement scans would read a caller's variable by name; the sandbox turns them off."""
    secret_rows = pa.table({"secret": ["hunter2"]})
    assert secret_rows.num_rows == 1
    text = refused(str(converted), "SELECT * FROM secret_rows")
    assert "secret_rows" in text and "hunter2" not in text


def test_settings_are_locked(converted: Path) -> None:
    """External access is off and the configuration locked for the query that runs."""
    got = query(
        str(converted),
        "SELECT current_setting('enable_external_access') AS ext,"
        " current_setting('lock_configuration') AS lock,"
        " (SELECT count(*) FROM videos) AS n",
    ).to_pylist()
    assert got == [{"ext": False, "lock": True, "n": 8}]


def test_selects_still_run(converted: Path) -> None:
    """WITH ... SELECT, FROM-first, VALUES and subqueries over several tables are SELECTs and run."""
    out = str(converted)
    with_select = "WITH v AS (SELECT video_id FROM videos) SELECT count(*) AS n FROM v"
    assert query(out, with_select).to_pylist() == [{"n": 8}]
    assert query(out, "FROM videos SELECT count(*) AS n").to_pylist() == [{"n": 8}]
    assert query(out, "VALUES (1)").num_rows == 1
    joined = "SELECT count(DISTINCT m.video_id) AS n FROM masks m JOIN frames f USING (video_id, frame_index)"
    assert query(out, joined).to_pylist() == [{"n": 8}]


def test_cli_refuses_in_one_line(converted: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI prints one error line naming the SQL, nothing on stdout, and exits 2."""
    assert main(["query", str(converted), "SELECT * FROM read_csv('/etc/passwd')"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "root:" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "read_csv('/etc/passwd')" in lines[0] and "Permission" in lines[0]


# --- where= ---------------------------------------------------------------------------------------


def test_where_cannot_close_its_parenthesis(converted: Path, tmp_path: Path) -> None:
    """The issue's injection: a where that ends the WHERE and adds a COPY is refused; nothing is written."""
    target = tmp_path / "x.csv"
    hostile = [
        f"true); COPY (SELECT 1) TO '{target}'; SELECT video_id FROM videos WHERE (true",
        "true) UNION SELECT 'x' FROM (SELECT 1) t WHERE (true",
        "true; SELECT 1",
    ]
    for where in hostile:
        with pytest.raises(ConfigError) as info:
            where_subset(Source(str(converted), where=where))
        text = str(info.value)
        assert "\n" not in text and "is not one SQL expression" in text and text.startswith("source 0 (")
    assert not target.exists()


def test_where_cannot_read_files(converted: Path) -> None:
    """A subquery in a where runs in the same sandbox: a file read fails, naming the where."""
    where = "video_id IN (SELECT column0 FROM read_csv('/etc/passwd'))"
    with pytest.raises(ConfigError) as info:
        where_subset(Source(str(converted), where=where))
    text = str(info.value)
    assert "where 'SELECT DISTINCT video_id" in text and "Permission" in text and "root:" not in text


def test_where_keeps_semicolons_in_strings(converted: Path) -> None:
    """A `;` or `)` inside a string literal is part of the expression, not a statement end."""
    got = where_subset(Source(str(converted), where="video_id <> 'a;b)' AND num_frames > 0"))
    assert got is not None and len(got) == 4


# --- object storage ---------------------------------------------------------------------------------


@pytest.mark.s3
def test_s3_query_and_where_with_external_access_off(
    s3_converted: str, s3_server: Any, converted: Path
) -> None:
    """On SeaweedFS the tables come through our reader, so queries work with external access off,
    and a hostile query is refused there too."""
    options = s3_server.storage_options()
    got = query(
        s3_converted,
        "SELECT count(*) AS n, current_setting('enable_external_access') AS ext FROM frames",
        options,
    )
    want = query(str(converted), "SELECT count(*) AS n FROM frames").column("n").to_pylist()
    assert got.column("n").to_pylist() == want and got.column("ext").to_pylist() == [False]
    assert "Permission" in refused(s3_converted, "SELECT * FROM read_csv('/etc/passwd')", options)
    assert "only one SELECT" in refused(s3_converted, "SELECT 1; SELECT 2", options)
    source = Source(s3_converted, where="num_objects > 3", storage_options=options)
    local = Source(str(converted), where="num_objects > 3")
    assert where_subset(source) == where_subset(local)
    with pytest.raises(ConfigError, match="is not one SQL expression"):
        where_subset(Source(s3_converted, where="true); SELECT (1", storage_options=options))


def test_clip_dataset_with_the_issues_where_writes_nothing(converted: Path, tmp_path: Path) -> None:
    """Building a dataset from a training config's hostile `where` fails in one line; no file appears."""
    from mose_shards.loader import ClipDataset

    target = tmp_path / "x.csv"
    where = f"true); COPY (SELECT 1) TO '{target}'; SELECT video_id FROM videos WHERE (true"
    with pytest.raises(ConfigError) as info:
        ClipDataset(Source(str(converted), where=where), clip_length=3)
    assert "\n" not in str(info.value) and "is not one SQL expression" in str(info.value)
    assert not target.exists()
    assert len(ClipDataset(Source(str(converted), where="num_frames > 0"), clip_length=3).items(0)) > 0
