"""manifest + `frames` table -> one `IndexedVideo` per video: its frames and its byte range in a shard.

Only the frames table is read (a few columns, one small Parquet part per shard, fetched in parallel),
so the loader knows every video's length, annotated frames and objects before reading any shard.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..core.errors import ConfigError
from ..core.storage import Store

TAR_BLOCK = 512
COLUMNS = (
    "video_id", "frame_index", "frame_name", "has_mask", "num_objects", "shard",
    "jpg_offset", "jpg_size", "png_offset", "png_size", "json_offset", "json_size",
)  # fmt: skip
FETCH_THREADS = 8


@dataclass(frozen=True)
class IndexedVideo:
    """One video as the loader sees it: where its samples are and what each frame holds."""

    video_id: str
    shard: str  # relative to the output root
    start: int  # byte range [start, end) of the shard holding exactly this video's tar members
    end: int
    frame_names: tuple[str, ...]
    has_mask: tuple[bool, ...]
    num_objects: tuple[int, ...]
    # per frame: (jpg offset, jpg size, png offset, png size, json offset, json size) in the shard
    members: tuple[tuple[int, int, int, int, int, int], ...] = ()

    @property
    def num_frames(self) -> int:
        return len(self.frame_names)


def _round_up(n: int) -> int:
    return -(-n // TAR_BLOCK) * TAR_BLOCK


def split_entry(doc: dict[str, Any], split: str, where: str) -> dict[str, Any]:
    """The manifest entry of a split; ConfigError listing the known ones when it is absent."""
    splits = doc.get("splits", {})
    if split not in splits:
        raise ConfigError(f"{where}: no split {split!r}; splits: {', '.join(sorted(splits)) or 'none'}")
    entry: dict[str, Any] = splits[split]
    return entry


def read_tables(
    store: Store, paths: Iterable[str], columns: Iterable[str] = COLUMNS
) -> list[dict[str, list[Any]]]:
    """Columns of several Parquet parts, fetched in parallel, in the order given."""
    cols = list(columns)

    def fetch(rel: str) -> dict[str, list[Any]]:
        table: dict[str, list[Any]] = store.read_parquet(rel, cols).to_pydict()
        return table

    paths = list(paths)
    with ThreadPoolExecutor(max_workers=min(FETCH_THREADS, max(1, len(paths)))) as pool:
        return list(pool.map(fetch, paths))


def videos_of(parts: Iterable[dict[str, list]]) -> list[IndexedVideo]:
    """Frames-table rows -> IndexedVideo per video, in shard order then tar order."""
    out: list[IndexedVideo] = []
    for part in parts:
        rows = sorted(zip(*(part[c] for c in COLUMNS), strict=True), key=lambda r: r[6])  # by jpg_offset
        by_video: dict[str, list[tuple[Any, ...]]] = {}
        for row in rows:
            by_video.setdefault(row[0], []).append(row)
        previous_end = 0
        for video_id, frames in by_video.items():
            frames.sort(key=lambda r: r[1])
            last = max(max(r[6] + r[7], r[8] + r[9], r[10] + r[11]) for r in frames)
            end = _round_up(last)
            out.append(
                IndexedVideo(
                    video_id=video_id,
                    shard=frames[0][5],
                    start=previous_end,
                    end=end,
                    frame_names=tuple(r[2] for r in frames),
                    has_mask=tuple(bool(r[3]) for r in frames),
                    num_objects=tuple(int(r[4]) for r in frames),
                    members=tuple(tuple(int(v) for v in r[6:12]) for r in frames),  # type: ignore[misc]
                )
            )
            previous_end = end
    return out


def load_videos(store: Store, doc: dict[str, Any], split: str) -> list[IndexedVideo]:
    """Every video of a split, in manifest (shard) order."""
    entry = split_entry(doc, split, store.url)
    return videos_of(read_tables(store, entry["tables"]["frames"]))
