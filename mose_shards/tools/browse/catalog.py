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

from ...core.errors import OutputError
from ...core.storage import StorageOptions, Store
from ...core.tables import read_table
from ...loader.decode import decode_frame_mask
from ...loader.index import IndexedVideo, SplitIndex
from ...loader.random_access import FrameReader
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


def where_filter(store: Store, doc: dict[str, Any], where: str) -> set[tuple[str, str]]:
    """(split, video_id) of the videos for which `where` holds: the loader's `where=` expression over
    `videos` (other tables in subqueries), checked and run in the SQL sandbox of core/sql.py (one
    SELECT, DuckDB's file, network and extension access off), over every split."""
    from ...core import sql as sandbox

    sandbox.check_where(where)
    query = f"SELECT DISTINCT split, video_id FROM videos WHERE (\n{where}\n)"
    con = sandbox.connect_output(store, doc, None, sandbox.named_tables(query))
    try:
        table = sandbox.run(con, query, what="where")
    finally:
        con.close()
    return set(zip(table["split"].to_pylist(), table["video_id"].to_pylist(), strict=True))


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
        chosen = where_filter(self.reader.store, self.reader.doc, where)
        return [r for r in self.rows if (r["split"], r["video"]) in chosen]

    def _entry(self, split: str, video: str) -> tuple[SplitIndex, int, IndexedVideo]:
        if split not in self.splits:
            raise OutputError(f"no split {split!r}")
        index = self.reader.index(split)
        position = index.position(video)
        if position is None:
            raise OutputError(f"no video {video!r} in split {split!r}")
        return index, position, index.video(position)

    def _fetch(self, split: str, video: str, frame: int) -> tuple[bytes, bytes, bool, str]:
        index, position, entry = self._entry(split, video)
        if not 0 <= frame < entry.num_frames:
            raise OutputError(f"video {video!r} has no frame {frame}")

        def read() -> tuple[bytes, bytes, bool, str]:
            sample = self.reader.sample(index, position, frame)  # brings the next frames along
            return sample["jpg"], sample["png"], bool(entry.has_mask[frame]), str(entry.frame_names[frame])

        return self._cache.get((split, video, frame), read)

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
        entry = self._entry(split, video)[2]
        meta = next(r for r in self.rows if r["split"] == split and r["video"] == video)
        width, height = (int(x) for x in meta["size"].split("x"))
        presence = self._split_presence(split).get(video, {})
        return {
            "split": split, "video": video, "width": width, "height": height,
            "frames": [str(n) for n in entry.frame_names.to_pylist()],
            "has_mask": [bool(m) for m in entry.has_mask],
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
