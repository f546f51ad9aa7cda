"""mose-shards: VOS datasets (MOSE, DAVIS, YouTube-VOS) as WebDataset shards + Parquet, streamed."""

from __future__ import annotations

__version__ = "0.1.0"
