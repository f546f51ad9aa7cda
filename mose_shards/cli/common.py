"""What the command families share: storage options, the OUT argument, progress bars, exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..core.errors import ConfigError

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


def storage_options(pairs: list[str] | None, flag: str = "--storage-option") -> dict[str, Any]:
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
        target[leaf] = _scalar(value, f"{flag} {key}")
    for key in _MAPPINGS:
        if key in out and not isinstance(out[key], dict):
            raise ConfigError(f"{flag} {key} must be a JSON object (or dotted keys), got {out[key]!r}")
    return out


# fsspec/s3fs options that are passed on as keyword mappings: a string there fails deep inside botocore
_MAPPINGS = ("config_kwargs", "client_kwargs", "s3_additional_kwargs", "listings_expiry_time_kwargs")


def _scalar(value: str, where: str = "--storage-option") -> Any:
    """true/false, an int, a JSON object or list (`config_kwargs={"connect_timeout": 5}`), else text."""
    if value.lstrip().startswith(("{", "[")):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: not a valid JSON object or list ({exc}); or use dotted keys, "
                              f"e.g. config_kwargs.connect_timeout=5") from None  # fmt: skip
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


def add_workers_option(parser: argparse.ArgumentParser, what: str, *, all_cores: bool) -> None:
    """The --workers of every command: a whole number from 1 (0 and below are refused, with what
    omitting it means); all cores, or one, when omitted."""
    default = "all cores" if all_cores else "one at a time"

    def count(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {value}; omit --workers for {default}")
        return value

    count.__name__ = "worker count"  # argparse names the type in its messages
    parser.add_argument(
        "--workers",
        type=count,
        default=None,
        metavar="N",
        help=f"{what}, in local processes, at most the cores available (default: {default})",
    )


def local_workers(requested: int | None) -> int:
    """--workers for a pool of local processes: every core when omitted, and never more than the
    cores available (more only queue behind each other: 64 on 2 cores ran 5x slower than 1)."""
    from ..conversion.executors import available_cores

    cores = available_cores()
    if requested is None:
        return cores
    if requested > cores:
        print(
            f"mose-shards: warning: --workers {requested}: using the {cores} cores available", file=sys.stderr
        )
        return cores
    return requested


def output_command(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand that reads an output: OUT (a folder, any URL, or its manifest) and --storage-option."""
    if "epilog" in kwargs:  # examples keep their lines; then so does the description
        kwargs["formatter_class"] = argparse.RawDescriptionHelpFormatter
    p: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
    p.add_argument("output", metavar="OUT", help="output folder or manifest URL")
    add_storage_option(p)
    return p


class ProgressBar:
    """A tqdm bar on stderr fed by convert's progress callback (verify and export: `step`)."""

    def __init__(self, disabled: bool, desc: str = "convert", unit: str = "frame") -> None:
        self.disabled = disabled
        self.desc, self.unit = desc, unit
        self.bar: Any = None
        self.listing: Any = None  # the bar of the archive being listed (bytes read)
        self.listed = ""

    def step(self, done: int, total: int) -> None:
        self.update(self.desc, done, total)

    def update(self, event: str, done: int, total: int) -> None:
        if self.disabled:
            return
        if event.startswith("list:"):  # an archive read through to list it: minutes for MOSEv2's
            if self.listed != event:
                self._close_listing()
                self.listing = self._bar(total, f"list {event[5:]}", unit="B", unit_scale=True)
                self.listed = event
            self.listing.update(done - self.listing.n)  # by steps: tqdm's rate is MB/s read
            return
        self._close_listing()
        if event == "plan":  # listing a large source takes a while: say what it found
            print(f"mose-shards: planned {done} videos into {total} shards", file=sys.stderr)
            return
        if self.bar is None:
            self.bar = self._bar(
                total, self.desc, unit=self.unit, unit_scale=True
            )  # 8.8Mframe/s, not 8753330.09
        self.bar.n = done
        self.bar.refresh()

    def _bar(self, total: int, desc: str, **options: Any) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, **options)

    def _close_listing(self) -> None:
        if self.listing is not None:
            self.listing.close()
            self.listing, self.listed = None, ""

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_listing()
        if self.bar is not None:
            self.bar.close()
