"""A human summary of an output, from its manifest alone (works on any URL)."""

from __future__ import annotations

from typing import Any

from ..core import manifest as manifest_mod
from ..core.layout import TABLES_DIR
from ..core.storage import StorageOptions


def describe(url: str, storage_options: StorageOptions | None = None) -> str:
    """Several lines: the source, then one line per split, then skipped videos."""
    store, doc = manifest_mod.read(url, storage_options)
    opts = doc["options"]
    void = "none" if opts.get("void_label") is None else opts["void_label"]
    lines = [
        f"{store.url}: mose-shards output (format {doc['format_version']}, tool {doc['tool_version']})",
        f"  source: {doc['source']}",
        f"  options: shard size {opts['shard_size'] / 1e6:g} MB, void label {void}, "
        f"pipeline {opts.get('pipeline') or '-'}",
    ]
    header = (
        f"  {'split':<8} {'videos':>7} {'frames':>8} {'annotated':>9} {'masks':>8} {'shards':>6} {'MB':>9}"
    )
    lines.append(header)
    for name, split in doc["splits"].items():
        size = sum(s["bytes"] for s in split["shards"]) / 1e6
        lines.append(
            f"  {name:<8} {split['videos']:>7} {split['frames']:>8} {split['annotated_frames']:>9} "
            f"{split['masks']:>8} {len(split['shards']):>6} {size:>9.1f}"
        )
    lines += _skipped(doc)
    lines.append("  tables: " + ", ".join(f"{TABLES_DIR}/{t}/" for t in doc["schemas"]))
    return "\n".join(lines)


def _skipped(doc: dict[str, Any]) -> list[str]:
    out = []
    for name, split in doc["splits"].items():
        for entry in split["skipped"]:
            out.append(f"  skipped {name}/{entry['video_id']}: {entry['reason']}")
    return out
