"""verify --workers and export --workers: the same answers as one worker; export batches its writes."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from mose_shards.cli import main
from mose_shards.core.storage import Store
from mose_shards.core.tables import read_part
from mose_shards.core.tarfmt import tiles
from mose_shards.tools.verify import verify
from tests.s3server import S3Server


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_parallel_verify_reports_what_one_worker_reports(converted: Path, tmp_path: Path) -> None:
    """On an output with a flipped byte, a shifted frames row and a missing part, 2 workers give
    the same problems, in the same (manifest) order, as 1 worker; a sound output passes with both."""
    out = tmp_path / "out"
    shutil.copytree(converted, out)
    sound = [verify(str(out), workers=n) for n in (1, 2)]
    assert all(r.ok for r in sound) and sound[0].samples == sound[1].samples > 0
    shards = sorted((out / "shards" / "train").iterdir())
    data = bytearray(shards[0].read_bytes())
    data[700] ^= 0xFF
    shards[0].write_bytes(bytes(data))
    part = out / "tables" / "frames" / f"{shards[1].stem}.parquet"
    table = pq.read_table(part)
    field = table.schema.field("png_offset")
    shifted = pc.add(table.column("png_offset"), 512).cast(field.type)
    pq.write_table(table.set_column(table.schema.get_field_index("png_offset"), field, shifted), part)
    (out / "tables" / "masks" / "valid-000000.parquet").unlink()
    one, two = verify(str(out), workers=1), verify(str(out), workers=2)
    assert not one.ok and len(one.problems) >= 3
    assert one.problems == two.problems and one.shards == two.shards


def test_fast_check_needs_every_member_in_place(converted: Path) -> None:
    """The one-read check accepts a shard its frames table tiles exactly, and refuses one whose
    table lists a member under another name (verify then names the row)."""
    store = Store(converted)
    shard = sorted((converted / "shards" / "train").iterdir())[0]
    rel = f"shards/train/{shard.name}"
    frames = read_part(store, f"tables/frames/{shard.stem}.parquet")
    data = shard.read_bytes()
    assert tiles(data, frames, rel)
    keys = frames["key"].to_pylist()
    renamed = frames.set_column(frames.schema.get_field_index("key"), "key", pa.array([keys[-1], *keys[:-1]]))
    assert not tiles(data, renamed, rel)
    assert not tiles(data, frames, "shards/train/other.tar")
    assert not tiles(data[:-1024] + bytes(1024), frames.slice(0, frames.num_rows - 1), rel)


@pytest.mark.s3
def test_parallel_export_to_s3_in_batches(
    converted: Path, raw_tree: Path, tmp_path: Path, s3_server: S3Server, capsys: pytest.CaptureFixture[str]
) -> None:
    """export --workers 2 into s3:// (batches of concurrent PUTs) and into a folder restore the raw tree."""
    local = tmp_path / "raw-again"
    assert main(["export", str(converted), str(local), "--workers", "2", "-q"]) == 0
    assert _hashes(local) == _hashes(raw_tree)
    dest = s3_server.url("parallel-export")
    options = [
        f"--dest-option={k}={v}" for k, v in s3_server.storage_options().items() if k != "client_kwargs"
    ]
    options.append("--dest-option=client_kwargs.region_name=us-east-1")
    assert main(["export", str(converted), dest, "--workers", "2", "-q", *options]) == 0, (
        capsys.readouterr().err
    )
    remote = Store(dest, s3_server.storage_options())
    for rel, digest in _hashes(raw_tree).items():
        assert hashlib.sha256(remote.read(rel)).hexdigest() == digest


def test_memory_outputs_are_checked_in_process(converted: Path) -> None:
    """memory:// exists only in this process: --workers 2 checks it here instead of in workers."""
    import fsspec

    fsspec.filesystem("memory").put(str(converted), "/parallel-verify/out", recursive=True)
    report = verify("memory://parallel-verify/out", workers=2)
    assert report.ok and report.shards == len(list(converted.glob("shards/*/*.tar")))
