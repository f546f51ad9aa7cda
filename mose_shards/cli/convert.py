"""`convert` and `demo`: raw trees into shards, tables and a manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.urls import redact
from .common import (
    EXIT_OK,
    ProgressBar,
    add_end_option,
    add_storage_option,
    add_workers_option,
    local_workers,
    storage_options,
)


def register_convert(sub: Any) -> None:
    from ..conversion.config import DEFAULT_SHARD_SIZE, pipeline_names
    from ..core.images import DEFAULT_MAX_PIXELS

    p = sub.add_parser(
        "convert",
        help="convert a raw VOS tree into shards, tables and a manifest",
        description="Convert SRC (a split folder, a root of splits, an archive of either: .tar, .tar.gz, "
        ".tgz, .zip, whole or in parts NAME.aa.. / NAME.001..; or a folder of such archives as a dataset "
        "ships; local or any fsspec URL) into OUT (local or URL), reading archives in place. Rerunning "
        "the same command after a kill finishes only what is missing.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  mose-shards convert MOSE/train.tar out/ --pipeline mose-v1\n"
        "  mose-shards convert MOSEv2/ out/ --pipeline mose-v2   # as on the Hub: train.tar.gz.aa..ac, ...\n"
        "  mose-shards convert DAVIS/ out/ --pipeline davis-2017 --shard-size 64MB\n"
        "  mose-shards convert train/ out/ --on-error skip     # convert the rest, list what was skipped\n",
    )
    p.add_argument("source", metavar="SRC")
    p.add_argument("output", metavar="OUT")
    p.add_argument("--pipeline", help=f"dataset defaults: {', '.join(pipeline_names())}")
    p.add_argument(
        "--shard-size", help=f"byte cap per shard, e.g. 256MB (default {DEFAULT_SHARD_SIZE // 10**6}MB)"
    )
    p.add_argument("--void-label", help="mask value to ignore (default 255); 'none' keeps 255 as an object")
    p.add_argument(
        "--split", action="append", dest="splits", metavar="NAME", help="only this split (repeatable)"
    )
    add_workers_option(
        p,
        "parallel shard tasks (with --executor ray: not capped, default the cluster's CPUs)",
        all_cores=True,
    )
    p.add_argument("--executor", choices=("local", "ray"), help="where tasks run (default local processes)")
    p.add_argument(
        "--ray-address", help="join this Ray cluster (implies --executor ray; default: a local Ray)"
    )
    p.add_argument(
        "--on-error",
        choices=("strict", "skip"),
        help="strict (default): fail on bad input; skip: leave broken videos out, listed in the manifest",
    )
    p.add_argument(
        "--max-member-size",
        metavar="SIZE",
        help="refuse a source file (frame, mask, member) larger than this, e.g. 1GiB (default 256MiB)",
    )
    p.add_argument("--overwrite", action="store_true", help="delete a previous output in OUT and start again")
    p.add_argument(
        "--dataset-card", action="store_true", help="also write a Hugging Face dataset card README.md"
    )
    p.add_argument(
        "--no-verify-source",
        action="store_false",
        dest="verify_source",
        help="do not check archives against the SHA256SUMS / <file>.sha256 beside them",
    )
    p.add_argument(
        "--max-pixels",
        help=f"refuse a frame or mask whose header declares more pixels, e.g. 268435456 or 16384x16384 "
        f"(default {DEFAULT_MAX_PIXELS}, twice 8192x8192)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    add_storage_option(p)
    add_end_option(p, "--source-option", "reading SRC")
    add_end_option(p, "--output-option", "writing OUT")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..conversion.config import from_pipeline, parse_void_label
    from ..conversion.orchestrate import convert
    from ..core.sizes import parse_size

    given: dict[str, Any] = {
        "shard_size": parse_size(args.shard_size) if args.shard_size else None,
        "splits": tuple(args.splits) if args.splits else None,
        # With a cluster address, every CPU of the cluster (the executor counts them once connected).
        "workers": _convert_workers(args),
        "executor": args.executor or ("ray" if args.ray_address else None),
        "ray_address": args.ray_address,
        "on_error": args.on_error,
        "overwrite": args.overwrite or None,
        "dataset_card": args.dataset_card or None,
        "storage_options": storage_options(args.storage_option) or None,
        "source_options": storage_options(args.source_option, "--source-option") or None,
        "output_options": storage_options(args.output_option, "--output-option") or None,
        "verify_source": None if args.verify_source else False,
        "max_member_size": parse_size(args.max_member_size) if args.max_member_size else None,
        "max_pixels": parse_pixels(args.max_pixels) if args.max_pixels else None,
    }
    given = {k: v for k, v in given.items() if v is not None or k == "workers"}
    if args.void_label is not None:
        given["void_label"] = parse_void_label(args.void_label)
    config = from_pipeline(args.pipeline, args.source, args.output, **given)
    with ProgressBar(disabled=args.quiet) as bar:
        result = convert(config, progress=bar.update)
    shards = sum(len(s["shards"]) for s in result.manifest["splits"].values())
    note = f", reused {result.shards_reused} finished shard(s)" if result.shards_reused else ""
    print(
        f"converted {result.videos} videos, {result.frames} frames into {shards} shards "
        f"({result.bytes / 1e6:.1f} MB) at {redact(config.output)} in {result.seconds:.1f}s{note}"
    )
    if result.skipped:
        warning = f"skipped {result.skipped} broken video(s); see 'skipped' in the manifest"
        print(f"mose-shards: warning: {warning}", file=sys.stderr)
        for split in result.manifest["splits"].values():
            for entry in split["skipped"]:
                print(f"  skipped {entry['video_id']}: {entry['reason']}", file=sys.stderr)
    return EXIT_OK


def _convert_workers(args: argparse.Namespace) -> int | None:
    """Local processes: at most the cores available. On Ray (asked for, or by a cluster address):
    as given, or None for every CPU of the cluster (the executor counts them once connected)."""
    if args.executor == "ray" or args.ray_address:
        return int(args.workers) if args.workers is not None else None
    return local_workers(args.workers)


def parse_pixels(text: str) -> int:
    """`--max-pixels`: a count (268435456, 2e8) or WxH (16384x16384); ConfigError otherwise."""
    try:
        if "x" in text.lower():
            width, height = text.lower().split("x")
            return int(width) * int(height)
        return int(float(text)) if "e" in text.lower() else int(text)
    except ValueError:
        raise ConfigError(f"--max-pixels must be a number of pixels or WxH, got {text!r}") from None


def register_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="generate the built-in MOSE-like sample (and convert it)",
        description="Generate a deterministic MOSE-like raw tree in DIR/raw (moving textured objects that "
        "occlude, leave and come back) and convert it into DIR/out, then print what was made.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  mose-shards demo                     # ./demo/raw and ./demo/out\n"
        "  mose-shards demo /tmp/demo --videos 2 --frames 8\n"
        "  mose-shards demo /tmp/hd --size 1920x1080 --raw-only\n",
    )
    p.add_argument(
        "directory", metavar="DIR", nargs="?", default="demo", help="where to write (default ./demo)"
    )
    p.add_argument("--videos", type=int, default=6, help="videos per split (default 6)")
    p.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    p.add_argument("--size", default="320x240", help="frame size WxH (default 320x240; try 1920x1080)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--raw-only", action="store_true", help="only generate the raw tree")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..conversion.config import from_pipeline
    from ..conversion.orchestrate import convert
    from ..core.sizes import parse_size
    from ..synth import SynthSpec, generate
    from ..synth import parse_size as parse_frame_size
    from ..tools.info import describe

    root = Path(args.directory)
    try:
        size = parse_frame_size(args.size)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    spec = SynthSpec(videos=args.videos, frames=args.frames, size=size, seed=args.seed)
    raw = generate(root / "raw", spec=spec)
    print(f"generated {args.videos} videos x {args.frames} frames per split at {size[0]}x{size[1]} in {raw}")
    if args.raw_only:
        return EXIT_OK
    out = root / "out"
    config = from_pipeline("demo", str(raw), str(out), shard_size=parse_size("2MB"), overwrite=True)
    with ProgressBar(disabled=args.quiet) as bar:
        convert(config, progress=bar.update)
    print(describe(str(out), {}))
    print(DEMO_NEXT.format(out=out))
    return EXIT_OK


DEMO_NEXT = """
read it back (docs/guide/output.md, "Reading the output"), with the Python mose-shards is installed in
(after `make demo`: source .venv/bin/activate):
  python -c "import webdataset as wds; \\
    print(next(iter(wds.WebDataset('{out}/shards/train/train-000000.tar', shardshuffle=False))).keys())"
  python -c "import pyarrow.dataset as ds; print(ds.dataset('{out}/tables/masks').to_table().slice(0, 3))"
  python -c "import duckdb; \\
    print(duckdb.sql(\\"select split, count(*) from '{out}/tables/frames/*.parquet' group by all\\"))"
    (DuckDB: pip install 'mose-shards[query]')
"""
