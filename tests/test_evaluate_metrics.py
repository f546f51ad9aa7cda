"""The metrics against a whole-frame reference written here from the definitions (docs/guide/evaluate.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mose_shards.analytics.evaluate.metrics import davis_statistics, score_frame
from mose_shards.analytics.evaluate.scores import mose_object, segments


def ref_bmap(seg: np.ndarray) -> np.ndarray:
    """A pixel is boundary where it differs from its right, lower or lower-right neighbour; on the last
    row only the right one counts, on the last column only the lower one, the corner never."""
    b = np.zeros(seg.shape, bool)
    right, down, diag = (
        seg[:-1, :-1] != seg[:-1, 1:],
        seg[:-1, :-1] != seg[1:, :-1],
        seg[:-1, :-1] != seg[1:, 1:],
    )
    b[:-1, :-1] = right | down | diag
    b[-1, :-1] = seg[-1, :-1] != seg[-1, 1:]
    b[:-1, -1] = seg[:-1, -1] != seg[1:, -1]
    return b


def ref_dilate(b: np.ndarray, r: float) -> np.ndarray:
    """Points (dy, dx) = (i - k//2, j - k//2) of the k x k grid arange(-r, r + 1) within r."""
    axis = np.arange(-r, r + 1)
    k = len(axis)
    pts = [
        (i - k // 2, j - k // 2) for i in range(k) for j in range(k) if axis[i] ** 2 + axis[j] ** 2 <= r * r
    ]
    if not pts:  # an element without a point (r < ~0.7): OpenCV uses the grid's first corner
        pts = [(-(k // 2), -(k // 2))]
    out = np.zeros_like(b)
    for y, x in zip(*np.nonzero(b), strict=True):
        for dy, dx in pts:  # out[y', x'] is set where b[y' + dy, x' + dx]
            yy, xx = y - dy, x - dx
            if 0 <= yy < b.shape[0] and 0 <= xx < b.shape[1]:
                out[yy, xx] = True
    return out


def ref_f(g: np.ndarray, p: np.ndarray, r: float) -> float:
    gb, pb = ref_bmap(g), ref_bmap(p)
    n_g, n_p = gb.sum(), pb.sum()
    if n_g == 0 or n_p == 0:
        return 1.0 if n_g == n_p else 0.0
    prec = (pb & ref_dilate(gb, r)).sum() / n_p
    rec = (gb & ref_dilate(pb, r)).sum() / n_g
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


def ref_mose(g: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    inter, union = (g & p).sum(), (g | p).sum()
    j = 1.0 if union == 0 else min((inter + 1) / (union + 1), 1.0)
    diag = math.sqrt(g.shape[0] ** 2 + g.shape[1] ** 2)
    area = g.sum()
    want = math.ceil(0.1 * math.sqrt(area)) if area else math.ceil(0.1 * diag)
    adaptive = min(0.008 * diag, want)
    if adaptive < 0.008 * diag:
        return j, ref_f(g, p, math.ceil(0.008 * diag)), ref_f(g, p, adaptive)
    f = ref_f(g, p, 0.008 * diag)
    return j, f, f


def ref_davis(g: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    inter, union = (g & p).sum(), (g | p).sum()
    diag = math.sqrt(g.shape[0] ** 2 + g.shape[1] ** 2)
    return (1.0 if union == 0 else inter / union), ref_f(g, p, math.ceil(0.008 * diag))


def _frame(h: int, w: int, rects: dict[int, tuple[int, int, int, int]]) -> np.ndarray:
    out = np.zeros((h, w), np.uint8)
    for obj, (y0, x0, y1, x1) in rects.items():
        out[y0:y1, x0:x1] = obj
    return out


def test_identical_masks_score_one() -> None:
    """A perfect prediction: J = F = F_new = 1 for every object, both metrics."""
    gt = _frame(60, 80, {1: (5, 5, 20, 30), 2: (30, 40, 59, 79)})
    for metric in ("mose-v2", "davis-2017"):
        for _, j, f, f_new, ge, pe in score_frame(metric, gt, gt.copy(), [1, 2]):
            assert (j, f, f_new, ge, pe) == (1.0, 1.0, 1.0, False, False)


def test_hand_known_values() -> None:
    """Empty gt and prediction: 1; gt empty, prediction of 12 px: mose J = 1/13, F = 0; davis J = 0."""
    gt = np.zeros((40, 50), np.uint8)
    pred = _frame(40, 50, {3: (10, 10, 13, 14)})
    [(_, j1, f1, n1, ge1, pe1), (_, j3, f3, n3, ge3, pe3)] = score_frame("mose-v2", gt, pred, [1, 3])
    assert (j1, f1, n1, ge1, pe1) == (1.0, 1.0, 1.0, True, True)
    assert j3 == pytest.approx(1 / 13) and f3 == 0.0 and n3 == 0.0 and (ge3, pe3) == (True, False)
    [(_, jd, fd, _, _, _)] = score_frame("davis-2017", gt, pred, [3])
    assert (jd, fd) == (0.0, 0.0)
    # half overlap of two 10x10 squares: inter 50, union 150
    g = _frame(100, 100, {1: (10, 10, 20, 20)})
    p = _frame(100, 100, {1: (10, 15, 20, 25)})
    [(_, j, _, _, _, _)] = score_frame("mose-v2", g, p, [1])
    [(_, jd, _, _, _, _)] = score_frame("davis-2017", g, p, [1])
    assert j == pytest.approx(51 / 151) and jd == pytest.approx(50 / 150)


def test_small_object_f_new_stricter_than_f() -> None:
    """A 10x10 object shifted by 2 px in 200x200: F (radius 3) forgives it, F_new (radius 1) does not."""
    g = _frame(200, 200, {1: (50, 50, 60, 60)})
    p = _frame(200, 200, {1: (52, 52, 62, 62)})
    [(_, j, f, f_new, _, _)] = score_frame("mose-v2", g, p, [1])
    assert f == 1.0 and f_new < 0.5
    assert (j, f, f_new) == pytest.approx(ref_mose(g == 1, p == 1), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_random_frames_match_reference(seed: int) -> None:
    """Random blobs (touching the frame's edges too) against the whole-frame reference, both metrics."""
    rng = np.random.default_rng(seed)
    h, w = [(48, 64), (30, 31), (64, 40)][seed % 3]
    yy, xx = np.ogrid[:h, :w]
    gt = np.zeros((h, w), np.uint8)
    for obj in range(1, 5):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(1, 20)
        gt[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (rng.random((h, w)) < 0.9)] = obj
    pred = np.roll(gt, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
    pred[rng.random((h, w)) < 0.03] = 7  # an id absent from the ground truth: ignored
    pred[:, -2:] = 1
    for obj, j, f, f_new, ge, pe in score_frame("mose-v2", gt, pred, [1, 2, 3, 4]):
        assert (j, f, f_new) == pytest.approx(ref_mose(gt == obj, pred == obj), abs=1e-12)
        assert (ge, pe) == (not (gt == obj).any(), not (pred == obj).any())
    for obj, j, f, f_new, _, _ in score_frame("davis-2017", gt, pred, [1, 2, 3, 4]):
        assert (j, f) == pytest.approx(ref_davis(gt == obj, pred == obj), abs=1e-12) and f_new == f


def test_segments_of_a_vanishing_and_reappearing_object() -> None:
    """Visible, gone 2, back 3, gone to the end: disappearances [1,3) and [6,8), reappearance [3,6)."""
    empty = np.array([0, 1, 1, 0, 0, 0, 1, 1], bool)
    assert segments(empty) == ([(1, 3), (6, 8)], [(3, 6)])
    # absent at the start is no disappearance; its coming is a reappearance
    assert segments(np.array([1, 1, 0, 0], bool)) == ([], [(2, 4)])
    assert segments(np.zeros(4, bool)) == ([], [])
    j = np.arange(8) / 10
    o = mose_object(j, j, j * 0 + 0.5, empty)
    assert o["disappear"] == pytest.approx(((0.15 + 0.65) / 2, 0.5))
    assert o["reappear"] == pytest.approx((0.4, 0.5))


def test_davis_statistics_by_hand() -> None:
    """Mean, recall (> 0.5) and decay (first quarter minus last) of 8 values."""
    v = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.2])
    mean, recall, decay = davis_statistics(v)
    assert mean == pytest.approx(v.mean()) and recall == pytest.approx(5 / 8)
    # bounds round(linspace(1, 8, 5) + 1e-10) - 1 = 0, 2, 4, 5, 7: first bin v[0:3], last v[5:8]
    assert decay == pytest.approx(v[0:3].mean() - v[5:8].mean())
