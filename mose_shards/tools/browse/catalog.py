"""What the browser shows, read from an output without the web parts: the index rows (from the Parquet
`videos` and `objects` tables, nothing decoded), the `where` filter, and frames, masks and predictions
read from the shards by ranged reads as they are asked for, kept in a bounded LRU cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from ...core.errors import ConfigError, OutputError
from ...core.storage import StorageOptions
from ...core.tables import read_table
from ...loader.decode import decode_frame_mask
from ...loader.random_access import FrameReader, SplitFrames
from ..overlay import PALETTE
from ..predictions import PredictionReader
from .scores import read_scores

T = TypeVar("T")
CACHE_ITEMS = 256  # frames (jpg + png bytes) kept: a few videos' worth at MOSE's sizes
COLUMNS = ("split", "video_id", "num_frames", "num_annotated_frames", "num_objects", "width", "height")


class LRU:
    """A thread-safe least-recently-used cache of at most `size` items."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)


def where_filter(tables: dict[str, pa.Table], where: str) -> set[tuple[str, str]]:
    """(split, video_id) of the videos for which `where` (SQL over the `videos` table, as the loader's
    `where=` takes it; `objects` may be used in a subquery) holds, run by DuckDB with its file,
    network and extension access switched off after the in-memory tables are registered."""
    from ...core.views import duckdb_module, first_line

    duckdb = duckdb_module()
    con = duckdb.connect()
    try:
        for name, table in tables.items():
            con.register(name, table)
        for setting in ("python_enable_replacements = false", "enable_external_access = false",
                        "autoinstall_known_extensions = false", "autoload_known_extensions = false",
                        "lock_configuration = true"):  # fmt: skip
            con.execute(f"SET {setting}")
        rows = con.execute(f"SELECT split, video_id FROM videos WHERE (\n{where}\n)").fetchall()
    except duckdb.Error as exc:
        raise ConfigError(f"where {where!r} failed: {first_line(exc)}") from None
    finally:
        con.close()
    return {(str(s), str(v)) for s, v in rows}


def colour(oid: int) -> str:
    """An object's palette colour as #rrggbb."""
    r, g, b = (int(c) for c in PALETTE[oid])
    return f"#{r:02x}{g:02x}{b:02x}"


class Catalog:
    """An output as the browser sees it; every read is lazy except the two small tables."""

    def __init__(
        self,
        url: str,
        storage_options: StorageOptions | None = None,
        pred: str | None = None,
        scores: str | None = None,
    ) -> None:
        self.url = url
        self.reader = FrameReader(url, storage_options)
        store, doc = self.reader.store, self.reader.doc
        self.splits = sorted(doc.get("splits", {}))
        self.tables = {
            name: pa.concat_tables([read_table(store, doc, s, name) for s in self.splits])
            if self.splits else pa.table({})
            for name in ("videos", "objects")
        }  # fmt: skip
        self.scores = read_scores(scores, storage_options) if scores is not None else None
        self.pred = PredictionReader(pred, storage_options) if pred is not None else None
        self.rows = self._rows()
        self._cache = LRU(CACHE_ITEMS)
        self._presence: dict[str, dict[str, dict[int, list[int]]]] = {}
        self._lock = threading.Lock()

    def _rows(self) -> list[dict[str, Any]]:
        videos = self.tables["videos"].select(list(COLUMNS)).to_pylist()
        flags: dict[tuple[str, str], dict[str, bool]] = {}
        objects = self.tables["objects"]
        if objects.num_rows:
            grouped = objects.group_by(["split", "video_id"]).aggregate(
                [("disappears", "any"), ("reappears", "any")]
            )
            for r in grouped.to_pylist():
                flags[(r["split"], r["video_id"])] = {
                    "disappears": bool(r["disappears_any"]), "reappears": bool(r["reappears_any"])
                }  # fmt: skip
        rows = []
        for v in videos:
            key = (v["split"], v["video_id"])
            row = {
                "split": v["split"], "video": v["video_id"], "frames": v["num_frames"],
                "annotated": v["num_annotated_frames"], "objects": v["num_objects"],
                "size": f"{v['width']}x{v['height']}", "pixels": v["width"] * v["height"],
                **flags.get(key, {"disappears": False, "reappears": False}),
            }  # fmt: skip
            if self.scores is not None:
                row["jf_new"] = self.scores.get(v["video_id"])
            rows.append(row)
        return rows

    def select(self, where: str | None) -> list[dict[str, Any]]:
        """The index rows, those `where` selects when given (ConfigError with DuckDB's message)."""
        if where is None or not where.strip():
            return self.rows
        chosen = where_filter(self.tables, where)
        return [r for r in self.rows if (r["split"], r["video"]) in chosen]

    def _frames(self, split: str, video: str) -> SplitFrames:
        if split not in self.splits:
            raise OutputError(f"no split {split!r}")
        frames = self.reader.frames(split)
        if video not in frames.videos:
            raise OutputError(f"no video {video!r} in split {split!r}")
        return frames

    def _fetch(self, split: str, video: str, index: int) -> tuple[bytes, bytes, bool, str]:
        frames = self._frames(split, video)
        rows = frames.videos[video]
        if not 0 <= index < len(rows):
            raise OutputError(f"video {video!r} has no frame {index}")

        def read() -> tuple[bytes, bytes, bool, str]:
            jpg, png = self.reader.fetch(frames, rows[index])
            return jpg, png, bool(frames.has_mask[rows[index]]), str(frames.frame_names[rows[index]])

        return self._cache.get((split, video, index), read)

    def jpeg(self, split: str, video: str, index: int) -> bytes:
        return self._fetch(split, video, index)[0]

    def mask(self, split: str, video: str, index: int) -> np.ndarray | None:
        """The frame's ids (uint8 [h, w]), None without annotation."""
        _, png, has_mask, _ = self._fetch(split, video, index)
        return decode_frame_mask(png, has_mask)

    def prediction(self, split: str, video: str, index: int, size: tuple[int, int]) -> np.ndarray | None:
        if self.pred is None:
            return None
        name = self._fetch(split, video, index)[3]
        return self.pred.mask(video, name, size)

    def video(self, split: str, video: str) -> dict[str, Any]:
        """What the video page needs: sizes, frame names, objects with colours, presence per frame."""
        frames = self._frames(split, video)
        rows = frames.videos[video]
        meta = next(r for r in self.rows if r["split"] == split and r["video"] == video)
        width, height = (int(x) for x in meta["size"].split("x"))
        presence = self._split_presence(split).get(video, {})
        return {
            "split": split, "video": video, "width": width, "height": height,
            "frames": [str(frames.frame_names[r]) for r in rows],
            "has_mask": [bool(frames.has_mask[r]) for r in rows],
            "objects": [{"id": oid, "colour": colour(oid), "frames": present}
                        for oid, present in sorted(presence.items())],
            "pred": self.pred is not None, "jf_new": meta.get("jf_new"),
        }  # fmt: skip

    def _split_presence(self, split: str) -> dict[str, dict[int, list[int]]]:
        """video -> object id -> frame indices where it is visible (the masks table, read once a split)."""
        with self._lock:
            found = self._presence.get(split)
            if found is not None:
                return found
            store, doc = self.reader.store, self.reader.doc
            masks = read_table(store, doc, split, "masks", columns=["video_id", "frame_index", "object_id"])
            out: dict[str, dict[int, list[int]]] = {}
            for v, f, o in zip(*(masks[c].to_pylist() for c in ("video_id", "frame_index", "object_id")),
                               strict=True):  # fmt: skip
                out.setdefault(v, {}).setdefault(int(o), []).append(int(f))
            self._presence[split] = out
            return out
