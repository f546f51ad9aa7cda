"""Per-frame J, F and F_new of every object of one frame, worked out in each object's neighbourhood.

The definitions are the official scorers' (docs/guide/evaluate.md, "Definitions"); this is our own
code. A frame's two id maps are scanned once for every id's box and area (two `bincount`s); each
object is then scored inside the box of its ground truth and prediction together, one pixel wider to
the top and left: every boundary pixel of either mask lies there, and the dilation only has to be
known at boundary pixels. The boundary map is the one of the whole frame restricted to that box
(the frame's last row and column are handled by repeating them, which is the rule at the edge).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

MOSE_V2, DAVIS_2017 = "mose-v2", "davis-2017"
METRICS = (MOSE_V2, DAVIS_2017)
BOUND_TH = 0.008  # F: the dilation radius as a fraction of the image diagonal
ADAPTIVE_TH = 0.1  # F_new ('area' mode): radius = ceil(0.1 * sqrt(gt area)), capped at 0.008 diagonal


@dataclass(frozen=True)
class Boxes:
    """Every id's box and area in one id map (ids 0..255 after `as_ids`)."""

    rows: np.ndarray  # [256, h] bool: id present in row
    cols: np.ndarray  # [256, w] bool
    area: np.ndarray  # [256] int64


def as_ids(mask: np.ndarray) -> np.ndarray:
    """An HxW integer map as uint8 ids; values outside 0..255 can be no ground-truth id: 0."""
    if mask.dtype == np.uint8:
        return mask
    mask = np.asarray(mask)
    return np.where((mask < 0) | (mask > 255), 0, mask).astype(np.uint8)


def boxes(ids: np.ndarray) -> Boxes:
    h, w = ids.shape
    flat = ids.astype(np.int64)
    per_row = np.bincount((np.arange(h, dtype=np.int64)[:, None] * 256 + flat).ravel(), minlength=h * 256)
    per_col = np.bincount((np.arange(w, dtype=np.int64)[None, :] * 256 + flat).ravel(), minlength=w * 256)
    rows = per_row.reshape(h, 256)
    return Boxes(rows=rows.T > 0, cols=per_col.reshape(w, 256).T > 0, area=rows.sum(axis=0))


@cache
def disk(radius: float) -> np.ndarray:
    """The structuring element: points of arange(-r, r + 1)^2 within r (a float r is kept as is)."""
    axis = np.arange(-radius, radius + 1)
    x, y = np.meshgrid(axis, axis)
    out: np.ndarray = (x**2 + y**2) <= radius**2
    return out


@cache
def _runs(radius: float) -> tuple[int, int, tuple[tuple[int, int, int], ...]]:
    """The element as (anchor row, anchor col, per kernel row (dy, first dx, last dx)) runs."""
    k = disk(radius)
    ay, ax = k.shape[0] // 2, k.shape[1] // 2
    runs = []
    for i in range(k.shape[0]):
        cols = np.flatnonzero(k[i])
        if cols.size:
            runs.append((i - ay, int(cols[0]) - ax, int(cols[-1]) - ax))
    if not runs:  # no point (r < ~0.7, images under ~88 px across): OpenCV then takes the corner one
        runs.append((-ay, -ax, -ax))
    return ay, ax, tuple(runs)


def dilate(b: np.ndarray, radius: float) -> np.ndarray:
    """dst[y, x] = any b[y + dy, x + dx] over the element's points (dy, dx), outside the map false.

    Boundaries are sparse: each of their pixels opens and closes one span per element row in a
    difference array (two bincounts for all of them), and a cumulative sum along the rows fills them."""
    h, w = b.shape
    dy, lo, hi = _run_arrays(radius)
    ys, xs = np.nonzero(b)
    rows = ys[None, :] - dy  # [runs, pixels]: the row each span lands in
    keep = (rows >= 0) & (rows < h)
    base = rows[keep] * (w + 1)
    opens = base + np.clip((xs[None, :] - hi)[keep], 0, w)
    closes = base + np.clip((xs[None, :] - lo + 1)[keep], 0, w)
    size = h * (w + 1)
    diff = np.bincount(opens, minlength=size) - np.bincount(closes, minlength=size)
    out: np.ndarray = np.cumsum(diff.reshape(h, w + 1), axis=1)[:, :w] > 0
    return out


@cache
def _run_arrays(radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The element's runs as three [runs, 1] columns: row offset, first and last column offset."""
    runs = np.array(_runs(radius)[2], dtype=np.int64)
    return runs[:, :1], runs[:, 1:2], runs[:, 2:3]


def boundary(seg: np.ndarray) -> np.ndarray:
    """seg2bmap of a crop given one row and column more (bottom, right): a pixel differing from its
    right, lower or lower-right neighbour."""
    core = seg[:-1, :-1]
    return (core != seg[:-1, 1:]) | (core != seg[1:, :-1]) | (core != seg[1:, 1:])


def f_measure(gt_b: np.ndarray, pred_b: np.ndarray, radius: float) -> float:
    n_fg, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_fg == 0 or n_gt == 0:
        return 1.0 if n_fg == n_gt else 0.0  # (P, R) = (1, 1), (1, 0) or (0, 1)
    precision = float(np.count_nonzero(pred_b & dilate(gt_b, radius))) / n_fg
    recall = float(np.count_nonzero(gt_b & dilate(pred_b, radius))) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def radii(metric: str, shape: tuple[int, int], gt_area: int) -> tuple[float, float]:
    """(F radius, F_new radius) of one object in one frame, as the scorers choose them."""
    diag = float(np.linalg.norm(shape))
    fixed = BOUND_TH * diag
    if metric == DAVIS_2017:
        return float(np.ceil(fixed)), float(np.ceil(fixed))
    wanted = np.ceil(ADAPTIVE_TH * np.sqrt(gt_area)) if gt_area else np.ceil(ADAPTIVE_TH * diag)
    adaptive = min(fixed, float(wanted))
    if adaptive < fixed:
        return float(np.ceil(fixed)), adaptive
    return fixed, fixed  # capped: both at the unrounded 0.008 diagonal, as the scorer dilates


def _span(rows: np.ndarray) -> tuple[int, int] | None:
    found = np.flatnonzero(rows)
    return (int(found[0]), int(found[-1])) if found.size else None


def _crop(ids: np.ndarray, obj: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """ids == obj over rows y0..y1, cols x0..x1 (inclusive), edge-repeated beyond the frame."""
    h, w = ids.shape
    sub = ids[y0 : min(y1, h - 1) + 1, x0 : min(x1, w - 1) + 1] == obj
    pad_y, pad_x = y1 - min(y1, h - 1), x1 - min(x1, w - 1)
    if pad_y or pad_x:
        sub = np.pad(sub, ((0, pad_y), (0, pad_x)), mode="edge")
    return sub


def score_object(
    metric: str, gt: np.ndarray, pred: np.ndarray, gb: Boxes, pb: Boxes, obj: int
) -> tuple[float, float, float]:
    """(J, F, F_new) of one object in one frame."""
    shape = (gt.shape[0], gt.shape[1])
    g_area, p_area = int(gb.area[obj]), int(pb.area[obj])
    f_radius, new_radius = radii(metric, shape, g_area)
    if g_area == 0 and p_area == 0:
        return 1.0, 1.0, 1.0
    spans = [s for s in (_span(gb.rows[obj]), _span(pb.rows[obj])) if s]
    cols = [s for s in (_span(gb.cols[obj]), _span(pb.cols[obj])) if s]
    y0, y1 = max(min(s[0] for s in spans) - 1, 0), max(s[1] for s in spans)
    x0, x1 = max(min(s[0] for s in cols) - 1, 0), max(s[1] for s in cols)
    g = _crop(gt, obj, y0, y1 + 1, x0, x1 + 1)
    p = _crop(pred, obj, y0, y1 + 1, x0, x1 + 1)
    inter = int(np.count_nonzero(g[:-1, :-1] & p[:-1, :-1]))
    union = g_area + p_area - inter
    j = _jaccard(metric, inter, union)
    gt_b, pred_b = boundary(g), boundary(p)
    f = f_measure(gt_b, pred_b, f_radius)
    f_new = f if new_radius == f_radius else f_measure(gt_b, pred_b, new_radius)
    return j, f, f_new


def _jaccard(metric: str, inter: int, union: int) -> float:
    if union == 0:
        return 1.0
    if metric == DAVIS_2017:
        return inter / union
    return min(max((inter + 1) / (union + 1), 0.0), 1.0)


def score_frame(
    metric: str, gt: np.ndarray, pred: np.ndarray, objects: list[int]
) -> list[tuple[int, float, float, float, bool, bool]]:
    """(object, J, F, F_new, gt_empty, pred_empty) for each object of one frame."""
    pred = as_ids(pred)
    gb, pb = boxes(gt), boxes(pred)
    out = []
    for obj in objects:
        j, f, f_new = score_object(metric, gt, pred, gb, pb, obj)
        out.append((obj, j, f, f_new, bool(gb.area[obj] == 0), bool(pb.area[obj] == 0)))
    return out


def davis_statistics(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, recall, decay) of one object's per-frame values (davis-2017)."""
    if values.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(np.nanmean(values))
    recall = float(np.nanmean(values > 0.5))
    # four bins over the frames; the bounds are cast to uint8 as the official code casts them
    ids = (np.round(np.linspace(1, len(values), 5) + 1e-10) - 1).astype(np.uint8)
    bins = [values[ids[i] : ids[i + 1] + 1] for i in range(4)]
    with np.errstate(all="ignore"):
        first = float(np.nanmean(bins[0])) if bins[0].size else math.nan
        last = float(np.nanmean(bins[3])) if bins[3].size else math.nan
    return mean, recall, first - last
