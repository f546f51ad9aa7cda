"""Table schemas, loaded from schemas/*.json: the only place that knows column types."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa

TABLES = ("videos", "frames", "masks", "objects")
SCORE_TABLES = ("scores_frames", "scores_objects")  # written by `evaluate --scores`, not by convert

_PRIMITIVES = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int16": pa.int16(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
}
_LIST = re.compile(r"^list<(\w+)>$")


def schemas_dir() -> Path:
    """The folder holding the schema files: inside the wheel, or at the top of a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "schemas", package.parent / "schemas"):
        if (candidate / "manifest.json").is_file():
            return candidate
    raise FileNotFoundError(f"schemas/ not found next to {package}")


def parse_type(text: str) -> pa.DataType:
    """Turn a schema file's type name (`int32`, `list<int32>`) into an Arrow type."""
    if text in _PRIMITIVES:
        return _PRIMITIVES[text]
    match = _LIST.match(text)
    if match and match.group(1) in _PRIMITIVES:
        return pa.list_(_PRIMITIVES[match.group(1)])
    raise ValueError(f"unknown column type {text!r} in schemas/")


@cache
def load_document(name: str) -> dict[str, Any]:
    """The parsed JSON document schemas/<name>.json."""
    doc: dict[str, Any] = json.loads((schemas_dir() / f"{name}.json").read_text())
    return doc


@cache
def table_schema(name: str) -> pa.Schema:
    """The Arrow schema of one output table, with the schema version in its metadata."""
    if name not in TABLES + SCORE_TABLES:
        raise KeyError(f"unknown table {name!r}; known: {', '.join(TABLES + SCORE_TABLES)}")
    doc = load_document(name)
    fields = [
        pa.field(
            col["name"],
            parse_type(col["type"]),
            nullable=col["nullable"],
            metadata={"description": col["description"]},
        )
        for col in doc["fields"]
    ]
    meta = {"mose_shards.table": name, "mose_shards.schema_version": str(doc["version"])}
    return pa.schema(fields, metadata=meta)


def schema_versions() -> dict[str, int]:
    """Table name -> schema version, as recorded in the manifest."""
    return {name: int(load_document(name)["version"]) for name in TABLES}


def markdown() -> str:
    """The column reference of docs/guide/tables.md, generated from the schema files (a test keeps them
    in sync)."""
    parts = []
    for name in TABLES:
        doc = load_document(name)
        parts.append(f"**`{name}`** (schema v{doc['version']}): {doc['description']}\n")
        parts.append("| column | type | meaning |\n| --- | --- | --- |")
        for col in doc["fields"]:
            null = ", nullable" if col["nullable"] else ""
            parts.append(f"| `{col['name']}` | {col['type']}{null} | {col['description']} |")
        parts.append("")
    return "\n".join(parts)
