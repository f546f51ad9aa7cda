"""One frame and its mask by (video id, frame index), with one ranged read of its shard.

The `frames` table gives each member's offset; a frame's `.jpg`, `.json` and `.png` are adjacent in
the tar, so a single GET covers them. The shard itself is never downloaded.
"""

from __future__ import annotations

from typing import Any

from ..core import manifest
from ..core.errors import ConfigError
from ..core.storage import StorageOptions
from .decode import check_short_side, decode_frame_mask, decode_image
from .index import COLUMNS, read_tables

Row = dict[str, Any]


class FrameReader:
    """Random access to the frames of an output; the frames table is read once per split, on demand."""

    def __init__(self, url: str, storage_options: StorageOptions | None = None) -> None:
        self.store, self.doc = manifest.read(url, storage_options)
        self._index: dict[str, dict[tuple[str, int], Row]] = {}

    def _split_index(self, split: str) -> dict[tuple[str, int], Row]:
        if split not in self._index:
            parts = read_tables(self.store, self.doc["splits"][split]["tables"]["frames"], COLUMNS)
            index: dict[tuple[str, int], Row] = {}
            for part in parts:
                for values in zip(*(part[c] for c in COLUMNS), strict=True):
                    row = dict(zip(COLUMNS, values, strict=True))
                    index[(row["video_id"], row["frame_index"])] = row
            self._index[split] = index
        return self._index[split]

    def locate(self, video_id: str, frame_index: int, split: str | None = None) -> tuple[str, Row]:
        """(split, frames-table row) of a frame; ConfigError naming what was not found."""
        splits = [split] if split is not None else sorted(self.doc["splits"])
        for name in splits:
            if name not in self.doc["splits"]:
                raise ConfigError(f"{self.store.url}: no split {name!r}")
            row = self._split_index(name).get((video_id, frame_index))
            if row is not None:
                return name, row
        raise ConfigError(
            f"{self.store.url}: no frame {frame_index} of video {video_id!r} in {', '.join(splits)}"
        )

    def read(
        self, video_id: str, frame_index: int, split: str | None = None, short_side: int | None = None
    ) -> dict[str, Any]:
        """{split, video_id, frame_index, frame_name, image (HxWx3 uint8), mask (HxW uint8 or None)};
        with `short_side`, image and mask are resized so that their shorter side is that size."""
        check_short_side(short_side)
        name, row = self.locate(video_id, frame_index, split)
        start = min(row["jpg_offset"], row["png_offset"])
        end = max(row["jpg_offset"] + row["jpg_size"], row["png_offset"] + row["png_size"])
        data = self.store.read_range(row["shard"], start, end - start)
        jpg = data[row["jpg_offset"] - start : row["jpg_offset"] - start + row["jpg_size"]]
        png = data[row["png_offset"] - start : row["png_offset"] - start + row["png_size"]]
        return {
            "split": name,
            "video_id": video_id,
            "frame_index": frame_index,
            "frame_name": row["frame_name"],
            "image": decode_image(jpg, short_side),
            "mask": decode_frame_mask(png, bool(row["has_mask"]), short_side),
        }


def read_frame(
    url: str,
    video_id: str,
    frame_index: int,
    split: str | None = None,
    storage_options: StorageOptions | None = None,
    short_side: int | None = None,
) -> dict[str, Any]:
    """One frame and its mask (None without annotation); for many frames keep a FrameReader."""
    return FrameReader(url, storage_options).read(video_id, frame_index, split, short_side)
