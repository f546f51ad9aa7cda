"""Evaluation: videos scored one at a time per worker (local processes or Ray), then aggregated.

`evaluate` reads predictions (pred.py); `Evaluator` takes id maps from a running job. Both score each
frame once for all its objects (metrics.score_frame) and aggregate the same way (scores.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np
import pyarrow as pa

from ...core.errors import ConfigError, DataError
from ...core.storage import StorageOptions
from ...loader.predictions import Predictions
from .metrics import DAVIS_2017, METRICS, MOSE_V2, score_frame
from .scores import davis_object, mose_object, object_json, summary
from .tables import frames_table, objects_table
from .truth import GroundTruth, Video

FrameRows = list[tuple[int, int, float, float, float, bool, bool]]  # frame, object, J, F, F_new, empties


def score_video(truth: GroundTruth, preds: Predictions, name: str, metric: str) -> FrameRows:
    """Every evaluated frame of one video: ground truth and prediction decoded once each."""
    video = truth.video(name)
    objects = truth.objects(video, metric)
    rows: FrameRows = []
    indices = list(video.evaluated) if len(video.frame_names) > 2 else []
    for index, gt in zip(indices, truth.masks(name, indices), strict=True):
        pred = preds.read(name, video.frame_names[index], (video.height, video.width))
        rows += [(index, *r) for r in score_frame(metric, gt, pred, objects)]
    return rows


@dataclass
class EvaluationResult:
    """The summary (percent, unrounded), per-object entries as in --json, and the scores as tables."""

    metric: str
    split: str
    summary: dict[str, float | None]
    per_object: dict[str, dict[str, float | None]]
    objects: pa.Table
    frames: pa.Table
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The --json document: one entry per `<video>_<object id>`, and "summary"."""
        return {**self.per_object, "summary": self.summary}

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, allow_nan=False)

    def write_scores(self, dest: str, storage_options: StorageOptions | None = None) -> list[str]:
        """scores_frames and scores_objects as Parquet under dest, each written atomically."""
        from .tables import write_scores

        return write_scores(self, dest, storage_options)


def aggregate(
    metric: str, split: str, videos: Sequence[Video], scored: dict[str, FrameRows]
) -> EvaluationResult:
    per_object: dict[str, dict[str, float | None]] = {}
    objects: list[dict[str, Any]] = []
    for video in videos:
        rows = scored[video.video]
        ids = sorted({r[1] for r in rows}) if rows else list(video.objects)
        table = np.array([r[:6] for r in rows], dtype=np.float64).reshape(-1, 6)
        for obj in ids:
            mine = table[table[:, 1] == obj]
            j, f, f_new, empty = mine[:, 2], mine[:, 3], mine[:, 4], mine[:, 5] > 0
            o = davis_object(j, f) if metric == DAVIS_2017 else mose_object(j, f, f_new, empty)
            o.update(video=video.video, object=obj, frames=int(len(mine)))
            objects.append(o)
            per_object[f"{video.video}_{obj}"] = object_json(metric, o)
    return EvaluationResult(
        metric=metric,
        split=split,
        summary=summary(metric, objects),
        per_object=per_object,
        objects=objects_table(metric, split, objects),
        frames=frames_table(split, [(v.video, scored[v.video]) for v in videos]),
    )


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")


def _task(truth: GroundTruth, preds: Predictions, name: str, metric: str) -> tuple[str, FrameRows]:
    return name, score_video(truth, preds, name, metric)


def evaluate(
    url: str,
    pred: str,
    split: str = "valid",
    metric: str = MOSE_V2,
    *,
    videos: Iterable[str] | None = None,
    workers: int = 1,
    executor: str = "local",
    storage_options: StorageOptions | None = None,
    pred_options: StorageOptions | None = None,
) -> EvaluationResult:
    """Score the predictions at `pred` against split `split` of the output at `url`."""
    _check_metric(metric)
    if executor not in ("local", "ray"):
        raise ConfigError(f"unknown executor {executor!r}; known: local, ray")
    truth = GroundTruth(url, split, storage_options)
    preds = Predictions(pred, pred_options if pred_options is not None else storage_options)
    chosen = [truth.video(v) for v in videos] if videos is not None else list(truth.videos.values())
    for video in chosen:  # a video absent from PRED fails before any work
        if not preds.has_video(video.video):
            raise DataError(preds.where(video.video, ""), "missing from the predictions (no such video)")
    names = [v.video for v in chosen]
    if executor == "ray":
        scored = dict(_run_ray(truth, preds, names, metric))
    elif workers <= 1 or len(names) <= 1:
        scored = dict(_task(truth, preds, n, metric) for n in names)
    else:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            scored = dict(pool.map(_task, *zip(*[(truth, preds, n, metric) for n in names], strict=True)))
    return aggregate(metric, split, chosen, scored)


def _run_ray(
    truth: GroundTruth, preds: Predictions, names: list[str], metric: str
) -> list[tuple[str, FrameRows]]:
    try:
        import ray
    except ImportError:
        from ...core.errors import MissingDependencyError

        raise MissingDependencyError("ray", "ray") from None
    started = not ray.is_initialized()
    if started:  # a local Ray, or the cluster RAY_ADDRESS names; stopped again when we started it
        ray.init(ignore_reinit_error=True, log_to_driver=False)
    try:
        remote = ray.remote(_task)
        t, p = ray.put(truth), ray.put(preds)
        out: list[tuple[str, FrameRows]] = ray.get([remote.remote(t, p, n, metric) for n in names])
    finally:
        if started:
            ray.shutdown()
    return out


class Evaluator:
    """Incremental evaluation: `add(video, frame, mask)` as predictions come, then `result()`.

    `frame` is the frame index (0-based) or its name; `mask` an HxW integer array of object ids. A
    frame is scored when added (frames 0 and n-1 are not scored and may be left out); `result`
    covers the videos added, each of which must have had every evaluated frame added."""

    def __init__(
        self,
        url: str,
        split: str = "valid",
        metric: str = MOSE_V2,
        storage_options: StorageOptions | None = None,
    ) -> None:
        _check_metric(metric)
        self.metric, self.split = metric, split
        self._truth = GroundTruth(url, split, storage_options)
        self._scored: dict[str, dict[int, FrameRows]] = {}
        self._objects: dict[str, list[int]] = {}

    def add(self, video: str, frame: int | str, mask: np.ndarray) -> None:
        v = self._truth.video(video)
        index = v.frame_names.index(frame) if isinstance(frame, str) and frame in v.frame_names else frame
        if not isinstance(index, (int, np.integer)) or not 0 <= int(index) < len(v.frame_names):
            raise ConfigError(f"video {video!r} has no frame {frame!r}")
        index = int(index)
        mask = np.asarray(mask)
        if mask.shape != (v.height, v.width):
            raise DataError(
                f"{video}/{v.frame_names[index]}",
                f"mask is {mask.shape}, the ground truth {(v.height, v.width)}",
            )
        if video not in self._objects:
            self._objects[video] = self._truth.objects(v, self.metric)
            self._scored[video] = {}
        if index not in v.evaluated:
            return
        gt = self._truth.mask(video, index)
        rows = score_frame(self.metric, gt, mask, self._objects[video])
        self._scored[video][index] = [(index, *r) for r in rows]

    def result(self) -> EvaluationResult:
        videos = [self._truth.video(v) for v in sorted(self._scored)]
        scored: dict[str, FrameRows] = {}
        for v in videos:
            got = self._scored[v.video]
            missing = [i for i in v.evaluated if i not in got]
            if missing:
                name = v.frame_names[missing[0]]
                raise DataError(f"{v.video}/{name}", f"not added ({len(missing)} evaluated frame(s) missing)")
            scored[v.video] = [r for i in v.evaluated for r in got[i]]
        return aggregate(self.metric, self.split, videos, scored)
