"""The `mose-shards` command: argument parsing, progress, and our errors mapped to exit codes.

Only this module prints or configures logging. Each subcommand is `cmd_NAME(args) -> int`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, MoseShardsError, ProblemsError
from ..core.version import __version__

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2

EPILOG = """\
examples:
  mose-shards demo /tmp/demo                         generate a MOSE-like sample and convert it
  mose-shards convert train.tar out/ --pipeline mose-v1
  mose-shards convert MOSE/ s3://bucket/mose --workers 8 --storage-option endpoint_url=http://host:8333
  mose-shards info out/                              what an output holds
  mose-shards verify s3://bucket/mose                recompute hashes, check tables against shards
  mose-shards stats out/ --json                      disappearance, reappearance, mBOR, sizes
  mose-shards query out/ "select * from objects where reappears limit 5"
"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
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
    except KeyboardInterrupt:
        print("mose-shards: interrupted; rerun the same command to finish", file=sys.stderr)
        return 130


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


def _storage_options(pairs: list[str] | None, flag: str = "--storage-option") -> dict[str, Any]:
    """KEY=VALUE pairs -> storage options; dotted keys nest (client_kwargs.region_name=x)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} wants KEY=VALUE, got {pair!r}")
        target = out
        *parents, leaf = key.split(".")
        for parent in parents:
            target = target.setdefault(parent, {})
        target[leaf] = _scalar(value)
    return out


def _scalar(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(value)
    except ValueError:
        return value


def add_storage_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--storage-option",
        action="append",
        metavar="KEY=VALUE",
        help="fsspec storage option, repeatable (endpoint_url=..., anon=true); "
        "AWS_* environment variables are used too",
    )


def add_end_option(parser: argparse.ArgumentParser, flag: str, end: str) -> None:
    """A per-end storage option (--source-option, --output-option, --dest-option)."""
    parser.add_argument(
        flag,
        action="append",
        metavar="KEY=VALUE",
        help=f"fsspec storage option for {end} only, repeatable; wins over --storage-option",
    )


def _output_command(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand that reads an output: OUT (a folder, any URL, or its manifest) and --storage-option."""
    if "epilog" in kwargs:  # examples keep their lines; then so does the description
        kwargs["formatter_class"] = argparse.RawDescriptionHelpFormatter
    p: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
    p.add_argument("output", metavar="OUT", help="output folder or manifest URL")
    add_storage_option(p)
    return p


# --- convert -------------------------------------------------------------------------------------


def _register_convert(sub: Any) -> None:
    from ..conversion.config import DEFAULT_SHARD_SIZE, pipeline_names

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
    p.add_argument("--workers", type=int, help="parallel shard tasks (default: all cores)")
    p.add_argument("--executor", choices=("local", "ray"), help="where tasks run (default local processes)")
    p.add_argument("--ray-address", help="Ray cluster address (default: a local Ray)")
    p.add_argument(
        "--on-error",
        choices=("strict", "skip"),
        help="strict (default): fail on bad input; skip: leave broken videos out, listed in the manifest",
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
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    add_storage_option(p)
    add_end_option(p, "--source-option", "reading SRC")
    add_end_option(p, "--output-option", "writing OUT")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args: argparse.Namespace) -> int:
    from ..conversion.config import default_workers, from_pipeline, parse_size, parse_void_label
    from ..conversion.orchestrate import convert

    given: dict[str, Any] = {
        "shard_size": parse_size(args.shard_size) if args.shard_size else None,
        "splits": tuple(args.splits) if args.splits else None,
        "workers": args.workers or default_workers(),
        "executor": args.executor,
        "ray_address": args.ray_address,
        "on_error": args.on_error,
        "overwrite": args.overwrite or None,
        "dataset_card": args.dataset_card or None,
        "storage_options": _storage_options(args.storage_option) or None,
        "source_options": _storage_options(args.source_option, "--source-option") or None,
        "output_options": _storage_options(args.output_option, "--output-option") or None,
        "verify_source": None if args.verify_source else False,
    }
    given = {k: v for k, v in given.items() if v is not None}
    if args.void_label is not None:
        given["void_label"] = parse_void_label(args.void_label)
    config = from_pipeline(args.pipeline, args.source, args.output, **given)
    with _ProgressBar(disabled=args.quiet) as bar:
        result = convert(config, progress=bar.update)
    shards = sum(len(s["shards"]) for s in result.manifest["splits"].values())
    note = f", reused {result.shards_reused} finished shard(s)" if result.shards_reused else ""
    print(
        f"converted {result.videos} videos, {result.frames} frames into {shards} shards "
        f"({result.bytes / 1e6:.1f} MB) at {config.output} in {result.seconds:.1f}s{note}"
    )
    if result.skipped:
        warning = f"skipped {result.skipped} broken video(s); see 'skipped' in the manifest"
        print(f"mose-shards: warning: {warning}", file=sys.stderr)
        for split in result.manifest["splits"].values():
            for entry in split["skipped"]:
                print(f"  skipped {entry['video_id']}: {entry['reason']}", file=sys.stderr)
    return EXIT_OK


class _ProgressBar:
    """A tqdm bar on stderr fed by convert's progress callback (verify and export: `step`)."""

    def __init__(self, disabled: bool, desc: str = "convert", unit: str = "frame") -> None:
        self.disabled = disabled
        self.desc, self.unit = desc, unit
        self.bar: Any = None

    def step(self, done: int, total: int) -> None:
        self.update(self.desc, done, total)

    def update(self, event: str, done: int, total: int) -> None:
        if self.disabled:
            return
        if event == "plan":  # listing a large source takes a while: say what it found
            print(f"mose-shards: planned {done} videos into {total} shards", file=sys.stderr)
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit=self.unit, desc=self.desc, file=sys.stderr, dynamic_ncols=True)
        self.bar.n = done
        self.bar.refresh()

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


# --- info ----------------------------------------------------------------------------------------


def _register_info(sub: Any) -> None:
    p = _output_command(
        sub,
        "info",
        help="summarise an output (local or URL)",
        description="Print what an output holds, from its manifest: splits, videos, frames, masks, "
        "shards, skipped videos.",
    )
    p.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    from ..tools.info import describe

    print(describe(args.output, _storage_options(args.storage_option)))
    return EXIT_OK


# --- demo ----------------------------------------------------------------------------------------


def _register_demo(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="generate the built-in MOSE-like sample (and convert it)",
        description="Generate a deterministic MOSE-like raw tree in DIR/raw (moving textured objects that "
        "occlude, leave and come back) and convert it into DIR/out, then print what was made.",
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
    from ..conversion.config import from_pipeline, parse_size
    from ..conversion.orchestrate import convert
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
    with _ProgressBar(disabled=args.quiet) as bar:
        convert(config, progress=bar.update)
    print(describe(str(out), {}))
    print(DEMO_NEXT.format(out=out))
    return EXIT_OK


# --- stats ---------------------------------------------------------------------------------------


def _register_stats(sub: Any) -> None:
    p = _output_command(
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

    options = _storage_options(args.storage_option)
    fps = DEFAULT_FPS if args.fps is None else args.fps
    result = compute(args.output, options, splits=args.splits, fps=fps)
    print(json.dumps(result, indent=2) if args.json else format_text(result))
    if args.plot:
        from ..analytics.plots import write_plots

        written = write_plots(args.output, args.plot, options, splits=args.splits)
        print(f"wrote {len(written)} charts to {args.plot}", file=sys.stderr)
    return EXIT_OK


# --- query ---------------------------------------------------------------------------------------


def _register_query(sub: Any) -> None:
    p = _output_command(
        sub,
        "query",
        help="run SQL (DuckDB) over the tables",
        description="Run one SQL statement with the views videos, frames, masks and objects (every split; "
        "each has a split column) over the Parquet tables of OUT, local or any fsspec URL.",
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
    p.set_defaults(func=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    from ..analytics.query import format_result, query

    table = query(args.output, args.sql, _storage_options(args.storage_option))
    text = format_result(table, args.format)
    if text:  # an empty video list prints nothing, not an empty line
        print(text)
    return EXIT_OK


# --- verify, export -------------------------------------------------------------------------------


def _register_verify(sub: Any) -> None:
    p = _output_command(
        sub,
        "verify",
        help="check an output against its manifest (local or URL)",
        description="Recompute every shard's sha256, size and sample count against the manifest and check "
        "that the Parquet tables point at the shards' members. Prints one line per damaged, truncated or "
        "missing file; exits 1 when anything is wrong.",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from ..tools.verify import verify

    with _ProgressBar(disabled=args.quiet, desc="verify", unit="shard") as bar:
        report = verify(args.output, _storage_options(args.storage_option), progress=bar.step)
    for line in report.problems:
        print(f"mose-shards: error: {line}", file=sys.stderr)
    if not report.ok:
        print(f"mose-shards: {report.url}: {len(report.problems)} problem(s) found", file=sys.stderr)
        return EXIT_ERROR
    print(f"{report.url}: ok, {report.shards} shards, {report.samples} samples match the manifest")
    return EXIT_OK


def _register_export(sub: Any) -> None:
    p = _output_command(
        sub,
        "export",
        help="restore the raw tree (JPEGImages/, Annotations/) from an output",
        description="Write DEST/<split>/JPEGImages/<video>/<frame>.jpg and, for frames with a mask, "
        "DEST/<split>/Annotations/<video>/<frame>.png, byte for byte as they were converted. "
        "DEST (local or URL) must be empty or new.",
    )
    p.add_argument("dest", metavar="DEST", help="folder to write the raw tree into")
    add_end_option(p, "--dest-option", "writing DEST")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..tools.export import export

    options = _storage_options(args.storage_option)
    dest_options = {**options, **_storage_options(args.dest_option, "--dest-option")}
    with _ProgressBar(disabled=args.quiet, desc="export") as bar:
        result = export(
            args.output, args.dest, storage_options=options, dest_options=dest_options, progress=bar.step
        )
    print(f"exported {result.videos} videos, {result.frames} frames, {result.masks} masks into {args.dest}")
    return EXIT_OK


DEMO_NEXT = """
read it back (README, "Reading the output"), with the Python mose-shards is installed in
(after `make demo`: source .venv/bin/activate):
  python -c "import webdataset as wds; \\
    print(next(iter(wds.WebDataset('{out}/shards/train/train-000000.tar', shardshuffle=False))).keys())"
  python -c "import pyarrow.dataset as ds; print(ds.dataset('{out}/tables/masks').to_table().slice(0, 3))"
  python -c "import duckdb; \\
    print(duckdb.sql(\\"select split, count(*) from '{out}/tables/frames/*.parquet' group by all\\"))"
    (DuckDB: pip install 'mose-shards[query]')
"""

COMMANDS: list[Callable[[Any], None]] = [
    _register_convert,
    _register_info,
    _register_demo,
    _register_stats,
    _register_query,
    _register_verify,
    _register_export,
]


if __name__ == "__main__":
    sys.exit(main())
