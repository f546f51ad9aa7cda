"""Videos -> shards: pure and deterministic, whole videos only, by estimated tar bytes."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..core import layout
from ..core.maskpng import PLACEHOLDER_PNG
from ..core.schema import TABLES
from ..core.tarfmt import archive_overhead, member_cost
from .sources import SourceVideo

log = logging.getLogger(__name__)

JSON_ALLOWANCE = 512  # the .json member is well under one block plus the id


@dataclass(frozen=True)
class ShardPlan:
    """One unit of work: the videos of one shard, in order."""

    split: str
    index: int
    videos: tuple[SourceVideo, ...]
    estimated_bytes: int

    @property
    def name(self) -> str:
        return layout.shard_name(self.split, self.index)

    @property
    def shard_path(self) -> str:
        return layout.shard_path(self.split, self.index)

    def table_path(self, table: str) -> str:
        return layout.table_path(table, self.split, self.index)

    @property
    def table_paths(self) -> dict[str, str]:
        return {table: self.table_path(table) for table in TABLES}

    @property
    def frames(self) -> int:
        return sum(v.num_frames for v in self.videos)


def video_cost(video: SourceVideo) -> int:
    """Upper bound of the bytes a video takes in a shard."""
    # Member names are <key>.jpg / .png / .json with key = sample_key(video_id, frame name): only their
    # lengths count, so the key's length is the escaped id's plus the frame name's.
    prefix = len(layout.sample_key(video.video_id, "")) + len(".jpg")
    json_size = JSON_ALLOWANCE + 2 * len(video.video_id)
    masks = video.mask_of()
    placeholder = len(PLACEHOLDER_PNG)
    png_sizes = video.pngs.sizes
    total = 0
    for name, jpg_size, mask in zip(video.names, video.jpgs.sizes, masks, strict=True):
        length = prefix + len(name)
        total += member_cost(length, jpg_size)  # .jpg and .png: the same length
        total += member_cost(length, placeholder if mask is None else png_sizes[mask])
        total += member_cost(length + 1, json_size)  # .json
    return total


def plan_split(split: str, videos: Iterable[SourceVideo], shard_size: int) -> list[ShardPlan]:
    """Fill shards in video-id order, starting a new one when the next video would pass the cap.

    A video larger than the cap gets a shard of its own (a video never spans two shards).
    """
    plans: list[ShardPlan] = []
    current: list[SourceVideo] = []
    size = archive_overhead()
    oversized: list[tuple[int, str]] = []
    for video in sorted(videos, key=lambda v: v.video_id):
        cost = video_cost(video)
        if cost + archive_overhead() > shard_size:
            oversized.append((cost, video.video_id))
        if current and size + cost > shard_size:
            plans.append(ShardPlan(split, len(plans), tuple(current), size))
            current, size = [], archive_overhead()
        current.append(video)
        size += cost
    if current:
        plans.append(ShardPlan(split, len(plans), tuple(current), size))
    if oversized:
        cost, video_id = max(oversized)
        log.warning(
            "%s: %d video(s) larger than the shard size (%d bytes) get a shard of their own; "
            "largest: %s, %.1f MB",
            split, len(oversized), shard_size, video_id, cost / 1e6,
        )  # fmt: skip
    return plans


def fingerprint(plans: Iterable[ShardPlan], options: dict[str, Any], inputs: Iterable[str] = ()) -> str:
    """A digest of the plan and of the options that shape the bytes: a rerun must match it.

    Per frame it covers the name, the size and the version the listing gave (ETag or mtime), so an
    in-place edit of the same size is seen; `inputs` adds what the frames do not show (the content
    digest of small files such as meta.json, the size and version of an archive).
    """
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for item in inputs:
        digest.update(f"\n<{item}>".encode())
    for plan in plans:
        digest.update(f"\n{plan.name}".encode())
        for video in plan.videos:
            jpgs, pngs, masks = video.jpgs, video.pngs, video.mask_of()
            parts = [f"|{video.video_id}"]
            for i, name in enumerate(video.names):
                mask = masks[i]
                png = "-1" if mask is None else f"{pngs.sizes[mask]}:{pngs.version(mask)}"
                parts.append(f",{name}:{jpgs.sizes[i]}:{jpgs.version(i)}:{png}")
            digest.update("".join(parts).encode())  # one update a video: the same digest, fewer calls
    return digest.hexdigest()
