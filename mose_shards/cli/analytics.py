"""`stats` and `query`: answers from the tables."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import EXIT_OK, output_command, storage_options


def register_stats(sub: Any) -> None:
    p = output_command(
        sub,
        "stats",
        help="dataset statistics from the tables (MOSE-paper definitions)",
        description="Per split: videos, frames, objects, masks, categories, durations, disappearance and "
        "reappearance rates, mBOR, COCO object sizes, objects per video. Read from the Parquet tables "
        "only (no shard, no mask decoded); definitions in the README, section Analytics.",
        epilog="examples:\n  mose-shards stats out/\n  mose-shards stats out/ --split train --json\n"
        "  mose-shards stats s3://bucket/mose --plot charts/ --storage-option anon=true\n",
    )
    p.add_argument(
        "--split", action="append", dest="splits", metavar="S", help="only this split (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--plot", metavar="DIR", help="also write PNG charts into the local folder DIR")
    p.add_argument("--fps", type=float, help="frame rate for durations (default 6)")
    p.set_defaults(func=cmd_stats)


def cmd_stats(args: argparse.Namespace) -> int:
    import json

    from ..analytics.stats import DEFAULT_FPS, compute, format_text

    options = storage_options(args.storage_option)
    fps = DEFAULT_FPS if args.fps is None else args.fps
    result = compute(args.output, options, splits=args.splits, fps=fps)
    print(json.dumps(result, indent=2) if args.json else format_text(result))
    if args.plot:
        from ..analytics.plots import write_plots

        written = write_plots(args.output, args.plot, options, splits=args.splits)
        print(f"wrote {len(written)} charts to {args.plot}", file=sys.stderr)
    return EXIT_OK


def register_query(sub: Any) -> None:
    p = output_command(
        sub,
        "query",
        help="run SQL (DuckDB) over the tables",
        description="Run one SQL SELECT over the tables videos, frames, masks and objects (every split; "
        "each has a split column) of OUT, local or any fsspec URL. The SQL sees those tables only: no "
        "file, URL, extension or setting (docs/guide/security.md).",
        epilog='examples:\n  mose-shards query out/ "select split, count(*) from masks group by split"\n'
        '  mose-shards query out/ "select * from objects where reappears" --format csv\n'
        '  mose-shards query out/ "select video_id from objects where reappears" --format video-list\n',
    )
    p.add_argument("sql", metavar="SQL")
    p.add_argument(
        "--format",
        choices=("table", "csv", "json", "video-list"),
        default="table",
        help="output format; video-list: the distinct video_id values, one per line (for Source(videos=))",
    )
    p.add_argument(
        "--scores",
        metavar="DEST",
        help="also the tables scores_frames and scores_objects written by `evaluate --scores DEST`",
    )
    p.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    from ..analytics.query import format_result, query

    table = query(args.output, args.sql, storage_options(args.storage_option), scores=args.scores)
    text = format_result(table, args.format)
    if text:  # an empty video list prints nothing, not an empty line
        print(text)
    return EXIT_OK
