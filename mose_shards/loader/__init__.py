"""The training loader: shards -> (rank, worker) -> videos -> clips; and random access to frames."""

from __future__ import annotations

from .cache import ShardCache
from .dataset import ClipDataset, collate_clips
from .random_access import FrameReader, read_frame

__all__ = ["ClipDataset", "FrameReader", "ShardCache", "collate_clips", "read_frame"]
