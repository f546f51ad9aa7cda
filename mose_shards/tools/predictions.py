"""Predicted masks, as `evaluate` takes them: a folder (or any fsspec URL) of <video>/<frame>.png, or a
.zip of the same (entries may sit under one top folder).

A stand-in until the evaluate helper's reader (mose_shards/analytics/evaluate/) is on main; same
layout, same one-line errors.
"""

from __future__ import annotations

import io
import threading
import zipfile

import fsspec
import numpy as np
from PIL import Image, UnidentifiedImageError

from ..core.errors import DataError, OutputError
from ..core.storage import StorageOptions


class PredictionReader:
    """pred.mask(video, frame_name) -> uint8 [h, w] ids, or None where the prediction has no such file."""

    def __init__(self, url: str, storage_options: StorageOptions | None = None) -> None:
        self.url = url.rstrip("/")
        self._options = dict(storage_options or {})
        self._lock = threading.Lock()
        self._zip: zipfile.ZipFile | None = None
        self._names: dict[str, str] = {}
        if self.url.lower().endswith(".zip"):
            self._open_zip()
        else:
            self._fs, self._root = fsspec.core.url_to_fs(self.url, **self._options)
            if not self._fs.isdir(self._root):
                raise OutputError(
                    f"{self.url}: predictions not found (a folder of <video>/<frame>.png or a .zip)"
                )

    def _open_zip(self) -> None:
        try:
            with fsspec.open(self.url, "rb", **self._options) as f:
                data = f.read()
            self._zip = zipfile.ZipFile(io.BytesIO(data))
        except FileNotFoundError:
            raise OutputError(f"{self.url}: predictions not found") from None
        except zipfile.BadZipFile:
            raise DataError(self.url, "not a readable zip file") from None
        for name in self._zip.namelist():
            parts = name.rstrip("/").split("/")
            if len(parts) >= 2 and parts[-1].lower().endswith(".png"):
                self._names.setdefault("/".join(parts[-2:]), name)

    def _read(self, video: str, frame_name: str) -> tuple[str, bytes] | None:
        rel = f"{video}/{frame_name}.png"
        if self._zip is not None:
            name = self._names.get(rel)
            if name is None:
                return None
            with self._lock:
                return f"{self.url}:{name}", self._zip.read(name)
        path = f"{self._root}/{rel}"
        try:
            with self._fs.open(path, "rb") as f:
                return f"{self.url}/{rel}", f.read()
        except FileNotFoundError:
            return None

    def mask(self, video: str, frame_name: str, size: tuple[int, int] | None = None) -> np.ndarray | None:
        """The predicted ids of a frame (resized to size=(w, h), nearest, when given), None if absent."""
        found = self._read(video, frame_name)
        if found is None:
            return None
        where, data = found
        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.mode not in ("P", "L"):
                    raise DataError(
                        where, f"a {img.mode} PNG; predictions are palette or grey PNGs of object ids"
                    )
                if size is not None and img.size != size:
                    return np.asarray(img.resize(size, Image.Resampling.NEAREST), dtype=np.uint8).copy()
                return np.asarray(img, dtype=np.uint8).copy()
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(where, f"not a readable PNG ({exc})") from None
