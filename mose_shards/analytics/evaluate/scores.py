"""From per-frame scores to per-object and summary numbers, the scorers' way (fractions in, percent out)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .metrics import DAVIS_2017, davis_statistics

MOSE_KEYS = ("J", "F_new", "F", "J&F_new", "J&F", "disappear_J&F_new", "reappear_J&F_new")


def segments(empty: np.ndarray) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(disappearance, reappearance) segments [start, end) over the evaluated frames.

    A disappearance starts where the ground truth goes empty after a visible frame and ends where it
    is visible again (or at the end); one already empty at the first evaluated frame is no
    disappearance. A reappearance starts where it is visible again and ends at the next disappearance
    (or at the end)."""
    n = len(empty)
    gone = [i for i in range(1, n) if empty[i] and not empty[i - 1]]
    back = [i for i in range(1, n) if not empty[i] and empty[i - 1]]
    if n and empty[0]:
        gone.insert(0, 0)
    dis = [(s, back[i] if i < len(back) else n) for i, s in enumerate(gone) if s > 0]
    re = [(s, gone[i + 1] if i + 1 < len(gone) else n) for i, s in enumerate(back)]
    return dis, re


def _segment_means(
    spans: list[tuple[int, int]], j: np.ndarray, f_new: np.ndarray
) -> tuple[float, float] | None:
    if not spans:
        return None
    js = [float(j[a:b].mean()) for a, b in spans]
    fs = [float(f_new[a:b].mean()) for a, b in spans]
    return float(np.mean(js)), float(np.mean(fs))


def mose_object(j: np.ndarray, f: np.ndarray, f_new: np.ndarray, empty: np.ndarray) -> dict[str, Any]:
    """One object's fractions: J, F, F_new and the (J, F_new) means of its segments (None if none)."""
    if j.size == 0:  # a video of two frames or fewer: the scorer has no frame and scores 0
        return {"J": 0.0, "F": 0.0, "F_new": 0.0, "disappear": None, "reappear": None}
    dis, re = segments(empty)
    return {
        "J": float(j.mean()),
        "F": float(f.mean()),
        "F_new": float(f_new.mean()),
        "disappear": _segment_means(dis, j, f_new),
        "reappear": _segment_means(re, j, f_new),
    }


def davis_object(j: np.ndarray, f: np.ndarray) -> dict[str, Any]:
    jm, jr, jd = davis_statistics(j)
    fm, fr, fd = davis_statistics(f)
    return {"J": jm, "J_recall": jr, "J_decay": jd, "F": fm, "F_recall": fr, "F_decay": fd}


def _pct(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return value * 100


def _pair(seg: tuple[float, float] | None) -> float | None:
    return None if seg is None else _pct((seg[0] + seg[1]) / 2)


def object_json(metric: str, o: dict[str, Any]) -> dict[str, float | None]:
    """One object's entry of the --json file, in percent, unrounded."""
    if metric == DAVIS_2017:
        return {"J-Mean": _pct(o["J"]), "F-Mean": _pct(o["F"]), "J&F-Mean": _pct((o["J"] + o["F"]) / 2)}
    return {
        "J": _pct(o["J"]),
        "F_new": _pct(o["F_new"]),
        "F": _pct(o["F"]),
        "J&F_new": _pct((o["J"] + o["F_new"]) / 2),
        "J&F": _pct((o["J"] + o["F"]) / 2),
        "disappear_J&F_new": _pair(o["disappear"]),
        "reappear_J&F_new": _pair(o["reappear"]),
    }


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def summary(metric: str, objects: list[dict[str, Any]]) -> dict[str, float | None]:
    """The summary over every object, in percent, unrounded (None where nothing to average)."""
    col = {key: [o[key] for o in objects] for key in objects[0]} if objects else {}
    if metric == DAVIS_2017:
        m = {k: _mean(col.get(k, [])) for k in ("J", "J_recall", "J_decay", "F", "F_recall", "F_decay")}
        return {
            "J&F-Mean": _pct((m["J"] + m["F"]) / 2),
            "J-Mean": _pct(m["J"]),
            "J-Recall": _pct(m["J_recall"]),
            "J-Decay": _pct(m["J_decay"]),
            "F-Mean": _pct(m["F"]),
            "F-Recall": _pct(m["F_recall"]),
            "F-Decay": _pct(m["F_decay"]),
        }
    j, f, f_new = (_mean(col.get(k, [])) for k in ("J", "F", "F_new"))
    out = {"J": _pct(j), "F_new": _pct(f_new), "F": _pct(f), "J&F_new": _pct((j + f_new) / 2)}
    out["J&F"] = _pct((j + f) / 2)
    for key in ("disappear", "reappear"):
        segs = [s for s in col.get(key, []) if s is not None]
        both = (_mean([s[0] for s in segs]) + _mean([s[1] for s in segs])) / 2
        out[f"{key}_J&F_new"] = _pct(both)
    return {k: out[k] for k in MOSE_KEYS}
