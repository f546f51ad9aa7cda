"""The demo conversion's bytes, pinned: a refactor that changes any output file fails here.

The sha256 values were computed from the demo conversion before the package was laid out by stage
(issue 8). A change that alters the output on purpose (a new format version) must update them in the
same commit and say why.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mose_shards.cli import main

PINNED = {
    ".mose-shards/done/train-000000.json": "12d258b606bf64615cb51aafde2da07b9f018a52ed33497840ecfdf627bc88f2",
    ".mose-shards/done/train-000001.json": "3e2efcf87c59f44c816820e542e77c6d7b07a6cf195e4db2c8080c6e4e7b5afb",
    ".mose-shards/done/valid-000000.json": "207c18d3c6a0ac4dc8bcfd70fa01414d200be8439a40faf5b23052e96b17dc6b",
    ".mose-shards/done/valid-000001.json": "823e14172ef2299eb914b5286344413d554c6d30957c9207856f6b0be61e7a13",
    ".mose-shards/plan.json": "38b0d5e70c7f6f3923cafe0afa6693f35cf0bdb7919bb2994f23c5fc09467e06",
    "manifest.json": "e618b5d8930235216d39da15e392d40c0304e40ba783e1484dc37895d00a4bb4",
    "shards/train/train-000000.tar": "ffa17a575ff1b6ae7b57f5d489237528b6d07876791d88df6221421bdbdeca40",
    "shards/train/train-000001.tar": "e1cc2779ec9ae63707936e00afa175c8110384382147dfe632ad46f23d42f7e9",
    "shards/valid/valid-000000.tar": "f1fcfaffee85f76d3b4394e9967b053c2a5503dfa6dd1f70aceb113ef161db37",
    "shards/valid/valid-000001.tar": "2c36ac0789ba621498f9e4bd2c1cc17d4418c8ea0d07ac1526e7e615dd6cb7f7",
    "tables/frames/train-000000.parquet": "40f3b4c15c81ba0da5a9a195a12dc67264ff2d9c489cdc9cb40aa63688414eb9",
    "tables/frames/train-000001.parquet": "d2034ed6581b868504cd5d33333ab0e6d7cd7a21e4c611df3f808f768606b817",
    "tables/frames/valid-000000.parquet": "5929df077be3f217fe9d5f4a8940d0c0fc83b5a98752ceb2a1b7b25290ac9f16",
    "tables/frames/valid-000001.parquet": "46ad1a81dc89b7d40b7c8e4031f8865701521213045e40787688c7002a33d824",
    "tables/masks/train-000000.parquet": "23c2472d5f8d0c95157de94b9d43be2dae3abfd095b6c9e845ffd178d706b2cc",
    "tables/masks/train-000001.parquet": "cb52bceb7306c6f73b5abf8d1b8f22add2b4a8fbae84d8806fd427355ccb1f52",
    "tables/masks/valid-000000.parquet": "3f4ebfb31060928677d39ad94acb600f836d45ef5c588712ece60312b0100dcb",
    "tables/masks/valid-000001.parquet": "1e8cc78a1521ce3c9542f8e99965cb4393858e22c9d1e4ebe4de39e9b8b035d3",
    "tables/objects/train-000000.parquet": "b8fda4612d4dd72ead50e231a3d0803d43d2ece9b68a9d90fe6bf5c366fa6504",
    "tables/objects/train-000001.parquet": "628ec6aef1dfa90e3efe9dcf9ea3c988fdb0ae12f2a3b63ee954e940b38029e3",
    "tables/objects/valid-000000.parquet": "84ba9a0096ea2eedc2db71a7ba01576d3f2d82cc683383207981b5e02b4c1029",
    "tables/objects/valid-000001.parquet": "ad56213d222d9f25299e5f17573bbc8df35794dac5788048aee56ea4ace4b09e",
    "tables/videos/train-000000.parquet": "300e17463eee83cda99d5cdead7efcda2df43a1abf0dc36f8fe39ddae95db6db",
    "tables/videos/train-000001.parquet": "342c6a786b817286a4836292692d2fa759ab4ae783eb1339e2ede6c1d5d2e072",
    "tables/videos/valid-000000.parquet": "dbe5497041bcb38b09829d7a2b0524138f521b66650d287a012e930fa552f08e",
    "tables/videos/valid-000001.parquet": "9c11e38770dbf2450b274f8a5b06410303199c183aea8a7bc3899ac118692a32",
}


def normalised_plan(path: Path) -> bytes:
    """plan.json with its fingerprint and source replaced: since issue 12 the fingerprint covers each
    source file's mtime, which differs on every generation of the demo tree (the options stay pinned).
    Issue 21 added the source, so the pin of plan.json changed then (and only that file's)."""
    plan = json.loads(path.read_text())
    plan["fingerprint"] = "<FINGERPRINT>"
    plan["source"] = "<SRC>"  # recorded since issue 21 (a rerun names both sources); an absolute path
    return json.dumps(plan, indent=2, sort_keys=True).encode()


def normalised_manifest(path: Path) -> bytes:
    """The manifest with its absolute source path replaced, so the hash does not depend on tmp_path."""
    manifest = json.loads(path.read_text())
    manifest["source"] = "<SRC>"
    return json.dumps(manifest, indent=2, sort_keys=True).encode()


def test_demo_conversion_bytes_are_pinned(tmp_path: Path) -> None:
    """Every file of `mose-shards demo --videos 6 --frames 16` has the sha256 it had before the move."""
    assert main(["demo", str(tmp_path), "--videos", "6", "--frames", "16", "-q"]) == 0
    out = tmp_path / "out"
    got = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if rel == "manifest.json":
            data = normalised_manifest(path)
        elif rel == ".mose-shards/plan.json":
            data = normalised_plan(path)
        else:
            data = path.read_bytes()
        got[rel] = hashlib.sha256(data).hexdigest()
    assert got == PINNED
