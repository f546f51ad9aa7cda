"""Options per end: a source on one S3 server, the output on another, each with its own credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mose_shards.cli import main
from mose_shards.core.storage import Store
from tests.conftest import SMALL_SHARD
from tests.s3server import S3Server

pytestmark = pytest.mark.s3


def _flags(flag: str, options: dict[str, Any]) -> list[str]:
    """--flag KEY=VALUE for each option an S3Server gives (nested client_kwargs dotted)."""
    out = []
    for key, value in options.items():
        if isinstance(value, dict):
            out += [a for k, v in value.items() for a in (flag, f"{key}.{k}={v}")]
        else:
            out += [flag, f"{key}={value}"]
    return out


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AWS_* variable may supply credentials: every request is signed with the options given."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def raw_on_a(s3_server: S3Server, raw_tree: Path) -> str:
    """raw_tree uploaded to the first server (bucket `test`)."""
    url = s3_server.url("two-stores/raw")
    store = Store(url, s3_server.storage_options())
    for path in sorted(raw_tree.rglob("*")):
        if path.is_file():
            store.write(path.relative_to(raw_tree).as_posix(), path.read_bytes())
    return url


def test_source_and_output_options(
    raw_on_a: str, s3_server: S3Server, s3_server_b: S3Server, converted: Path, no_aws_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """convert reads server A with --source-option and writes server B with --output-option; same bytes."""
    out = s3_server_b.url("two-stores/out")
    argv = ["convert", raw_on_a, out, "--shard-size", str(SMALL_SHARD), "-q"]
    argv += _flags("--source-option", s3_server.storage_options())
    argv += _flags("--output-option", s3_server_b.storage_options())
    assert main(argv) == 0, capsys.readouterr().err
    remote = json.loads(Store(out, s3_server_b.storage_options()).read("manifest.json"))
    local = json.loads((converted / "manifest.json").read_text())
    for name, split in local["splits"].items():
        shas = [s["sha256"] for s in split["shards"]]
        assert [s["sha256"] for s in remote["splits"][name]["shards"]] == shas


def test_storage_option_alone_serves_both_ends(
    raw_on_a: str, s3_server: S3Server, s3_server_b: S3Server, no_aws_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """--storage-option is the default of both ends and --output-option wins key by key: with only B's
    endpoint given for the output, A's keys are sent to B and refused (one line, exit 1)."""
    out = s3_server_b.url("two-stores/refused")
    a_options = _flags("--storage-option", s3_server.storage_options())
    b_endpoint = ["--output-option", f"endpoint_url={s3_server_b.endpoint}"]
    capsys.readouterr()
    assert main(["convert", raw_on_a, out, "-q", *a_options, *b_endpoint]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "access denied" in err[0] and "two-stores/refused" in err[0], err
    b_keys = ["--output-option", f"key={s3_server_b.key}", "--output-option", f"secret={s3_server_b.secret}"]
    assert main(["convert", raw_on_a, out, "-q", *a_options, *b_endpoint, *b_keys]) == 0, capsys.readouterr()
    assert Store(out, s3_server_b.storage_options()).exists("manifest.json")


def test_export_dest_option(
    s3_converted: str, s3_server: S3Server, s3_server_b: S3Server, raw_tree: Path, no_aws_env: None,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """export reads OUT on server A with --storage-option and writes DEST on B with --dest-option."""
    dest = s3_server_b.url("two-stores/export")
    argv = ["export", s3_converted, dest, "-q"]
    argv += _flags("--storage-option", s3_server.storage_options())
    argv += _flags("--dest-option", s3_server_b.storage_options())
    assert main(argv) == 0, capsys.readouterr().err
    restored = Store(dest, s3_server_b.storage_options())
    frame = next(raw_tree.glob("train/JPEGImages/*/*.jpg"))
    assert restored.read(frame.relative_to(raw_tree).as_posix()) == frame.read_bytes()
