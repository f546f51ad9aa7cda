"""Walking a local source folder: what fsspec's find lists, in sorted path order, without its dicts."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec

from mose_shards.conversion.entries import Entry, dir_entries
from mose_shards.core.storage import version_of


def _tree(root: Path) -> None:
    for rel in ("train/JPEGImages/v/00000.jpg", "train/JPEGImages/v/00001.jpg", "train/JPEGImages/v.txt",
                "train/Annotations/v/00000.png", "train/.DS_Store", "a.b", "a/c", "meta.json"):  # fmt: skip
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rel.encode() * 3)
    (root / "train" / "JPEGImages" / "v" / "00002.jpg").symlink_to(root / "a.b")
    (root / "train" / "JPEGImages" / "v" / "00003.jpg").symlink_to(root / "missing")
    (root / "linked").symlink_to(root / "a", target_is_directory=True)


def _fsspec_entries(root: Path) -> list[Entry]:
    """The general path (any fsspec filesystem): find with details, sorted by path."""
    fs = fsspec.filesystem("file")
    found = fs.find(str(root), withdirs=True, detail=True)
    prefix = str(root) + "/"
    out = []
    for path, info in sorted(found.items()):
        if path.startswith(prefix):
            rel = path[len(prefix) :]
            is_dir = info["type"] == "directory"
            out.append(Entry(rel, -1) if is_dir else Entry(rel, int(info["size"]), None, version_of(info)))
    return out


def test_local_walk_lists_what_fsspec_find_lists(tmp_path: Path) -> None:
    """Same files with the same sizes and versions (links included), folders too; files in path order."""
    _tree(tmp_path)
    walked = list(dir_entries(fsspec.filesystem("file"), str(tmp_path), str(tmp_path)))
    reference = _fsspec_entries(tmp_path)
    assert sorted(walked) == sorted(reference)
    files = [e for e in walked if e.size >= 0]
    assert files == [e for e in reference if e.size >= 0]
    link = next(e for e in walked if e.rel.endswith("00002.jpg"))
    assert link.size == os.path.getsize(tmp_path / "a.b")
    assert next(e for e in walked if e.rel.endswith("00003.jpg")).size == 0  # dangling: named when read
