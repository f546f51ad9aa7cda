"""The training loader: shards -> one global item sequence -> (rank, worker) -> clips; and random
access to frames. `ClipLoader` needs torch and is imported on first use."""

from __future__ import annotations

from typing import Any

from ..core.errors import MissingDependencyError
from .cache import ShardCache
from .dataset import ClipDataset, collate_clips
from .mixture import Source
from .random_access import FrameReader, read_frame

__all__ = ["ClipDataset", "ClipLoader", "FrameReader", "ShardCache", "Source", "collate_clips", "read_frame"]


def __getattr__(name: str) -> Any:
    if name == "ClipLoader":
        try:
            from .clip_loader import ClipLoader
        except ModuleNotFoundError as exc:  # the same hint as the other extras, not a bare torch error
            if (exc.name or "").partition(".")[0] != "torch":
                raise
            raise MissingDependencyError("torch", "torch") from None
        return ClipLoader
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
