"""The ground truth of one split of an output: frames, sizes and object ids per video, masks decoded
from the shards' PNG members (one ranged read and one decode per frame, shared by all its objects)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...core.errors import ConfigError, DataError
from ...core.maskpng import decode_mask
from ...core.storage import StorageOptions
from ...core.tables import read_table
from ...loader.random_access import shared_reader
from .metrics import DAVIS_2017, METRICS


@dataclass(frozen=True)
class Video:
    """What the scorers need of one video: its frame names, size and object ids."""

    video: str
    frame_names: tuple[str, ...]
    height: int
    width: int
    objects: tuple[int, ...]  # every id of the ground truth (mose-v2); davis-2017 reads frame 0

    @property
    def evaluated(self) -> range:
        """Frames 1 .. n-2: the first (given) and the last are not scored."""
        return range(1, max(len(self.frame_names) - 1, 1))


class GroundTruth:
    """One split of an output; picklable (it reloads where it lands)."""

    def __init__(self, url: str, split: str, storage_options: StorageOptions | None = None) -> None:
        self.url, self.split = url, split
        self.storage_options = dict(storage_options or {})
        reader = shared_reader(url, self.storage_options)
        if split not in reader.doc["splits"]:
            known = ", ".join(sorted(reader.doc["splits"])) or "none"
            raise ConfigError(f"{url}: no split {split!r}; it has: {known}")
        self._videos = _videos(url, split, self.storage_options)

    def __getstate__(self) -> dict[str, object]:
        return {
            "url": self.url,
            "split": self.split,
            "storage_options": self.storage_options,
            "v": self._videos,
        }

    def __setstate__(self, state: dict[str, object]) -> None:
        self.url, self.split = str(state["url"]), str(state["split"])
        self.storage_options = dict(state["storage_options"])  # type: ignore[call-overload]
        self._videos = state["v"]  # type: ignore[assignment]

    @property
    def videos(self) -> dict[str, Video]:
        return self._videos

    def video(self, name: str) -> Video:
        found = self._videos.get(name)
        if found is None:
            raise ConfigError(f"{self.url}: no video {name!r} in split {self.split!r}")
        return found

    def masks(self, video: str, indices: list[int]) -> Iterator[np.ndarray]:
        """The id maps of some frames of a video, in order: read together (one coalesced ranged read
        where they lie together), each decoded when its turn comes."""
        reader = shared_reader(self.url, self.storage_options)
        index = reader.index(self.split)
        position = index.position(video)
        if position is None:
            raise ConfigError(f"{self.url}: no video {video!r} in split {self.split!r}")
        samples = reader.fetch(index.video(position), indices)
        for i in indices:
            yield decode_mask(samples[i]["png"])

    def mask(self, video: str, index: int) -> np.ndarray:
        """The id map of one frame of a video."""
        return next(self.masks(video, [index]))

    def objects(self, video: Video, metric: str) -> list[int]:
        """The ids scored: every id of the video (mose-v2), or 1 .. the largest id of frame 0 (davis-2017)."""
        if metric not in METRICS:
            raise ConfigError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
        if metric == DAVIS_2017:
            first = self.mask(video.video, 0)
            first = np.where(first == 255, 0, first)  # the void label is background there
            return list(range(1, int(first.max()) + 1))
        return list(video.objects)


def _videos(url: str, split: str, options: StorageOptions) -> dict[str, Video]:
    reader = shared_reader(url, options)
    store, doc = reader.store, reader.doc
    vids = read_table(store, doc, split, "videos").to_pydict()
    objs = read_table(store, doc, split, "objects", ["video_id", "object_id"]).to_pydict()
    index = reader.index(split)
    sparse = [
        v for v, n, a in zip(vids["video_id"], vids["num_frames"], vids["num_annotated_frames"], strict=True)
        if a < n
    ]  # fmt: skip
    if sparse:
        dense = [s for s in sorted(doc["splits"]) if s != split and _dense(reader, s)]
        where = f"; split {', '.join(dense)} has them" if dense else ""
        raise DataError(
            f"{url} split {split}",
            f"evaluation needs annotated frames; {len(sparse)} video(s) (e.g. {sparse[0]!r}) have masks "
            f"on some frames only (first-frame masks){where}",
        )
    ids: dict[str, list[int]] = {}
    for v, o in zip(objs["video_id"], objs["object_id"], strict=True):
        ids.setdefault(v, []).append(int(o))
    out = {}
    for v, h, w in zip(vids["video_id"], vids["height"], vids["width"], strict=True):
        position = index.position(v)
        names = () if position is None else tuple(index.video(position).frame_names.to_pylist())
        out[v] = Video(v, names, int(h), int(w), tuple(sorted(ids.get(v, []))))
    return dict(sorted(out.items()))


def _dense(reader: object, split: str) -> bool:
    has_mask = reader.index(split).has_mask  # type: ignore[attr-defined]
    return bool(len(has_mask)) and bool(np.all(has_mask))
