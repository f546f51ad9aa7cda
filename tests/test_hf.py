"""Hugging Face `datasets` reads the output: shards of every split, the tables, the dataset card."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mose_shards.conversion import card
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.core.schema import TABLES

# Read at import by datasets and huggingface_hub: nothing here may touch the network.
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
datasets = pytest.importorskip("datasets")
yaml = pytest.importorskip("yaml")

SPLITS = ("train", "valid")


@pytest.fixture(scope="module")
def carded(raw_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """raw_tree converted with --dataset-card."""
    out = tmp_path_factory.mktemp("carded") / "out"
    convert(ConvertConfig(source=str(raw_tree), output=str(out), shard_size=150_000, dataset_card=True))
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("hf-cache"))


def _manifest(out: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return doc


def _shards(out: Path) -> dict[str, list[str]]:
    doc = _manifest(out)
    return {s: [str(out / e["path"]) for e in doc["splits"][s]["shards"]] for s in SPLITS}


def _frames_table(out: Path, split: str) -> list[dict[str, Any]]:
    parts = _manifest(out)["splits"][split]["tables"]["frames"]
    rows: list[dict[str, Any]] = []
    for part in parts:
        rows += pq.read_table(out / part).to_pylist()
    return rows


def test_webdataset_round_trip_every_split(carded: Path, raw_tree: Path, cache: str) -> None:
    """load_dataset("webdataset") reads every frame of every split with the source bytes."""
    loaded = datasets.load_dataset("webdataset", data_files=_shards(carded), cache_dir=cache)
    assert set(loaded) == set(SPLITS)
    for split in SPLITS:
        table = {(r["video_id"], r["frame_index"]): r for r in _frames_table(carded, split)}
        ds = loaded[split].cast_column("jpg", datasets.Image(decode=False))
        assert ds.num_rows == len(table) == _manifest(carded)["splits"][split]["frames"]
        annotated = 0
        for sample in ds:
            meta = sample["json"]
            row = table[(meta["video_id"], meta["frame_index"])]
            source = raw_tree / split / "JPEGImages" / meta["video_id"] / f"{meta['frame_name']}.jpg"
            assert sample["jpg"]["bytes"] == source.read_bytes()
            assert meta["has_mask"] == row["has_mask"]
            png = raw_tree / split / "Annotations" / meta["video_id"] / f"{meta['frame_name']}.png"
            assert meta["has_mask"] == png.exists()
            if meta["has_mask"]:
                annotated += 1
                assert np.array_equal(np.asarray(sample["png"]), np.asarray(Image.open(png)))
            else:
                assert sample["png"].size == (1, 1)
        assert annotated == _manifest(carded)["splits"][split]["annotated_frames"]
    assert loaded["valid"].num_rows > _manifest(carded)["splits"]["valid"]["annotated_frames"]


def test_parquet_tables_round_trip(carded: Path, cache: str) -> None:
    """load_dataset("parquet") reads every table of every split with the same rows as pyarrow."""
    doc = _manifest(carded)
    for table in TABLES:
        files = {s: [str(carded / p) for p in doc["splits"][s]["tables"][table]] for s in SPLITS}
        loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=cache)
        for split in SPLITS:
            want = [row for path in files[split] for row in pq.read_table(path).to_pylist()]
            assert loaded[split].to_list() == want, (table, split)


def test_load_folder_through_card(carded: Path, cache: str) -> None:
    """load_dataset(OUT) follows the card's configs to the shards of every split."""
    loaded = datasets.load_dataset(str(carded), "default", cache_dir=cache)
    doc = _manifest(carded)
    assert {s: loaded[s].num_rows for s in loaded} == {s: doc["splits"][s]["frames"] for s in SPLITS}
    first = loaded["valid"][0]
    assert first["json"]["has_mask"] and first["png"].size == (
        first["json"]["width"],
        first["json"]["height"],
    )


def test_card_table_patterns_load(carded: Path, cache: str) -> None:
    """The parquet data_files the card shows load every table's rows."""
    doc = _manifest(carded)
    files = card.table_data_files(doc, "masks", str(carded))
    loaded = datasets.load_dataset("parquet", data_files=files, cache_dir=cache)
    assert {s: loaded[s].num_rows for s in loaded} == {s: doc["splits"][s]["masks"] for s in SPLITS}


def test_card_yaml(carded: Path) -> None:
    """README.md starts with YAML front matter whose configs are the shards of every split."""
    text = (carded / "README.md").read_text()
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["configs"] == card.configs(_manifest(carded))
    (config,) = front["configs"]
    assert config["config_name"] == "default" and config["default"] is True
    assert config["data_files"] == [{"split": s, "path": f"shards/{s}/*.tar"} for s in SPLITS]
    assert "hf://datasets/REPO/tables/masks/valid-*.parquet" in text


def test_card_leaves_out_bad_split_names_and_empty_splits() -> None:
    """A split the Hub cannot name, or one with no shards, gets no data_files entry."""
    entry = {"shards": [{"path": "x.tar"}], "tables": {t: ["t.parquet"] for t in TABLES}}
    empty = {"shards": [], "tables": {t: [] for t in TABLES}}
    doc = {"splits": {"train": entry, "bad-name": entry, "test": empty}}
    (config,) = card.configs(doc)
    assert config["data_files"] == [{"split": "train", "path": "shards/train/*.tar"}]
    assert card.table_data_files(doc, "masks") == {"train": "tables/masks/train-*.parquet"}
    assert card.configs({"splits": {"test": empty}}) == []


def test_no_card_without_option(converted: Path) -> None:
    """Without --dataset-card, convert writes no README.md."""
    assert not (converted / "README.md").exists()


def test_png_member_bytes_are_a_png(carded: Path) -> None:
    """The valid split's placeholder member opens as a 1x1 PNG outside datasets too."""
    import tarfile

    with tarfile.open(_shards(carded)["valid"][0]) as tar:
        pngs = [m for m in tar.getmembers() if m.name.endswith(".png")]
        sizes = {Image.open(io.BytesIO(tar.extractfile(m).read())).size for m in pngs}  # type: ignore[union-attr]
    assert (1, 1) in sizes and len(sizes) == 2


def test_readme_example(converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's Hugging Face example runs and prints a valid frame's has_mask and a box."""
    from tests.test_query import _run, python_example

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "cache"))
    printed = _run(python_example("hugging-face", converted)).split(maxsplit=1)
    assert printed[0] == "False"  # the second frame of a valid video has no mask
    assert len(json.loads(printed[1])) == 4
    assert (tmp_path / "cache").is_dir()
