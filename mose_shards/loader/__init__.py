"""The training loader: shards -> one global item sequence -> (rank, worker) -> clips; and random
access to frames. Every name is imported on first use: `ClipDataset` brings torch's data module
(when torch is installed, ~1 s) and `ClipLoader` needs torch, so a process that only reads frames
(`show`, `browse`, `evaluate`) never pays for either."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ..core.errors import MissingDependencyError

if TYPE_CHECKING:
    from .cache import ShardCache
    from .clip_loader import ClipLoader
    from .dataset import ClipDataset, collate_clips
    from .mixture import Source
    from .random_access import FrameReader, read_frame

__all__ = ["ClipDataset", "ClipLoader", "FrameReader", "ShardCache", "Source", "collate_clips", "read_frame"]

_HOMES = {
    "ClipDataset": "dataset",
    "collate_clips": "dataset",
    "ClipLoader": "clip_loader",
    "FrameReader": "random_access",
    "read_frame": "random_access",
    "ShardCache": "cache",
    "Source": "mixture",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        value = getattr(import_module(f".{home}", __name__), name)
    except ModuleNotFoundError as exc:  # the same hint as the other extras, not a bare torch error
        if home != "clip_loader" or (exc.name or "").partition(".")[0] != "torch":
            raise
        raise MissingDependencyError("torch", "torch") from None
    globals()[name] = value
    return value
