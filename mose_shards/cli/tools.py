"""`info`, `verify` and `export`: look at, check and restore an output."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import (
    EXIT_ERROR,
    EXIT_OK,
    ProgressBar,
    add_end_option,
    add_workers_option,
    local_workers,
    output_command,
    storage_options,
)


def register_info(sub: Any) -> None:
    p = output_command(
        sub,
        "info",
        help="summarise an output (local or URL)",
        description="Print what an output holds, from its manifest: splits, videos, frames, masks, "
        "shards, skipped videos.",
        epilog="examples:\n  mose-shards info demo/out\n  mose-shards info s3://bucket/mose "
        "--storage-option endpoint_url=http://host:8333\n",
    )
    p.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    from ..tools.info import describe

    print(describe(args.output, storage_options(args.storage_option)))
    return EXIT_OK


def register_verify(sub: Any) -> None:
    p = output_command(
        sub,
        "verify",
        help="check an output against its manifest (local or URL)",
        description="Recompute every shard's sha256, size and sample count against the manifest and check "
        "that the Parquet tables point at the shards' members. Prints one line per damaged, truncated or "
        "missing file; exits 1 when anything is wrong.",
        epilog="examples:\n  mose-shards verify demo/out\n"
        "  mose-shards verify s3://bucket/mose --workers 4 -q   # 4 shards at a time, no progress bar\n",
    )
    add_workers_option(p, "shards checked at a time", all_cores=False)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_verify)


def _workers(args: argparse.Namespace) -> int:
    return 1 if args.workers is None else local_workers(args.workers)


def cmd_verify(args: argparse.Namespace) -> int:
    from ..tools.verify import verify

    with ProgressBar(disabled=args.quiet, desc="verify", unit="shard") as bar:
        report = verify(
            args.output, storage_options(args.storage_option), workers=_workers(args), progress=bar.step
        )
    for line in report.problems:
        print(f"mose-shards: error: {line}", file=sys.stderr)
    if not report.ok:
        print(f"mose-shards: {report.url}: {len(report.problems)} problem(s) found", file=sys.stderr)
        return EXIT_ERROR
    print(f"{report.url}: ok, {report.shards} shards, {report.samples} samples match the manifest")
    return EXIT_OK


def register_export(sub: Any) -> None:
    p = output_command(
        sub,
        "export",
        help="restore the raw tree (JPEGImages/, Annotations/) from an output",
        description="Write DEST/<split>/JPEGImages/<video>/<frame>.jpg and, for frames with a mask, "
        "DEST/<split>/Annotations/<video>/<frame>.png, byte for byte as they were converted. "
        "DEST (local or URL) must be empty or new.",
        epilog="examples:\n  mose-shards export demo/out restored/\n"
        "  mose-shards export s3://bucket/mose restored/ --workers 2\n",
    )
    p.add_argument("dest", metavar="DEST", help="folder to write the raw tree into")
    add_end_option(p, "--dest-option", "writing DEST")
    add_workers_option(p, "shards exported at a time", all_cores=False)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..tools.export import export

    options = storage_options(args.storage_option)
    dest_options = {**options, **storage_options(args.dest_option, "--dest-option")}
    with ProgressBar(disabled=args.quiet, desc="export") as bar:
        result = export(
            args.output,
            args.dest,
            storage_options=options,
            dest_options=dest_options,
            workers=_workers(args),
            progress=bar.step,
        )
    print(f"exported {result.videos} videos, {result.frames} frames, {result.masks} masks into {args.dest}")
    return EXIT_OK
