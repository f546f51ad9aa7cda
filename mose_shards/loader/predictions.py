"""Predictions as id maps: a folder or a .zip of `<video>/<frame>.png` on any fsspec store, or an output.

One reader for `evaluate` (ids checked against the ground truth's size) and for `show` / `browse`
(ids as the file holds them, or None where a frame has no prediction). The folder and zip forms are
the ones the evaluation servers take: the PNGs may sit under
`Annotations/` or inside one single top folder. A zip is read in place through its central directory,
each member no further than it declares and never past `MAX_MEMBER` bytes.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image

from ..core.errors import DataError
from ..core.images import check_pixels, header_size
from ..core.maskpng import check_rows
from ..core.storage import StorageOptions, url_to_fs
from .random_access import FrameReader

MAX_MEMBER = 256 << 20  # no mask PNG is this large; a member declaring more is refused unread
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Predictions:
    """(video, frame name) -> HxW uint8 id map, each file read and decoded once when asked."""

    def __init__(self, url: str, storage_options: StorageOptions | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        self._open()

    def __getstate__(self) -> dict[str, Any]:
        return {"url": self.url, "storage_options": self.storage_options}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.url, self.storage_options = state["url"], state["storage_options"]
        self._open()

    def _open(self) -> None:
        self._zip: zipfile.ZipFile | None = None
        self._reader: Any = None
        fs, path = url_to_fs(self.url, self.storage_options)
        self._fs, self._path = fs, path
        if fs.isfile(path):
            if not path.lower().endswith(".zip"):
                raise DataError(self.url, "predictions must be a folder, a .zip or a mose-shards output")
            try:
                self._zip = zipfile.ZipFile(fs.open(path, "rb"))
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(self.url, f"not a readable zip ({exc})") from None
            names = [i.filename for i in self._zip.infolist() if not i.is_dir()]
        elif fs.isfile(f"{path}/manifest.json"):
            self._reader = FrameReader(self.url, self.storage_options)
            names = []
        elif fs.isdir(path):
            names = [p[len(path) + 1 :] for p in fs.find(path)]
        else:
            raise DataError(self.url, "predictions not found")
        self._files = _index(names)

    def where(self, video: str, frame: str) -> str:
        rel = self._files.get((video, frame))
        return f"{self.url}/{rel or f'{video}/{frame}.png'}"

    def has_video(self, video: str) -> bool:
        if self._reader is not None:
            return any(self._reader.index(s).position(video) is not None for s in self._reader.doc["splits"])
        return any(v == video for v, _ in self._files)

    def read(self, video: str, frame: str, size: tuple[int, int]) -> np.ndarray:
        """The prediction of one frame, checked to be a PNG of `size` (height, width)."""
        where = self.where(video, frame)
        data = self._bytes(video, frame, where)
        if data is None:
            what = "frame" if self.has_video(video) else "video"
            raise DataError(where, f"missing from the predictions (no such {what})")
        return decode_prediction(data, size, where)

    def ids(self, video: str, frame: str) -> np.ndarray | None:
        """The prediction of one frame at the size its file has; None where PRED has no such frame."""
        where = self.where(video, frame)
        data = self._bytes(video, frame, where)
        return None if data is None else decode_prediction(data, None, where)

    def _bytes(self, video: str, frame: str, where: str) -> bytes | None:
        """The frame's PNG bytes, bounded; None where PRED has no such video or frame."""
        if self._reader is not None:
            return self._from_output(video, frame)
        rel = self._files.get((video, frame))
        if rel is None:
            return None
        return self._member(rel, where) if self._zip is not None else self._file(rel, where)

    def _file(self, rel: str, where: str) -> bytes:
        with self._fs.open(f"{self._path}/{rel}", "rb") as fh:
            data: bytes = fh.read(MAX_MEMBER + 1)
        if len(data) > MAX_MEMBER:
            raise DataError(where, f"larger than {MAX_MEMBER >> 20} MiB; not a mask PNG")
        return data

    def _member(self, rel: str, where: str) -> bytes:
        assert self._zip is not None
        info = self._zip.getinfo(rel)
        if info.file_size > MAX_MEMBER:
            raise DataError(where, f"declares {info.file_size} bytes; not a mask PNG")
        try:
            with self._zip.open(info) as fh:
                data = fh.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataError(where, f"unreadable zip member ({exc})") from None
        if len(data) != info.file_size:
            raise DataError(where, f"holds {len(data)} bytes, its header says {info.file_size}")
        return data

    def _from_output(self, video: str, frame: str) -> bytes | None:
        reader = self._reader
        for split in sorted(reader.doc["splits"]):
            index = reader.index(split)
            position = index.position(video)
            if position is None:
                continue
            entry = index.video(position)
            names = entry.frame_names.to_pylist()
            if frame not in names:
                return None
            at = names.index(frame)
            data: bytes = reader.fetch(entry, [at])[at]["png"]
            return data
        return None


def _index(names: list[str]) -> dict[tuple[str, str], str]:
    """(video, frame) -> relative path of every PNG, after the scorers' prefix rules."""
    pngs = [n for n in names if n.lower().endswith(".png") and not _hidden(n)]
    parts = [n.split("/") for n in pngs]
    while parts and all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1:
        parts = [p[1:] for p in parts]  # `Annotations/`, or one single folder holding the videos
    out = {}
    for rel, p in zip(pngs, parts, strict=True):
        if len(p) == 2:
            out[(p[0], p[1][: -len(".png")])] = rel
    return out


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def decode_prediction(data: bytes, size: tuple[int, int] | None, where: str) -> np.ndarray:
    """A palette or grayscale PNG (of `size`, when given) as its id map; DataError naming `where`
    otherwise. Without a size, the pixel cap bounds what is decoded."""
    if not data.startswith(PNG_MAGIC):
        raise DataError(where, "not a PNG")
    declared = header_size(data)  # before Pillow decodes anything: a 60000x60000 file is no bomb here
    if size is None:
        try:
            check_pixels(data)
        except ValueError as exc:
            raise DataError(where, str(exc)) from None
    elif declared is not None and (declared[1], declared[0]) != size:
        raise DataError(
            where, f"prediction is {declared[0]}x{declared[1]}, the ground truth {size[1]}x{size[0]}"
        )
    try:
        with Image.open(io.BytesIO(data)) as img:
            if size is not None and (img.height, img.width) != size:
                raise DataError(
                    where, f"prediction is {img.width}x{img.height}, the ground truth {size[1]}x{size[0]}"
                )
            if img.mode not in ("P", "L"):
                raise DataError(where, f"a {img.mode} PNG; expected palette (P) or grayscale (L) ids")
            check_rows(data)  # Pillow would fill missing rows with background
            return np.asarray(img)
    except DataError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(where, f"not a readable PNG ({exc})") from None


Reader = Callable[[str, str, tuple[int, int]], np.ndarray]
