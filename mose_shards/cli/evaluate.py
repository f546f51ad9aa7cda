"""`evaluate`: predictions scored with MOSEv2's or DAVIS-2017's official metrics."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from .common import (
    EXIT_OK,
    add_end_option,
    add_workers_option,
    local_workers,
    output_command,
    storage_options,
)

EPILOG = """\
examples:
  mose-shards evaluate out/ preds/ --split valid                    MOSEv2 J&F_new and the rest
  mose-shards evaluate out/ submission.zip --split valid --json metrics.json
  mose-shards evaluate out/ preds/ --split val --metric davis-2017
  mose-shards evaluate out/ preds/ --split valid --by size --by reappearance
  mose-shards evaluate out/ preds/ --split valid --scores scores/ && \\
    mose-shards query out/ "select avg(J) from scores_frames where gt_empty" --scores scores/
  mose-shards evaluate s3://bucket/mose s3://bucket/preds --split valid --workers 8 \\
    --storage-option endpoint_url=http://host:8333
"""


def register_evaluate(sub: Any) -> None:
    p = output_command(
        sub,
        "evaluate",
        help="score predictions (MOSEv2 / DAVIS-2017 official metrics)",
        description="Score PRED (a folder or .zip of <video>/<frame>.png id maps, palette or grayscale, "
        "optionally under Annotations/ or one single folder; or a mose-shards output) against the "
        "ground truth of OUT. Numbers match the official scorers (percent, unrounded in --json).",
        epilog=EPILOG,
    )
    p.add_argument("pred", metavar="PRED", help="predictions: folder, .zip or output, local or any URL")
    p.add_argument("--split", required=True, help="split of OUT holding the ground truth")
    p.add_argument("--metric", choices=("mose-v2", "davis-2017"), default="mose-v2", help="default mose-v2")
    p.add_argument("--json", metavar="FILE", help="write per-object scores and the summary as JSON")
    p.add_argument(
        "--scores", metavar="DEST", help="write scores_frames and scores_objects Parquet under DEST"
    )
    p.add_argument(
        "--by",
        action="append",
        metavar="ATTRIBUTE",
        help="J&F_new per group: size, disappearance, reappearance, objects-per-video, occlusion",
    )
    p.add_argument("--videos", metavar="FILE", help="only the videos listed in FILE, one per line")
    add_workers_option(p, "videos scored at a time (with --executor ray: not capped)", all_cores=False)
    p.add_argument("--executor", choices=("local", "ray"), default="local", help="local processes or Ray")
    add_end_option(p, "--pred-option", "PRED")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..analytics.evaluate import evaluate
    from ..analytics.evaluate.groups import ATTRIBUTES, by

    workers = args.workers or 1
    if args.executor == "local" and args.workers is not None:
        workers = local_workers(args.workers)
    for attribute in args.by or []:
        if attribute not in ATTRIBUTES:
            raise ConfigError(f"unknown --by {attribute!r}; known: {', '.join(ATTRIBUTES)}")
    options = storage_options(args.storage_option)
    pred_options = {**options, **storage_options(args.pred_option, "--pred-option")}
    videos = _videos(args.videos) if args.videos else None
    result = evaluate(
        args.output,
        args.pred,
        split=args.split,
        metric=args.metric,
        videos=videos,
        workers=workers,
        executor=args.executor,
        storage_options=options,
        pred_options=pred_options,
    )
    groups = [(a, by(result, args.output, a, options)) for a in args.by or []]  # before anything is written
    if args.json:
        text = result.dumps()
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{args.json}.tmp")
        tmp.write_text(text + "\n")
        tmp.replace(args.json)
    if args.scores:
        result.write_scores(args.scores, options)
    print(_summary(result.metric, result.summary, len(result.per_object)))
    for attribute, rows in groups:
        print(_groups(result.metric, attribute, rows))
    return EXIT_OK


def _videos(path: str) -> list[str]:
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the video list ({exc.strerror})") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _summary(metric: str, summary: dict[str, float | None], objects: int) -> str:
    lines = [f"{metric}: {objects} objects"]
    width = max(len(k) for k in summary)
    lines += [f"  {k.ljust(width)}  {_fmt(v):>7}" for k, v in summary.items()]
    return "\n".join(lines)


def _groups(metric: str, attribute: str, rows: list[dict[str, Any]]) -> str:
    score = "J&F-Mean" if metric == "davis-2017" else "J&F_new"
    width = max([len(attribute)] + [len(r["group"]) for r in rows])
    lines = [f"{attribute.ljust(width)}  objects  {score}"]
    lines += [f"{r['group'].ljust(width)}  {r['objects']:>7}  {r['score']:>7.2f}" for r in rows]
    return "\n".join(lines)
