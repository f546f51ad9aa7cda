"""The manifest: written last as the commit marker; read by every consumer."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from .errors import ConfigError, OutputError
from .layout import MANIFEST
from .schema import TABLES, schema_versions
from .storage import StorageOptions, Store
from .urls import redact
from .version import __version__

FORMAT = "mose-shards"
FORMAT_VERSION = 1


def build(
    *,
    source: str,
    options: dict[str, Any],
    results: Iterable[Any],
    skipped: dict[str, list[dict[str, str]]],
    split_names: Iterable[str],
) -> dict[str, Any]:
    """The manifest document from the finished shards (any order) and the videos skipped early."""
    splits: dict[str, dict[str, Any]] = {}
    for name in sorted(split_names):
        splits[name] = {
            **{"videos": 0, "frames": 0, "annotated_frames": 0, "masks": 0, "shards": []},
            "tables": {t: [] for t in TABLES},
            "skipped": list(skipped.get(name, [])),
        }
    for result in sorted(results, key=lambda r: (r.split, r.index)):
        entry = splits[result.split]
        entry["videos"] += result.videos
        entry["frames"] += result.samples
        entry["annotated_frames"] += result.annotated_frames
        entry["masks"] += result.masks
        entry["shards"].append({"path": result.path, "bytes": result.bytes, "sha256": result.sha256,
                                "samples": result.samples, "videos": result.videos})  # fmt: skip
        for table in TABLES:
            entry["tables"][table].append(result.tables[table])
        entry["skipped"] += result.skipped
    for entry in splits.values():
        entry["skipped"] = sorted(({**s, "reason": redact(s["reason"])} for s in entry["skipped"]),
                                  key=lambda s: s["video_id"])  # fmt: skip
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tool_version": __version__,
        "source": redact(source),
        "options": options,
        "schemas": schema_versions(),
        "splits": splits,
    }


def select_splits(store: Store, doc: dict[str, Any], splits: Iterable[str] | None) -> list[str]:
    """The splits asked for (all when None), checked against the manifest: ConfigError names the rest."""
    known = list(doc.get("splits", {}))
    wanted = list(splits) if splits else known
    unknown = [s for s in wanted if s not in known]
    if unknown:
        names = ", ".join(repr(s) for s in unknown)
        raise ConfigError(f"{store.url}: no split {names}; splits: {', '.join(known) or 'none'}")
    return wanted


def split_entry(store: Store, doc: dict[str, Any], split: str) -> dict[str, Any]:
    """The manifest entry of one split (checked by select_splits: the one split check)."""
    select_splits(store, doc, [split])
    entry: dict[str, Any] = doc["splits"][split]
    return entry


def dumps(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()


def write(store: Store, manifest: dict[str, Any]) -> None:
    """Write the manifest, the last file of a conversion: its presence commits the output."""
    store.write(MANIFEST, dumps(manifest))


def locate(url: str) -> tuple[str, str]:
    """(root, manifest name) for an output folder URL or a manifest URL."""
    stripped = url.rstrip("/")
    if stripped.endswith(".json"):
        root, _, name = stripped.rpartition("/")
        return root or ".", name
    return stripped, MANIFEST


def read(url: str, storage_options: StorageOptions | None = None) -> tuple[Store, dict[str, Any]]:
    """The store of an output and its parsed manifest; OutputError when missing or not ours."""
    root, name = locate(url)
    store = Store(root, storage_options)
    try:  # one request: on object storage a round trip each, and this is every reader's first
        data = store.read(name)
    except OutputError:
        if store.exists(name):
            raise
        what = "no manifest (not a mose-shards output, or unfinished)"
        raise OutputError(f"{store.url_of(name)}: {what}") from None
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise OutputError(f"{store.url_of(name)}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise OutputError(f"{store.url_of(name)}: not a mose-shards manifest")
    if doc.get("format_version") != FORMAT_VERSION:
        raise OutputError(
            f"{store.url_of(name)}: format version {doc.get('format_version')} is not supported"
        )
    return store, doc
