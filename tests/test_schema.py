"""Outputs match the versioned schemas in schemas/."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pyarrow.parquet as pq
import pytest

from mose_shards.core.schema import TABLES, load_document, parse_type, schema_versions, table_schema


@pytest.mark.parametrize("name", TABLES)
def test_every_table_file_has_the_schema_of_its_table(converted: Path, name: str) -> None:
    """Each Parquet part's Arrow schema (fields, types, nullability) is the one in schemas/."""
    manifest = json.loads((converted / "manifest.json").read_text())
    expected = table_schema(name)
    parts = [rel for entry in manifest["splits"].values() for rel in entry["tables"][name]]
    assert parts
    for rel in parts:
        schema = pq.read_schema(converted / rel)
        assert schema.equals(expected, check_metadata=False), rel
        assert schema.metadata[b"mose_shards.schema_version"] == str(load_document(name)["version"]).encode()


def test_manifest_validates_against_its_json_schema(converted: Path) -> None:
    """manifest.json satisfies schemas/manifest.json and records the table schema versions."""
    manifest = json.loads((converted / "manifest.json").read_text())
    jsonschema.validate(manifest, load_document("manifest"))
    assert manifest["schemas"] == schema_versions()


def test_manifest_paths_are_relative_and_exist(converted: Path) -> None:
    """Every path in the manifest is relative and names a file that exists."""
    manifest = json.loads((converted / "manifest.json").read_text())
    paths = [s["path"] for e in manifest["splits"].values() for s in e["shards"]]
    paths += [p for e in manifest["splits"].values() for ps in e["tables"].values() for p in ps]
    for rel in paths:
        assert not rel.startswith("/") and ".." not in rel
        assert (converted / rel).is_file(), rel


def test_unknown_type_names_are_rejected() -> None:
    """A typo in a schema file fails loudly rather than guessing a type."""
    assert str(parse_type("list<int32>")) == "list<item: int32>"
    with pytest.raises(ValueError, match="unknown column type"):
        parse_type("int33")
