"""Scoring predictions against an output's ground truth: MOSEv2's and DAVIS-2017's official metrics.

metrics (per frame and object), scores (per object, summary), truth (the output's ground truth),
runner (`evaluate`, `Evaluator`), tables (--scores), groups (--by). The predictions are read by
loader/predictions.py, as show and browse read them. Definitions: docs/guide/evaluate.md.
"""

from __future__ import annotations

from .runner import EvaluationResult, Evaluator, evaluate

__all__ = ["EvaluationResult", "Evaluator", "evaluate"]
