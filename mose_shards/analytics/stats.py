"""Dataset statistics as the MOSE papers report them, from the Parquet tables alone.

No shard is read and no mask decoded: every number comes from the `videos`, `frames`, `masks` and
`objects` tables listed in the manifest, so `stats` works as well on s3:// as on a local folder.

Definitions (per split):
- `objects`: distinct (video, object id) pairs; `masks`: visible object instances in annotated frames.
- `disappearance_rate`: share of objects absent from at least one annotated frame after their first
  visible annotated frame; `reappearance_rate`: share of objects visible again after such an absence.
- `mbor`: per annotated frame with at least one visible object, BOR = area covered by at least two of
  the objects' pixel boxes (the union of all pairwise intersections) / area of the union of the boxes;
  the mean over those frames. Areas are exact (coordinate compression), not sampled.
- sizes: COCO thresholds, small < 32^2 <= medium < 96^2 <= large, counted per mask instance (as COCO
  counts annotations) in `mask_sizes` and per object by its mean visible area (as YouTube-VIS and OVIS
  evaluation do) in `object_sizes`.
- durations are frames / fps: the frame rate is not in the data, so it is a parameter (default 6, the
  annotation rate of YouTube-VOS; pass the rate of your dataset).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..core import manifest as manifest_mod
from ..core.errors import ConfigError
from ..core.storage import StorageOptions, Store
from ..core.tables import read_table

logger = logging.getLogger(__name__)

DEFAULT_FPS = 6.0
SMALL_AREA, LARGE_AREA = 32**2, 96**2  # COCO: small < 32^2 <= medium < 96^2 <= large
# Bound on the booleans one vectorised BOR step materialises (frames x boxes x cells).
_CHUNK_CELLS = 8_000_000


def compute(
    url: str,
    storage_options: StorageOptions | None = None,
    *,
    splits: Iterable[str] | None = None,
    fps: float = DEFAULT_FPS,
) -> dict[str, Any]:
    """`{"splits": {name: {statistic: value}}}` for the output at url (all splits unless given)."""
    if not fps > 0:
        raise ConfigError(f"fps must be positive, got {fps}")
    store, doc = manifest_mod.read(url, storage_options)
    wanted = manifest_mod.select_splits(store, doc, splits)
    return {"splits": {name: split_stats(store, doc, name, fps=fps) for name in wanted}}


def split_stats(store: Store, doc: dict[str, Any], split: str, *, fps: float = DEFAULT_FPS) -> dict[str, Any]:
    """Every statistic of one split."""
    videos = read_table(store, doc, split, "videos", ["num_frames", "num_objects"])
    has_mask = read_table(store, doc, split, "frames", ["has_mask"]).column("has_mask")
    masks = read_table(store, doc, split, "masks", ["video_id", "frame_index", "area", "bbox"])
    objects = read_table(store, doc, split, "objects", ["category", "disappears", "reappears", "mean_area"])
    num_frames = np.asarray(videos.column("num_frames").to_numpy(), dtype=np.int64)
    frames = int(len(has_mask))
    out: dict[str, Any] = {
        "videos": videos.num_rows,
        "frames": frames,
        "annotated_frames": int(pc.sum(has_mask).as_py() or 0),
        "objects": objects.num_rows,
        "masks": masks.num_rows,
        **_categories(objects.column("category")),
        "mean_frames_per_video": _mean(num_frames),
        "fps": fps,
        "duration_seconds": frames / fps,
        "mean_video_seconds": _mean(num_frames / fps),
        "disappearance_rate": _share(objects.column("disappears")),
        "reappearance_rate": _share(objects.column("reappears")),
        **_mbor(masks),
        "mask_sizes": size_classes(masks.column("area").to_numpy()),
        "object_sizes": size_classes(objects.column("mean_area").to_numpy()),
        "objects_per_video": _distribution(videos.column("num_objects").to_numpy()),
    }
    return out


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _share(flags: pa.ChunkedArray) -> float | None:
    """The share of true values; None for no values (a rate of nothing is not 0)."""
    return float(pc.mean(flags.cast(pa.float64())).as_py()) if len(flags) else None


def _categories(category: pa.ChunkedArray) -> dict[str, Any]:
    """`categories` (distinct names, None when no object has one) and objects per category."""
    known = category.drop_null()
    if not len(known):
        return {"categories": None, "objects_per_category": None}
    counts = pc.value_counts(known).to_pylist()
    per = {c["values"]: int(c["counts"]) for c in sorted(counts, key=lambda c: (-c["counts"], c["values"]))}
    return {"categories": len(per), "objects_per_category": per}


def size_classes(areas: np.ndarray) -> dict[str, int]:
    """COCO size classes of the given areas: small < 32^2 <= medium < 96^2 <= large."""
    areas = np.asarray(areas, dtype=np.float64)
    small = int(np.count_nonzero(areas < SMALL_AREA))
    large = int(np.count_nonzero(areas >= LARGE_AREA))
    return {"small": small, "medium": len(areas) - small - large, "large": large}


def _distribution(counts: np.ndarray) -> dict[str, Any]:
    """mean, min, max and a histogram {count: videos} (string keys, as in JSON)."""
    counts = np.asarray(counts, dtype=np.int64)
    if not len(counts):
        return {"mean": None, "min": None, "max": None, "histogram": {}}
    values, freq = np.unique(counts, return_counts=True)
    return {
        "mean": float(counts.mean()),
        "min": int(counts.min()),
        "max": int(counts.max()),
        "histogram": {str(int(v)): int(f) for v, f in zip(values, freq, strict=True)},
    }


# --- mBOR ----------------------------------------------------------------------------------------


def _mbor(masks: pa.Table) -> dict[str, Any]:
    """`mbor` over the annotated frames with a visible object, and how many frames that is."""
    scores = frame_bors(masks)
    return {"mbor": float(scores.mean()) if len(scores) else None, "mbor_frames": len(scores)}


def frame_bors(masks: pa.Table) -> np.ndarray:
    """BOR of every (video, frame) that has a row in the masks table, in no particular order."""
    if masks.num_rows == 0:
        return np.zeros(0)
    boxes = np.asarray(pc.list_flatten(masks.column("bbox")).to_numpy(), dtype=np.int64).reshape(-1, 4)
    video = pc.dictionary_encode(masks.column("video_id")).combine_chunks().indices.to_numpy()
    frame = np.asarray(masks.column("frame_index").to_numpy(), dtype=np.int64)
    _, group, sizes = np.unique(
        video.astype(np.int64) * (int(frame.max()) + 1) + frame, return_inverse=True, return_counts=True
    )
    order = np.argsort(group, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    rects = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]])
    rects = rects[order]
    out = []
    for n in np.unique(sizes):
        first = starts[sizes == n]
        stacked = rects[first[:, None] + np.arange(n)[None, :]]  # (frames, n, 4)
        out.append(bor_batch(stacked))
    return np.concatenate(out)


def bor_batch(rects: np.ndarray) -> np.ndarray:
    """BOR of each of F frames holding n boxes each, rects (F, n, 4) as [x0, y0, x1, y1) pixel edges."""
    frames, n = rects.shape[:2]
    if n < 2:
        return np.zeros(frames)
    chunk = max(1, _CHUNK_CELLS // (n * (2 * n) ** 2))
    return np.concatenate([_bor_chunk(rects[i : i + chunk]) for i in range(0, frames, chunk)])


def _bor_chunk(rects: np.ndarray) -> np.ndarray:
    """Coordinate compression: each cell between consecutive box edges is wholly in a box or out of it.

    A point lies in some pairwise intersection exactly when at least two boxes cover it, so counting
    the boxes over each cell gives both areas at once.
    """
    xs = np.sort(np.concatenate([rects[..., 0], rects[..., 2]], axis=1), axis=1)  # (F, 2n)
    ys = np.sort(np.concatenate([rects[..., 1], rects[..., 3]], axis=1), axis=1)
    cell_area = np.diff(ys, axis=1)[:, :, None] * np.diff(xs, axis=1)[:, None, :]  # (F, 2n-1, 2n-1)
    left, top = xs[:, None, :-1], ys[:, None, :-1]  # a cell's low edges decide its membership
    in_x = (rects[..., 0:1] <= left) & (left < rects[..., 2:3])  # (F, n, 2n-1)
    in_y = (rects[..., 1:2] <= top) & (top < rects[..., 3:4])
    cover = np.einsum("fny,fnx->fyx", in_y.astype(np.int32), in_x.astype(np.int32))
    union = np.where(cover >= 1, cell_area, 0).sum(axis=(1, 2))
    overlap = np.where(cover >= 2, cell_area, 0).sum(axis=(1, 2))
    return np.divide(overlap, union, out=np.zeros(len(union)), where=union > 0)


def union_area(rects: np.ndarray, at_least: int = 1) -> int:
    """Exact area covered by at least `at_least` of the [x0, y0, x1, y1) boxes (for tests and callers)."""
    rects = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    if not len(rects):
        return 0
    xs, ys = np.unique(rects[:, [0, 2]]), np.unique(rects[:, [1, 3]])
    in_x = (rects[:, 0:1] <= xs[None, :-1]) & (xs[None, :-1] < rects[:, 2:3])
    in_y = (rects[:, 1:2] <= ys[None, :-1]) & (ys[None, :-1] < rects[:, 3:4])
    cover = in_y.astype(np.int64).T @ in_x.astype(np.int64)
    area = np.diff(ys)[:, None] * np.diff(xs)[None, :]
    return int(area[cover >= at_least].sum())


# --- text ----------------------------------------------------------------------------------------

_ROWS = (
    ("videos", "videos", "{:d}"),
    ("frames", "frames", "{:d}"),
    ("annotated_frames", "annotated frames", "{:d}"),
    ("objects", "objects", "{:d}"),
    ("masks", "masks", "{:d}"),
    ("categories", "categories", "{:d}"),
    ("mean_frames_per_video", "frames per video", "{:.1f}"),
    ("duration_seconds", "duration (s)", "{:.1f}"),
    ("mean_video_seconds", "seconds per video", "{:.2f}"),
    ("disappearance_rate", "disappearance rate", "{:.3f}"),
    ("reappearance_rate", "reappearance rate", "{:.3f}"),
    ("mbor", "mBOR", "{:.3f}"),
)


def format_text(result: dict[str, Any]) -> str:
    """A readable table: one column per split, one row per statistic."""
    splits = result["splits"]
    names = list(splits)
    fps = {s["fps"] for s in splits.values()}
    rows: list[tuple[str, list[str]]] = [("statistic", names)]
    for key, label, fmt in _ROWS:
        label = f"{label} @ {next(iter(fps)):g} fps" if key == "duration_seconds" and len(fps) == 1 else label
        rows.append((label, [_fmt(splits[s][key], fmt) for s in names]))
    for key, label in (("mask_sizes", "masks"), ("object_sizes", "objects")):
        for size in ("small", "medium", "large"):
            rows.append((f"{label} {size}", [str(splits[s][key][size]) for s in names]))
    rows.append(("objects per video", [_per_video(splits[s]["objects_per_video"]) for s in names]))
    width = max(len(label) for label, _ in rows)
    cols = [max(len(r[1][i]) for r in rows) for i in range(len(names))]
    lines = [f"{label:<{width}}  " + "  ".join(v.rjust(c) for v, c in zip(vals, cols, strict=True))
             for label, vals in rows]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)


def _fmt(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _per_video(dist: dict[str, Any]) -> str:
    if dist["mean"] is None:
        return "-"
    return f"{dist['mean']:.2f} ({dist['min']}-{dist['max']})"
