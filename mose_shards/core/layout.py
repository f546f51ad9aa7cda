"""The output layout: every path and name inside an output folder, and the sample key.

The only place that spells them. An output folder holds:

    manifest.json                       the commit marker, written last
    README.md                           the Hugging Face dataset card (--dataset-card)
    shards/<split>/<split>-000000.tar   WebDataset shards, whole videos
    tables/<table>/<split>-000000.parquet   one part per shard and table
    .mose-shards/plan.json              the fingerprint of the plan and options (resume)
    .mose-shards/lease.json             the running conversion's lease (one writer per output)
    .mose-shards/done/<shard>.json      one done marker per finished shard (resume)
    .mose-shards/tmp/                   staging of unfinished files (local outputs)
    .mose-shards/sources/               saved listings / gzip seek indexes of archive sources
    .mose-shards/sources/<key>.partial/ the checkpoint of a .tar.gz listing not finished yet
"""

from __future__ import annotations

import unicodedata

MANIFEST = "manifest.json"
CARD = "README.md"
SHARDS_DIR = "shards"
TABLES_DIR = "tables"
WORK_DIR = ".mose-shards"
PLAN_FILE = f"{WORK_DIR}/plan.json"
LEASE_FILE = f"{WORK_DIR}/lease.json"  # one writer per output (conversion/lease.py)
DONE_DIR = f"{WORK_DIR}/done"
TMP_DIR = f"{WORK_DIR}/tmp"
SOURCES_DIR = f"{WORK_DIR}/sources"  # saved listings and gzip seek indexes of archive sources
# The entries of an output folder that a conversion owns (and --overwrite may delete), in deletion
# order: the commit marker first, so a kill halfway through never leaves a manifest without its files.
OWNED = (MANIFEST, WORK_DIR, CARD, SHARDS_DIR, TABLES_DIR)
# The members of every sample, in tar order (webdataset's TarWriter sorts them the same way).
MEMBERS = ("jpg", "json", "png")


def listing_checkpoint(key: str) -> str:
    """The folder of a .tar.gz listing's checkpoint (archive key: its parts' names, sizes, stamps)."""
    return f"{SOURCES_DIR}/{key}.partial"


def shard_name(split: str, index: int) -> str:
    """`train-000003`: the name shared by a shard, its table parts and its done marker."""
    return f"{split}-{index:06d}"


def shard_path(split: str, index: int) -> str:
    return f"{SHARDS_DIR}/{split}/{shard_name(split, index)}.tar"


def table_path(table: str, split: str, index: int) -> str:
    return f"{TABLES_DIR}/{table}/{shard_name(split, index)}.parquet"


def done_marker(split: str, index: int) -> str:
    return f"{DONE_DIR}/{shard_name(split, index)}.json"


def shard_glob(split: str) -> str:
    """The shards of a split as a glob (the dataset card's data files)."""
    return f"{SHARDS_DIR}/{split}/*.tar"


def table_glob(table: str, split: str) -> str:
    return f"{TABLES_DIR}/{table}/{split}-*.parquet"


def sample_key(video_id: str, frame_name: str) -> str:
    """The WebDataset key of a frame: `<video_id>/<frame_name>`, with '%' and '.' in the id escaped.

    WebDataset splits a member name at the first dot of its file name; tools that split at the first
    dot of the whole path would cut a dotted video id, so dots become %2E (and % itself %25). The
    `.json` member and the tables carry the video id unchanged; `unescape_video_id` reverses this.
    """
    escaped = video_id.replace("%", "%25").replace(".", "%2E")
    return f"{escaped}/{frame_name}"


def unescape_video_id(escaped: str) -> str:
    return escaped.replace("%2E", ".").replace("%25", "%")


def split_member(name: str) -> tuple[str, str]:
    """(sample key, extension) of a tar member name: the extension follows the last dot."""
    key, _, ext = name.rpartition(".")
    return key, ext


def name_problem(name: str) -> str | None:
    """Why a video id (a folder name of the source) cannot be carried by every command, or None.

    The id becomes a folder again in `export`, a line of `query --format video-list` and of a
    `Source(videos=)` file, and part of every tar member name: so it must be one non-empty path
    component of printable UTF-8 without surrounding whitespace. The one check of it, at convert time.
    """
    if name in ("", ".", ".."):
        return f"video name {name!r} is not a folder name"
    if "/" in name or "\\" in name:
        return f"video name {name!r} holds a path separator ('/' or '\\')"
    if any(unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp") for c in name):
        return f"video name {name!r} holds a control or line-break character"
    if name != name.strip():
        return f"video name {name!r} starts or ends with whitespace"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return f"video name {name!r} is not valid UTF-8"
    return None
