"""Predicted masks for `show` and `browse`, through the one prediction reader (loader/predictions.py,
which `evaluate` uses too: the same forms, bounded zip reads and pixel cap), resized to the frame
drawn beside them (`--short-side`)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..core.storage import StorageOptions
from ..loader.predictions import Predictions


class PredictionReader:
    """pred.mask(video, frame_name) -> uint8 [h, w] ids, or None where the prediction has no such file."""

    def __init__(self, url: str, storage_options: StorageOptions | None = None) -> None:
        self._predictions = Predictions(url, storage_options)
        self.url = self._predictions.url

    def mask(self, video: str, frame_name: str, size: tuple[int, int] | None = None) -> np.ndarray | None:
        """The predicted ids of a frame (resized to size=(w, h), nearest, when given), None if absent."""
        ids = self._predictions.ids(video, frame_name)
        if ids is None or size is None or (ids.shape[1], ids.shape[0]) == size:
            return ids
        resized = Image.fromarray(ids).resize(size, Image.Resampling.NEAREST)
        return np.asarray(resized, dtype=np.uint8).copy()
