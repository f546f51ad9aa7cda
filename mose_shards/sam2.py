"""Fine-tune SAM 2 from shards: `ShardRawDataset` replaces SAM 2's `PNGRawDataset` in its configs.

Needs iopath (`pip install 'mose-shards[sam2]'`) and torch; SAM 2 itself is never imported. The
implementation lives in `mose_shards.loader.sam2`.
"""

from __future__ import annotations

from .loader.sam2 import (
    SCHEME,
    ShardFrame,
    ShardPathHandler,
    ShardRawDataset,
    ShardSegmentLoader,
    ShardVideo,
    register_path_handler,
)

__all__ = [
    "SCHEME",
    "ShardFrame",
    "ShardPathHandler",
    "ShardRawDataset",
    "ShardSegmentLoader",
    "ShardVideo",
    "register_path_handler",
]
