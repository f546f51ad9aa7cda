"""PNG charts of an output's annotations from the Parquet tables (matplotlib without pyplot, lazily).

Per split: `<split>-objects-per-video.png`, `<split>-object-areas.png` (mask areas on a log scale
with the COCO size thresholds) and `<split>-presence.png` (one row per object of the first videos:
visible, absent from an annotated frame, or in a frame without a mask).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..core import manifest as manifest_mod
from ..core.errors import MissingDependencyError
from ..core.storage import StorageOptions, Store
from ..core.tables import read_table
from .stats import LARGE_AREA, SMALL_AREA

logger = logging.getLogger(__name__)

TIMELINE_VIDEOS = 12  # videos drawn in a presence timeline; more become unreadable
# Presence codes and their colours: no mask on the frame, absent from an annotated frame, visible.
NO_MASK, ABSENT, VISIBLE = 0, 1, 2
_COLOURS = ("#f2f2f2", "#f4a259", "#2a6f97")


def _figure_class() -> Any:
    """matplotlib's Figure, used without pyplot: no backend is chosen or changed for the caller (a
    notebook keeps its own), no window opens, and figures are not kept in pyplot's global registry."""
    try:
        import matplotlib  # noqa: F401 - the package itself, so a missing install is caught here
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot") from None
    return Figure


def write_plots(
    url: str,
    directory: str | os.PathLike[str],
    storage_options: StorageOptions | None = None,
    *,
    splits: Iterable[str] | None = None,
    timeline_videos: int = TIMELINE_VIDEOS,
) -> list[Path]:
    """Write the charts of every (or the given) split into a local directory; the files written."""
    store, doc = manifest_mod.read(url, storage_options)
    wanted = manifest_mod.select_splits(store, doc, splits)
    figure = _figure_class()
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for split in wanted:
        charts = {
            "objects-per-video": lambda ax, s=split: _objects_per_video(ax, store, doc, s),
            "object-areas": lambda ax, s=split: _object_areas(ax, store, doc, s),
        }
        for name, draw in charts.items():
            fig = figure(figsize=(6.4, 4.0))
            draw(fig.subplots())
            written.append(_save(fig, out / f"{split}-{name}.png"))
        written.append(
            _save(presence_figure(figure, store, doc, split, timeline_videos), out / f"{split}-presence.png")
        )
    return written


def _save(fig: Any, path: Path) -> Path:
    """Save atomically: a chart is either whole or absent."""
    tmp = path.with_name(f".{path.name}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)
    logger.info("plots: wrote %s", path)
    return path


def _objects_per_video(ax: Any, store: Store, doc: dict[str, Any], split: str) -> None:
    counts = read_table(store, doc, split, "videos", ["num_objects"]).column("num_objects").to_numpy()
    values, freq = np.unique(np.asarray(counts, dtype=np.int64), return_counts=True)
    ax.bar(values, freq, color=_COLOURS[VISIBLE])
    ax.set(title=f"{split}: objects per video", xlabel="objects", ylabel="videos")
    ax.xaxis.get_major_locator().set_params(integer=True)


def _object_areas(ax: Any, store: Store, doc: dict[str, Any], split: str) -> None:
    areas = np.asarray(
        read_table(store, doc, split, "masks", ["area"]).column("area").to_numpy(), dtype=float
    )
    if len(areas):
        bins = np.geomspace(1, max(float(areas.max()), LARGE_AREA) * 1.5, 40)
        ax.hist(areas, bins=bins, color=_COLOURS[VISIBLE])
    ax.set_xscale("log")
    for threshold, label in ((SMALL_AREA, "32²"), (LARGE_AREA, "96²")):
        ax.axvline(threshold, color="grey", linestyle="--", linewidth=1)
        ax.annotate(label, (threshold, 1), xycoords=("data", "axes fraction"), va="top", ha="left")
    ax.set(
        title=f"{split}: mask areas (COCO small | medium | large)", xlabel="visible pixels", ylabel="masks"
    )


def presence_matrix(frames: pa.Table, masks: pa.Table) -> tuple[list[str], np.ndarray]:
    """Row labels `video/object` and an (objects, frames) matrix of NO_MASK / ABSENT / VISIBLE codes.

    `frames` needs video_id, frame_index, has_mask; `masks` video_id, frame_index, object_id.
    Columns past a video's last frame stay NO_MASK.
    """
    width = max(frames.column("frame_index").to_pylist(), default=-1) + 1
    annotated: dict[str, np.ndarray] = {}
    for video, index, has in _rows(frames, "video_id", "frame_index", "has_mask"):
        row = annotated.setdefault(video, np.zeros(width, dtype=bool))
        row[index] = has
    seen: dict[tuple[str, int], list[int]] = {}
    for video, index, oid in _rows(masks, "video_id", "frame_index", "object_id"):
        seen.setdefault((video, oid), []).append(index)
    labels, rows = [], []
    for video, oid in sorted(seen):
        row = np.where(annotated[video], ABSENT, NO_MASK)
        row[seen[(video, oid)]] = VISIBLE
        labels.append(f"{video}/{oid}")
        rows.append(row)
    return labels, np.array(rows, dtype=np.int8).reshape(len(rows), width)


def _rows(table: pa.Table, *columns: str) -> Iterable[tuple[Any, ...]]:
    return zip(*(table.column(c).to_pylist() for c in columns), strict=True)


def presence_figure(figure: Any, store: Store, doc: dict[str, Any], split: str, videos: int) -> Any:
    """The presence timeline of the first `videos` videos (by id) of a split."""
    import pyarrow.compute as pc

    frames = read_table(store, doc, split, "frames", ["video_id", "frame_index", "has_mask"])
    chosen = pa.array(sorted(set(frames.column("video_id").to_pylist()))[:videos], pa.string())
    frames = frames.filter(pc.is_in(frames.column("video_id"), chosen))
    masks = read_table(store, doc, split, "masks", ["video_id", "frame_index", "object_id"])
    masks = masks.filter(pc.is_in(masks.column("video_id"), chosen))
    labels, matrix = presence_matrix(frames, masks)
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fig = figure(figsize=(8.0, 1.5 + 0.22 * max(len(labels), 1)))
    ax = fig.subplots()
    if len(labels):
        ax.imshow(
            matrix, aspect="auto", interpolation="nearest", cmap=ListedColormap(_COLOURS), vmin=0, vmax=2
        )
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    videos_of = [label.rpartition("/")[0] for label in labels]
    for row in range(1, len(labels)):  # a white rule between videos
        if videos_of[row] != videos_of[row - 1]:
            ax.axhline(row - 0.5, color="white", linewidth=2)
    ax.set(title=f"{split}: object presence, first {len(chosen)} videos", xlabel="frame index")
    names = ("no mask on the frame", "absent", "visible")
    ax.legend(handles=[Patch(color=c, label=n) for c, n in zip(_COLOURS, names, strict=True)],
              loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=7, frameon=False)  # fmt: skip
    return fig
