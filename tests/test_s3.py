"""Object storage for real: a SeaweedFS server, credentials, AWS variables, convert straight to s3://."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from mose_shards.cli import main
from mose_shards.core import manifest
from mose_shards.core.errors import OutputError
from mose_shards.core.storage import Store
from tests.s3server import S3Server

pytestmark = pytest.mark.s3


def test_round_trip_with_range_read(s3_server: S3Server) -> None:
    """A Store on s3:// writes atomically, reads whole and by byte range."""
    store = Store(s3_server.url("rt"), s3_server.storage_options())
    store.write("a/b.bin", b"0123456789")
    assert store.read("a/b.bin") == b"0123456789"
    assert store.read_range("a/b.bin", 3, 4) == b"3456"
    assert store.listdir("a") == ["b.bin"]


def test_wrong_secret_is_refused(s3_server: S3Server) -> None:
    """A request signed with a wrong secret key is refused (a one-line OutputError): auth is real."""
    Store(s3_server.url("auth"), s3_server.storage_options()).write("x", b"x")
    bad = Store(s3_server.url("auth"), s3_server.storage_options(secret="not-the-secret"))
    with pytest.raises(OutputError, match="access denied"):
        bad.read("x")


def test_standard_aws_variables(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION alone reach the server."""
    Store(s3_server.url("env"), s3_server.storage_options()).write("y", b"via env")
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    assert Store(s3_server.url("env"), {"skip_instance_cache": True}).read("y") == b"via env"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(OutputError, match="access denied"):
        Store(s3_server.url("env"), {"skip_instance_cache": True}).read("y")


def test_convert_to_s3_writes_everything(s3_converted: str, s3_server: S3Server) -> None:
    """convert SRC s3://... uploads shards and tables; the manifest's sha256s match the uploaded shards."""
    store, doc = manifest.read(s3_converted, s3_server.storage_options())
    for split in doc["splits"].values():
        assert split["shards"]
        for shard in split["shards"]:
            assert hashlib.sha256(store.read(shard["path"])).hexdigest() == shard["sha256"]
        for parts in split["tables"].values():
            assert all(store.exists(p) for p in parts)


def test_cli_convert_with_storage_options(s3_server: S3Server, raw_tree: Path) -> None:
    """`mose-shards convert SRC s3://... --storage-option ...` exits 0 and commits a manifest."""
    opts = s3_server.storage_options()
    args = ["convert", str(raw_tree), s3_server.url("cli"), "--split", "valid"]
    for key in ("endpoint_url", "key", "secret"):
        args += ["--storage-option", f"{key}={opts[key]}"]
    assert main(args) == 0
    _, doc = manifest.read(s3_server.url("cli"), opts)
    assert list(doc["splits"]) == ["valid"] and doc["splits"]["valid"]["videos"] == 4
    assert main(args) == 0, "a rerun of a finished conversion reads its manifest with the same options"


def test_cli_convert_wrong_key_fails_cleanly(
    s3_server: S3Server, raw_tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a wrong secret the CLI exits non-zero with a one-line error and writes no manifest."""
    opts = s3_server.storage_options()
    args = ["convert", str(raw_tree), s3_server.url("denied"), "--split", "valid", "-q"]
    args += [
        "--storage-option",
        f"endpoint_url={opts['endpoint_url']}",
        "--storage-option",
        f"key={opts['key']}",
    ]
    args += ["--storage-option", "secret=wrong-secret"]
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert not Store(s3_server.url("denied"), opts).exists("manifest.json")


def _upload_tree(local: Path, store: Store) -> None:
    for path in sorted(local.rglob("*")):
        if path.is_file():
            store.write(str(path.relative_to(local)), path.read_bytes())


def test_source_on_s3_folder_and_tar_forms(
    s3_server: S3Server, raw_tree: Path, converted: Path, tmp_path: Path
) -> None:
    """SRC as s3:// (a root of split folders, and a folder of split tars) converts like the local tree."""
    import tarfile

    from mose_shards.conversion.config import ConvertConfig
    from mose_shards.conversion.orchestrate import convert
    from tests.conftest import SMALL_SHARD
    from tests.helpers import tree_bytes

    opts = s3_server.storage_options()
    _upload_tree(raw_tree, Store(s3_server.url("src-folder"), opts))
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for split in ("train", "valid"):
        with tarfile.open(shipped / f"{split}.tar", "w") as archive:
            archive.add(raw_tree / split, arcname=split)
    _upload_tree(shipped, Store(s3_server.url("src-tars"), opts))
    want = tree_bytes(converted)
    del want["manifest.json"]
    for prefix in ("src-folder", "src-tars"):
        out = tmp_path / prefix
        config = ConvertConfig(source=s3_server.url(prefix), output=str(out), shard_size=SMALL_SHARD,
                               storage_options=opts)  # fmt: skip
        convert(config)
        got = tree_bytes(out)
        assert got.pop("manifest.json")
        assert got == want, prefix


def test_info_reads_an_output_on_s3(s3_converted: str, s3_server: S3Server, capsys) -> None:
    """`mose-shards info s3://...` summarises the manifest there."""
    opts = s3_server.storage_options()
    args = ["info", s3_converted]
    for key in ("endpoint_url", "key", "secret"):
        args += ["--storage-option", f"{key}={opts[key]}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert s3_converted in out and "valid" in out and "train" in out
