"""Mixtures: several outputs (or subsets of one) read as one dataset, each a `Source`.

A source picks videos of one split of an output (all of them, those a SQL `where` selects, or a list
of ids), repeats its items `repeat` times (a fractional part draws a fresh subset every epoch), and
may scale `max_skip` by its `frame_interval`, as Cutie does for datasets annotated every k-th frame.
Everything here is decided once per process, at construction, or is a pure function of
(seed, epoch, source index), so every rank and worker agrees without talking.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from functools import partial
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core import manifest
from ..core.errors import ConfigError
from ..core.sql import check_where, connect_output, named_tables, run
from ..core.storage import StorageOptions, Store, url_to_fs
from .distribution import Items
from .index import Shard, SplitIndex
from .objects import index_with_objects
from .retry import RetryingStore, RetryPolicy, retried
from .sampling import ClipOptions, clip_counts
from .stream import Reader

MaxSkip = int | Callable[[int], int]
VideoIds = Sequence[str] | str | os.PathLike[str]
DRAW = 3  # stream tag of the fractional-repeat draw, apart from the shuffles' generators


@dataclass(frozen=True)
class Source:
    """One split of one output in a mixture.

    `repeat`: items per epoch, as a multiple of the source's own (2.0 twice, with distinct clip numbers;
    0.5 half, drawn anew every epoch). `where`: a SQL boolean expression over the `videos` view (and
    the other three) of this split. `videos`: video ids, as a list or the path of a file with one id
    per line. `frame_interval`: this source's clips use `max_skip // frame_interval` (at least 1).
    """

    url: str
    split: str = "train"
    repeat: float = 1.0
    where: str | None = None
    storage_options: StorageOptions | None = None
    _: KW_ONLY
    videos: VideoIds | None = None
    frame_interval: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.url, (str, os.PathLike)):
            raise ConfigError(f"Source url must be a string, got {type(self.url).__name__}")
        if isinstance(self.repeat, bool) or not isinstance(self.repeat, (int, float)):
            raise ConfigError(f"{self.url}: repeat must be a number, got {self.repeat!r}")
        if not (math.isfinite(self.repeat) and self.repeat > 0):
            raise ConfigError(f"{self.url}: repeat must be > 0, got {self.repeat!r}")
        if self.where is not None and not (isinstance(self.where, str) and self.where.strip()):
            raise ConfigError(f"{self.url}: where must be a non-empty SQL expression, got {self.where!r}")
        if isinstance(self.frame_interval, bool) or not isinstance(self.frame_interval, int):
            raise ConfigError(f"{self.url}: frame_interval must be an int, got {self.frame_interval!r}")
        if self.frame_interval < 1:
            raise ConfigError(f"{self.url}: frame_interval must be >= 1, got {self.frame_interval}")

    def name(self, index: int) -> str:
        """How errors name this source: its index in the mixture, URL and split."""
        return f"source {index} ({os.fspath(self.url)}, split {self.split!r})"


def as_sources(
    spec: str | os.PathLike[str] | Source | Sequence[str | os.PathLike[str] | Source],
    split: str,
    storage_options: StorageOptions | None,
) -> list[Source]:
    """A URL, a Source or a list of them as Sources; plain URLs take `split` and `storage_options`,
    and so does a Source without storage options of its own."""
    items = [spec] if isinstance(spec, (str, os.PathLike, Source)) else list(spec)
    if not items:
        raise ConfigError("no source given: pass a URL, a Source or a non-empty list of them")
    out = []
    for item in items:
        if isinstance(item, Source):
            if item.storage_options is None and storage_options:
                item = Source(item.url, item.split, item.repeat, item.where, dict(storage_options),
                              videos=item.videos, frame_interval=item.frame_interval)  # fmt: skip
            out.append(item)
        elif isinstance(item, (str, os.PathLike)):
            out.append(Source(os.fspath(item), split, storage_options=storage_options))
        else:
            raise ConfigError(f"a source must be a URL or a Source, got {type(item).__name__}")
    return out


# --- which videos ----------------------------------------------------------------------------------


def select_videos(
    source: Source, name: str, store: Store, doc: dict[str, Any], known: Iterable[str]
) -> set[str] | None:
    """The video ids the source keeps among `known` (its split's videos), or None for all of them.

    `where` runs once, here, in the SQL sandbox over this split's tables; `videos` must all exist.
    """
    chosen: set[str] | None = None
    known_set = set(known)
    if source.videos is not None:
        ids = read_video_ids(source.videos, name, source.storage_options)
        missing = [v for v in dict.fromkeys(ids) if v not in known_set]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise ConfigError(f"{name}: {len(missing)} id(s) of videos= not in the split: {shown}")
        chosen = set(ids)
        if not chosen:
            raise ConfigError(f"{name}: videos= lists no video id")
    if source.where is not None:
        selected = where_videos(source.where, name, store, doc, source.split)
        chosen = selected if chosen is None else chosen & selected
    if chosen is not None and not chosen:
        raise ConfigError(f"{name}: the subset is empty (where={source.where!r}, videos= given)")
    return chosen


def where_videos(where: str, name: str, store: Store, doc: dict[str, Any], split: str) -> set[str]:
    """The ids of the split's videos for which the SQL expression holds, run in the sandbox of
    core/sql.py; ConfigError naming the source for text that is not one expression, for SQL DuckDB
    rejects, and for an empty result."""
    try:
        sql = check_where(where)
        con = connect_output(store, doc, [split], named_tables(sql))
        try:
            rows = run(con, sql, what="where").column("video_id").to_pylist()
        finally:
            con.close()
    except ConfigError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if not rows:
        raise ConfigError(f"{name}: where {where!r} selects no video")
    return {str(r) for r in rows}


def read_video_ids(
    videos: VideoIds, name: str, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Ids from a list, or from a file (local path or fsspec URL) with one id per line; blank lines
    and lines starting with `#` are skipped."""
    if not isinstance(videos, (str, os.PathLike)):
        ids = list(videos)
        bad = [v for v in ids if not isinstance(v, str)]
        if bad:
            raise ConfigError(f"{name}: videos= must hold string ids, got {bad[0]!r}")
        return ids
    path = os.fspath(videos)
    fs, inner = url_to_fs(path, storage_options if "://" in path else None)
    try:
        text = fs.cat_file(inner).decode()
    except (FileNotFoundError, IsADirectoryError):
        raise ConfigError(f"{name}: videos file {path} not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{name}: videos file {path} is not UTF-8 text") from None
    return [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]


# --- how often ---------------------------------------------------------------------------------------


def repeat_items(
    counts: Sequence[int] | np.ndarray, repeat: float, *, seed: int, epoch: int, source: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(video, clip) arrays of one source's items for an epoch, given each video's items `counts`.

    The integer part k of `repeat` gives every item k times, clip numbers continuing (repeat r of
    clip c of a video with n clips is clip r*n + c), so repeats are distinct clips. The fractional
    part f adds int(f * total + 0.5) items drawn without replacement by (seed, epoch, source), with
    clip numbers continuing after the k-th repeat. Ordered by video, then clip, so the clips of a
    video stay adjacent (a loader reads it once for all of them).
    """
    n = np.asarray(counts, dtype=np.int64)
    total = int(n.sum())
    base_video = np.repeat(np.arange(len(n), dtype=np.int64), n)
    base_clip = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    whole = int(repeat)
    videos = [base_video] * whole
    clips = [base_clip + r * n[base_video] for r in range(whole)]
    extra = int((repeat - whole) * total + 0.5)
    if extra:
        rng = np.random.default_rng([seed, epoch, source, DRAW])
        picked = np.sort(rng.choice(total, size=extra, replace=False))
        videos.append(base_video[picked])
        clips.append(base_clip[picked] + whole * n[base_video[picked]])
    if not videos:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    video, clip = np.concatenate(videos), np.concatenate(clips)
    order = np.lexsort((clip, video))
    return video[order], clip[order]


def repeat_count(total: int, repeat: float) -> int:
    """Items a source with `total` items gives per epoch: what `repeat_items` returns, counted."""
    whole = int(repeat)
    return whole * total + int((repeat - whole) * total + 0.5)


# --- at what skip --------------------------------------------------------------------------------------


def max_skip_at(max_skip: MaxSkip, epoch: int, frame_interval: int = 1) -> int:
    """The skip of an epoch (a callable `epoch -> int` is a curriculum), divided by the source's
    frame interval, at least 1; ConfigError for a value that is not an int >= 1."""
    value = max_skip(epoch) if callable(max_skip) else max_skip
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        where = f"max_skip({epoch}) returned" if callable(max_skip) else "max_skip must be an int >= 1, got"
        raise ConfigError(f"{where} {value!r}" + ("; it must be an int >= 1" if callable(max_skip) else ""))
    return max(1, int(value) // frame_interval)


# --- opened for reading ------------------------------------------------------------------------------


@dataclass
class OpenedSource:
    """A source as a dataset reads it: its split's index, and each video's items per repeat (0 for the
    videos its subset leaves out)."""

    source: Source
    name: str
    root: str  # the output's root URL (the Source's url may name its manifest)
    index: SplitIndex
    counts: np.ndarray
    void_label: int | None
    store: Store | None = None  # the store the index was read with, to reuse in this process


def open_sources(
    sources: Sequence[Source], options: ClipOptions, verify: bool = False, policy: RetryPolicy | None = None
) -> list[OpenedSource]:
    """Read each source's manifest and frames table, and resolve its subset, once (in this process);
    with a retry policy, each of those reads is retried on its own."""
    out = []
    policy = policy or RetryPolicy(attempts=1, timeout=None)
    for i, source in enumerate(sources):
        name = source.name(i)
        url = os.fspath(source.url)
        plain, doc = retried(partial(manifest.read, url, source.storage_options), policy, url)
        store = RetryingStore(plain, policy)
        # once per process, with which objects each frame shows (frames and masks read at once)
        index = index_with_objects(store, doc, source.split, verify)
        counts = clip_counts(index.num_objects, index.first_frame, options)
        chosen = select_videos(source, name, store, doc, index.video_ids.to_pylist())
        if chosen is not None:
            keep = pc.is_in(index.video_ids, value_set=pa.array(sorted(chosen), pa.string()))
            counts = np.where(keep.to_numpy(zero_copy_only=False), counts, 0)
        if not counts.any():
            where = (
                f"{store.url}: no video of split {source.split!r}"
                if len(sources) == 1
                else f"{name}: no video"
            )
            raise ConfigError(
                f"{where}{' in the subset' if chosen else ''} fits a clip of {options.clip_length} frames"
            )
        out.append(OpenedSource(source, name, store.url, index, counts, doc["options"]["void_label"], plain))
    return out


def mixture_items(opened: Sequence[OpenedSource], seed: int, epoch: int) -> list[Items]:
    """Each source's items of an epoch, its repeat applied (the draw of a fractional part included)."""
    out = []
    for i, o in enumerate(opened):
        video, clip = repeat_items(o.counts, o.source.repeat, seed=seed, epoch=epoch, source=i)
        out.append(Items(np.full(len(video), i, np.int32), video.astype(np.int32), clip.astype(np.int32)))
    return out


class MixedReader(Reader):
    """Range reads for the videos of several sources: each shard is read through the reader of the
    source that lists it (a shard two sources list, with the same sha256, is the same bytes)."""

    def __init__(self, readers: Sequence[Reader], shards: Sequence[Sequence[Shard]]) -> None:
        self.readers = list(readers)
        self.owner: dict[Shard, Reader] = {}
        for reader, listed in zip(self.readers, shards, strict=True):
            for shard in listed:
                self.owner.setdefault(shard, reader)

    def where(self, shard: Shard, start: int, size: int) -> str:
        return self.owner[shard].where(shard, start, size)

    def read_range(self, shard: Shard, start: int, size: int) -> bytes:
        return self.owner[shard].read_range(shard, start, size)

    def read(self, shard: Shard, start: int, size: int) -> bytes:
        return self.owner[shard].read(shard, start, size)
