"""The Hugging Face dataset card: README.md at the output root, with the `configs` the Hub reads.

Config `default` is the WebDataset shards (`shards/<split>/*.tar`, one data split per split), so the
folder can be uploaded as is and opened with `datasets.load_dataset(REPO_OR_FOLDER)`.

The tables get no config of their own: `datasets` picks ONE builder for a whole repository, from the
files of its first config (huggingface/datasets#7101), so a parquet config next to the webdataset one
would be read as tar files and fail. The card shows `load_dataset("parquet", data_files=...)` for
them instead, with the patterns of `table_data_files`.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from ..core.layout import CARD, shard_glob, table_glob
from ..core.storage import Store
from ..core.urls import redact

logger = logging.getLogger(__name__)

WEBDATASET_CONFIG = "default"
# The Hub's rule for split names; others cannot appear in a config.
_SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


def write_card(store: Store, manifest_doc: dict[str, Any]) -> None:
    """Write README.md (atomically) for the output described by the manifest document."""
    store.write(CARD, card_text(manifest_doc).encode())
    logger.info("card: wrote %s", store.url_of(CARD))


def hub_splits(manifest_doc: dict[str, Any]) -> list[str]:
    """The splits a Hub config can name (the Hub's rule for split names); others are left out."""
    names = []
    for name in manifest_doc["splits"]:
        if _SPLIT_NAME.match(name):
            names.append(name)
        else:
            logger.warning("card: split %r is not a valid Hugging Face split name; left out", name)
    return names


def configs(manifest_doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The `configs` list: the shards, one data split per split that has shards."""
    splits = manifest_doc["splits"]
    shards = [{"split": s, "path": shard_glob(s)} for s in hub_splits(manifest_doc) if splits[s]["shards"]]
    return [{"config_name": WEBDATASET_CONFIG, "default": True, "data_files": shards}] if shards else []


def table_data_files(manifest_doc: dict[str, Any], table: str, root: str = "") -> dict[str, str]:
    """split -> glob of one table's Parquet parts, relative to the output root (or under root)."""
    prefix = f"{root.rstrip('/')}/" if root else ""
    splits = manifest_doc["splits"]
    return {s: prefix + table_glob(table, s) for s in hub_splits(manifest_doc) if splits[s]["tables"][table]}


def card_text(manifest_doc: dict[str, Any]) -> str:
    """YAML front matter (configs, tags) followed by a short description of the output."""
    return _front_matter(manifest_doc) + _body(manifest_doc)


def _q(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _front_matter(doc: dict[str, Any]) -> str:
    lines = ["---", "tags:", "- video-object-segmentation", "- webdataset", "- mose-shards", "configs:"]
    for config in configs(doc):
        lines.append(f"- config_name: {_q(config['config_name'])}")
        if config.get("default"):
            lines.append("  default: true")
        lines.append("  data_files:")
        for entry in config["data_files"]:
            lines += [f"  - split: {_q(entry['split'])}", f"    path: {_q(entry['path'])}"]
    lines.append("---")
    return "\n".join(lines) + "\n"


def _py_dict(doc: dict[str, Any], table: str) -> str:
    files = table_data_files(doc, table, "hf://datasets/REPO")
    return "{" + ", ".join(f"{_q(k)}: {_q(v)}" for k, v in files.items()) + "}"


def _body(doc: dict[str, Any]) -> str:
    rows = [
        "| "
        + " | ".join(
            str(v)
            for v in (name, s["videos"], s["frames"], s["annotated_frames"], s["masks"], len(s["shards"]))
        )
        + " |"
        for name, s in doc["splits"].items()
    ]
    return "\n".join(
        [
            "",
            "# Video object segmentation shards",
            "",
            f"Converted by mose-shards {doc['tool_version']} (format {doc['format_version']}) "
            f"from `{redact(doc['source'])}`.",
            "",
            "| split | videos | frames | annotated frames | masks | shards |",
            "| --- | --- | --- | --- | --- | --- |",
            *rows,
            "",
            "Each WebDataset sample is one frame: `jpg` (the source JPEG), `png` (the source mask PNG, "
            "or a 1x1 placeholder when the frame has no mask) and `json` (`video_id`, `frame_index`, "
            "`has_mask`, ...). `manifest.json` lists every shard with its sha256.",
            "",
            "```python",
            "from datasets import load_dataset",
            "",
            'frames = load_dataset("REPO_OR_FOLDER")  # the shards, every split',
            "# the tables (videos, frames, masks, objects) with the parquet builder:",
            f'masks = load_dataset("parquet", data_files={_py_dict(doc, "masks")})',
            "```",
            "",
        ]
    )
