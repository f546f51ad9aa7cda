"""--by: J&F_new (mose-v2) or J&F-Mean (davis-2017) per group of objects, from the output's tables."""

from __future__ import annotations

from typing import Any

import numpy as np

from ...core import manifest
from ...core.errors import ConfigError
from ...core.storage import StorageOptions
from ...core.tables import read_table
from .metrics import DAVIS_2017

ATTRIBUTES = ("size", "disappearance", "reappearance", "objects-per-video", "occlusion")
SMALL, MEDIUM = 32**2, 96**2  # COCO object sizes, of the object's median visible area


def _size(area: float) -> str:
    return "small" if area < SMALL else "medium" if area < MEDIUM else "large"


def _count(n: int) -> str:
    return str(n) if n <= 2 else "3-5" if n <= 5 else "6-10" if n <= 10 else ">10"


def labels(
    url: str, split: str, attribute: str, options: StorageOptions | None
) -> dict[tuple[str, int], str]:
    """(video, object) -> its group under `attribute`."""
    if attribute not in ATTRIBUTES:
        raise ConfigError(f"unknown --by {attribute!r}; known: {', '.join(ATTRIBUTES)}")
    store, doc = manifest.read(url, options)
    objects = read_table(store, doc, split, "objects").to_pydict()
    if attribute == "occlusion" and "occlusion" not in objects:
        raise ConfigError(f"--by occlusion: the objects table of {url} has no occlusion column")
    keys = list(zip(objects["video_id"], objects["object_id"], strict=True))
    if attribute in ("disappearance", "reappearance", "occlusion"):
        column = {"disappearance": "disappears", "reappearance": "reappears"}.get(attribute, attribute)
        names = {"disappears": ("disappears", "stays"), "reappears": ("reappears", "does not reappear")}
        yes, no = names.get(column, ("yes", "no"))
        return {k: yes if v else no for k, v in zip(keys, objects[column], strict=True)}
    if attribute == "objects-per-video":
        per_video: dict[str, int] = {}
        for v, _ in keys:
            per_video[v] = per_video.get(v, 0) + 1
        return {k: _count(per_video[k[0]]) for k in keys}
    masks = read_table(store, doc, split, "masks", ["video_id", "object_id", "area"]).to_pydict()
    areas: dict[tuple[str, int], list[int]] = {}
    for v, o, a in zip(masks["video_id"], masks["object_id"], masks["area"], strict=True):
        areas.setdefault((v, o), []).append(a)
    return {k: _size(float(np.median(areas[k]))) if k in areas else "small" for k in keys}


def by(result: Any, url: str, attribute: str, options: StorageOptions | None = None) -> list[dict[str, Any]]:
    """Rows of (group, objects, score in percent) in group order."""
    groups = labels(url, result.split, attribute, options)
    objs = result.objects.to_pydict()
    key = "JF" if result.metric == DAVIS_2017 else "JF_new"
    found: dict[str, list[float]] = {}
    for v, o, s in zip(objs["video"], objs["object"], objs[key], strict=True):
        found.setdefault(groups.get((v, o), "unknown"), []).append(s)
    order = ["small", "medium", "large", "1", "2", "3-5", "6-10", ">10"]
    ranked = sorted(found, key=lambda g: (order.index(g) if g in order else len(order), g))
    return [{"group": g, "objects": len(found[g]), "score": float(np.mean(found[g])) * 100} for g in ranked]
