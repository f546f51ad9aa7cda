"""Independent readers for tests: walk a raw tree and an output without using the converter's code."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image


def tar_bytes(files: dict[str, bytes]) -> bytes:
    """A plain tar of the given members (name -> bytes), in order, written with the stdlib tarfile."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def raw_frames(split_dir: Path) -> dict[tuple[str, str], tuple[bytes, bytes | None]]:
    """(video_id, frame_name) -> (jpg bytes, png bytes or None) for one split folder."""
    out = {}
    for jpg in sorted((split_dir / "JPEGImages").glob("*/*.jpg")):
        png = split_dir / "Annotations" / jpg.parent.name / f"{jpg.stem}.png"
        out[(jpg.parent.name, jpg.stem)] = (jpg.read_bytes(), png.read_bytes() if png.exists() else None)
    return out


def shard_samples(tar_path: Path) -> list[tuple[str, dict[str, bytes]]]:
    """(key, {ext: bytes}) for each sample of a tar, in order, read with the stdlib tarfile."""
    samples: list[tuple[str, dict[str, bytes]]] = []
    with tarfile.open(tar_path) as archive:
        for member in archive:
            key, _, ext = member.name.rpartition(".")
            data = archive.extractfile(member).read()  # type: ignore[union-attr]
            if not samples or samples[-1][0] != key:
                samples.append((key, {}))
            samples[-1][1][ext] = data
    return samples


def all_samples(out: Path, split: str) -> list[tuple[str, dict[str, bytes]]]:
    manifest = json.loads((out / "manifest.json").read_text())
    result = []
    for shard in manifest["splits"][split]["shards"]:
        result += shard_samples(out / shard["path"])
    return result


def table(out: Path, name: str, split: str | None = None) -> list[dict[str, Any]]:
    """All rows of one table (optionally one split), read with pyarrow from the manifest's file list."""
    manifest = json.loads((out / "manifest.json").read_text())
    rows: list[dict[str, Any]] = []
    for split_name, entry in manifest["splits"].items():
        if split is None or split == split_name:
            for rel in entry["tables"][name]:
                rows += pq.read_table(out / rel).to_pylist()
    return rows


def decode_ids(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def expected_objects(png: bytes, void: int | None = 255) -> dict[int, tuple[int, list[int], np.ndarray]]:
    """object id -> (area, [x, y, w, h], binary mask) computed with plain numpy."""
    ids = decode_ids(png)
    out = {}
    for value in np.unique(ids):
        if value == 0 or (void is not None and value == void):
            continue
        binary = ids == value
        ys, xs = np.nonzero(binary)
        box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
        out[int(value)] = (int(binary.sum()), box, binary)
    return out


def tree_bytes(root: Path, exclude: tuple[str, ...] = (".mose-shards",)) -> dict[str, bytes]:
    """relative path -> bytes of every file under root, except excluded top-level folders."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in exclude
    }


def clean_conversion(raw: Path, tmp_path_factory: Any) -> Path:
    """The reference for rerun tests: one uninterrupted single-worker conversion, one video per shard."""
    from mose_shards.cli import main

    out = Path(tmp_path_factory.mktemp("clean")) / "out"
    assert main(["convert", str(raw), str(out), "--shard-size", "1", "--workers", "1", "-q"]) == 0
    return out


def davis_tree(tmp_path: Path) -> tuple[Path, list[str]]:
    """A DAVIS-2017 tree of three generated videos (JPEGImages/480p/<video>/, Annotations/480p/,
    ImageSets/2017/train.txt naming two of them and val.txt the third): (its folder, the videos)."""
    from mose_shards.synth import SynthSpec, generate

    raw = generate(tmp_path / "raw", spec=SynthSpec(videos=3, frames=3, size=(64, 48), splits=("train",)))
    davis = tmp_path / "DAVIS"
    for sub in ("JPEGImages", "Annotations"):
        shutil.copytree(raw / "train" / sub, davis / sub / "480p")
    videos = sorted(p.name for p in (davis / "JPEGImages" / "480p").iterdir())
    (davis / "ImageSets" / "2017").mkdir(parents=True)
    (davis / "ImageSets" / "2017" / "train.txt").write_text("\n".join(videos[:2]) + "\n")
    (davis / "ImageSets" / "2017" / "val.txt").write_text(videos[2] + "\n")
    return davis, videos
