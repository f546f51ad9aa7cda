"""The `mose-shards` command: the parser, and our errors mapped to exit codes.

Only the cli package prints or configures logging. Each command family lives in its own module
(convert, analytics, tools) as `register_NAME(subparsers)` plus `cmd_NAME(args) -> int`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..core.errors import ConfigError, MoseShardsError, ProblemsError
from ..core.storage import probe
from ..core.urls import RedactingFilter, redact
from ..core.version import __version__
from . import analytics, convert, evaluate, look, tools
from .common import EXIT_ERROR, EXIT_USAGE, storage_options

EPILOG = """\
examples:
  mose-shards demo /tmp/demo                         generate a MOSE-like sample and convert it
  mose-shards convert train.tar out/ --pipeline mose-v1
  mose-shards convert MOSE/ s3://bucket/mose --workers 8 --storage-option endpoint_url=http://host:8333
  mose-shards info out/                              what an output holds
  mose-shards verify s3://bucket/mose                recompute hashes, check tables against shards
  mose-shards stats out/ --json                      disappearance, reappearance, mBOR, sizes
  mose-shards query out/ "select * from objects where reappears limit 5"
  mose-shards evaluate out/ preds/ --split valid      score predictions (MOSEv2 / DAVIS-2017 metrics)
  mose-shards show out/ VIDEO -o video.webp           a video with its masks drawn over it
  mose-shards browse out/                             look at every video in a browser
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:  # no URL password reaches a log line
        handler.addFilter(RedactingFilter())
    try:
        if args.command != "convert":  # convert probes its two ends itself, with their own options
            probe_output(args)
        code: int = args.func(args)
        return code
    except ProblemsError as exc:
        for line in exc.problems:
            print(f"mose-shards: error: {line}", file=sys.stderr)
        print(f"mose-shards: {len(exc.problems)} problem(s); nothing was committed", file=sys.stderr)
        return EXIT_ERROR
    except ConfigError as exc:
        print(f"mose-shards: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MoseShardsError as exc:
        print(f"mose-shards: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a storage library's I/O failure, as one line instead of a traceback
        if not _is_io_error(exc):
            raise
        text = " ".join(str(exc).split()) or "no details"
        urls = [u for u in (getattr(args, n, None) for n in ("source", "output")) if u and "://" in str(u)]
        where = "".join(f"{u}: " for u in urls if str(u) not in text)
        print(f"mose-shards: error: {redact(where + type(exc).__name__ + ': ' + text)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mose-shards: interrupted; rerun the same command to finish", file=sys.stderr)
        return 130


# Exceptions of the storage stack that mean "cannot reach or read it", not a bug of ours: fsspec's and
# aiohttp's OSErrors, botocore's connection and credential errors.
_IO_MODULES = (
    "botocore",
    "aiobotocore",
    "aiohttp",
    "s3fs",
    "fsspec",
    "gcsfs",
    "adlfs",
    "requests",
    "urllib3",
)


def probe_output(args: argparse.Namespace) -> None:
    """An OUT on an object store that cannot be reached: one line in seconds (core.storage.probe)."""
    output = getattr(args, "output", None)
    if isinstance(output, str) and "://" in output:
        probe(output, storage_options(getattr(args, "storage_option", None)))


def _is_io_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) or type(exc).__module__.split(".")[0] in _IO_MODULES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mose-shards",
        description="Turn MOSE / DAVIS / YouTube-VOS raw trees into WebDataset shards + Parquet tables, "
        "and inspect them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"mose-shards {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


COMMANDS: list[Callable[[Any], None]] = [
    convert.register_convert,
    tools.register_info,
    convert.register_demo,
    analytics.register_stats,
    analytics.register_query,
    tools.register_verify,
    tools.register_export,
    evaluate.register_evaluate,
    look.register_show,
    look.register_browse,
]
