"""verify names every damaged, truncated or missing file; export restores the raw tree byte for byte."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import fsspec
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mose_shards.cli import main
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.synth import SynthSpec, generate
from mose_shards.tools.export import export
from mose_shards.tools.verify import verify
from tests.helpers import tree_bytes
from tests.s3server import S3Server


@pytest.fixture
def out(converted: Path, tmp_path: Path) -> Path:
    """A private copy of the converted output, free to damage."""
    return Path(shutil.copytree(converted, tmp_path / "out"))


def _shard(out: Path, split: str = "train", index: int = 0) -> Path:
    return out / json.loads((out / "manifest.json").read_text())["splits"][split]["shards"][index]["path"]


def _verify_cli(out: Path | str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["verify", str(out), "-q"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_sound_output_passes(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An untouched output verifies: exit 0, every shard and sample counted."""
    code, stdout, err = _verify_cli(out, capsys)
    manifest = json.loads((out / "manifest.json").read_text())
    shards = sum(len(s["shards"]) for s in manifest["splits"].values())
    frames = sum(s["frames"] for s in manifest["splits"].values())
    assert (code, err) == (0, "")
    assert f"ok, {shards} shards, {frames} samples" in stdout


def test_flipped_byte_is_named(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One flipped byte inside a shard (same size) is caught by the sha256 and the shard is named."""
    shard = _shard(out, "valid", 1)
    first = pq.read_table(out / "tables" / "frames" / "valid-000001.parquet").to_pylist()[0]
    data = bytearray(shard.read_bytes())
    data[first["jpg_offset"] + 100] ^= 0x01  # inside a JPEG: the tar itself stays readable
    shard.write_bytes(bytes(data))
    code, _, err = _verify_cli(out, capsys)
    assert code == 1
    assert f"mose-shards: error: {shard}: damaged: sha256" in err


def test_truncated_shard_is_named(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A shard cut short is named as truncated, with both sizes."""
    shard = _shard(out)
    size = shard.stat().st_size
    shard.write_bytes(shard.read_bytes()[: size - 700])
    code, _, err = _verify_cli(out, capsys)
    assert code == 1
    assert f"{shard}: truncated: {size - 700} bytes, the manifest says {size}" in err


def test_every_missing_or_broken_file_is_named(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A missing shard, a missing table part and a garbage table part are all reported in one run."""
    missing = _shard(out, "train", 1)
    missing.unlink()
    part = out / "tables" / "masks" / "valid-000000.parquet"
    part.unlink()
    garbage = out / "tables" / "objects" / "train-000000.parquet"
    garbage.write_bytes(b"PAR1 not really")
    code, _, err = _verify_cli(out, capsys)
    assert code == 1
    assert f"{missing}: missing" in err
    assert f"{part}: missing" in err
    assert f"{garbage}: not a readable Parquet file" in err
    assert err.count("mose-shards: error: ") == 3


def test_frames_rows_must_match_the_members(out: Path) -> None:
    """A frames row whose offset no longer points at its member is named with the shard."""
    part = out / "tables" / "frames" / "train-000000.parquet"
    table = pq.read_table(part)
    index = table.schema.get_field_index("jpg_offset")
    shifted = pc.add(table.column("jpg_offset"), 512).cast(table.schema.field("jpg_offset").type)
    pq.write_table(table.set_column(index, table.schema.field("jpg_offset"), shifted), part)
    report = verify(str(out))
    assert not report.ok
    assert any(line.startswith(f"{part}: row ") and "does not match" in line for line in report.problems)


def test_verify_reads_urls(converted: Path) -> None:
    """verify works on an fsspec URL (memory://) as on a folder."""
    fs = fsspec.filesystem("memory")
    fs.put(str(converted), "/verify-url/out", recursive=True)
    report = verify("memory://verify-url/out")
    assert report.ok and report.shards > 0


def test_export_round_trip_is_byte_identical(raw_tree: Path, converted: Path, tmp_path: Path) -> None:
    """export restores every source file (frames, and masks only where they exist) with identical bytes."""
    dest = tmp_path / "raw-again"
    assert main(["export", str(converted), str(dest), "-q"]) == 0
    assert _hashes(dest) == _hashes(raw_tree)


def test_export_of_real_frames(real_data: Path, tmp_path: Path) -> None:
    """Real frames survive convert (judo skipped for its bad mask) and export byte for byte."""
    out, dest = tmp_path / "out", tmp_path / "dest"
    args = ["convert", str(real_data / "valid"), str(out), "--on-error", "skip", "--workers", "1", "-q"]
    assert main(args) == 0
    result = export(str(out), str(dest))
    source = {k: v for k, v in _hashes(real_data / "valid").items() if "/bike/" in k}
    assert _hashes(dest / "valid") == source
    assert (result.videos, result.frames, result.masks) == (1, 4, 1)


def test_export_refuses_a_non_empty_destination(
    converted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """export will not mix the tree into a folder that already holds files."""
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    assert main(["export", str(converted), str(dest), "-q"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


def test_readme_example_runs(raw_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's convert -> verify -> export example runs and restores the raw tree exactly."""
    from tests.test_readme import examples

    code = examples("scale-verify-export")["scale-verify-export"]
    paths = 'RAW, OUT, DEST = "demo/raw", "demo/out-parallel", "demo/raw-again"'
    assert paths in code
    out, dest = tmp_path / "out", tmp_path / "dest"
    code = code.replace(paths, f"RAW, OUT, DEST = {str(raw_tree)!r}, {str(out)!r}, {str(dest)!r}")
    exec(compile(code, "README:scale-verify-export", "exec"), {"__name__": "__main__"})
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("True ") and printed[0].endswith(" []")
    assert _hashes(dest) == _hashes(raw_tree)


def _s3_args(server: S3Server) -> list[str]:
    opts = server.storage_options()
    pairs = {"endpoint_url": opts["endpoint_url"], "key": opts["key"], "secret": opts["secret"]}
    pairs["client_kwargs.region_name"] = opts["client_kwargs"]["region_name"]
    return [arg for k, v in pairs.items() for arg in ("--storage-option", f"{k}={v}")]


@pytest.mark.s3
def test_verify_and_export_on_s3(
    s3_server: S3Server, s3_converted: str, raw_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a real S3 server (SeaweedFS): verify passes, export restores the raw tree byte for byte."""
    assert main(["verify", s3_converted, "-q", *_s3_args(s3_server)]) == 0
    assert main(["export", s3_converted, str(tmp_path / "dest"), "-q", *_s3_args(s3_server)]) == 0
    assert _hashes(tmp_path / "dest") == _hashes(raw_tree)


@pytest.mark.s3
def test_verify_names_a_truncated_object_on_s3(
    s3_server: S3Server, s3_converted: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A truncated shard object on S3 is named by its s3:// URL; exit 1."""
    fs = fsspec.filesystem("s3", **s3_server.storage_options())
    damaged = s3_server.url("verify-damaged")
    fs.copy(s3_converted.removeprefix("s3://"), damaged.removeprefix("s3://"), recursive=True)
    shard = json.loads(fs.cat_file(f"{damaged}/manifest.json"))["splits"]["train"]["shards"][0]["path"]
    fs.pipe_file(f"{damaged}/{shard}", fs.cat_file(f"{damaged}/{shard}")[:-2048])
    assert main(["verify", damaged, "-q", *_s3_args(s3_server)]) == 1
    assert f"mose-shards: error: {damaged}/{shard}: truncated: " in capsys.readouterr().err


def test_export_writes_meta_json_from_the_tables(tmp_path: Path) -> None:
    """With categories (YouTube-VOS), export writes meta.json again: converting the export gives the
    same shards and tables, byte for byte, as converting the original tree."""
    raw = generate(
        tmp_path / "raw", spec=SynthSpec(videos=3, frames=5, size=(64, 48), categories=True, seed=5)
    )
    first, second, dest = tmp_path / "first", tmp_path / "second", tmp_path / "dest"
    convert(ConvertConfig(str(raw), str(first)))
    export(str(first), str(dest))
    convert(ConvertConfig(str(dest), str(second)))
    one, two = tree_bytes(first), tree_bytes(second)
    manifests = [json.loads(tree.pop("manifest.json")) for tree in (one, two)]
    assert [m.pop("source") for m in manifests] == [str(raw), str(dest)]  # the only difference
    assert manifests[0] == manifests[1]
    assert one == two
    source = json.loads((raw / "valid" / "meta.json").read_text())["videos"]
    restored = json.loads((dest / "valid" / "meta.json").read_text())["videos"]
    visible = {
        video: {oid: obj for oid, obj in entry["objects"].items() if obj["frames"]}
        for video, entry in source.items()
    }
    assert {video: entry["objects"] for video, entry in restored.items()} == visible
