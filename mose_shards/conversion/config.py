"""The conversion options: one frozen dataclass built at the edge (CLI or pipeline file)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomllib

from ..core.errors import ConfigError
from ..core.images import DEFAULT_MAX_PIXELS
from ..core.maskpng import DEFAULT_VOID_LABEL
from ..core.sizes import parse_size
from .reader import DEFAULT_MAX_MEMBER_SIZE
from .sources import Layout

DEFAULT_SHARD_SIZE = 128 * 1000**2
ON_ERROR = ("strict", "skip")
LAYOUT_KEYS = ("images_dir", "masks_dir", "resolution", "meta_file", "split_lists")
EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class ConvertConfig:
    """Everything `convert` needs; only `void_label`, `shard_size` and the layout shape the bytes."""

    source: str
    output: str
    shard_size: int = DEFAULT_SHARD_SIZE
    void_label: int | None = DEFAULT_VOID_LABEL
    layout: Layout = field(default_factory=Layout)
    splits: tuple[str, ...] | None = None
    pipeline: str | None = None
    workers: int | None = 1  # None: every core, or every CPU of the Ray cluster
    executor: str = "local"
    ray_address: str | None = None
    on_error: str = "strict"
    overwrite: bool = False
    dataset_card: bool = False
    storage_options: dict[str, Any] = field(default_factory=dict)
    source_options: dict[str, Any] = field(default_factory=dict)
    output_options: dict[str, Any] = field(default_factory=dict)

    @property
    def source_storage(self) -> dict[str, Any]:
        """fsspec options for reading SRC: `storage_options`, then `source_options` on top (they win)."""
        return {**self.storage_options, **self.source_options}

    @property
    def output_storage(self) -> dict[str, Any]:
        """fsspec options for writing OUT: `storage_options`, then `output_options` on top (they win)."""
        return {**self.storage_options, **self.output_options}

    verify_source: bool = True  # check archives against SHA256SUMS / <file>.sha256 while reading
    max_member_size: int = DEFAULT_MAX_MEMBER_SIZE  # the largest source file read (docs/guide/security.md)
    max_pixels: int = DEFAULT_MAX_PIXELS  # per frame and mask, from the header, before decoding

    def __post_init__(self) -> None:
        if self.shard_size <= 0:
            raise ConfigError(f"--shard-size must be positive, got {self.shard_size}")
        if self.void_label is not None and not 0 < self.void_label < 256:
            raise ConfigError(f"--void-label must be 1..255 or 'none', got {self.void_label}")
        if self.on_error not in ON_ERROR:
            raise ConfigError(f"--on-error must be one of {', '.join(ON_ERROR)}, got {self.on_error!r}")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"--executor must be one of {', '.join(EXECUTORS)}, got {self.executor!r}")
        if self.max_member_size <= 0:
            raise ConfigError(f"--max-member-size must be positive, got {self.max_member_size}")
        if isinstance(self.max_pixels, bool) or not isinstance(self.max_pixels, int) or self.max_pixels < 1:
            raise ConfigError(f"--max-pixels must be a positive number of pixels, got {self.max_pixels!r}")
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")

    def byte_options(self) -> dict[str, Any]:
        """The options that decide the output bytes; a rerun must use the same ones."""
        return {
            "void_label": self.void_label,
            "shard_size": self.shard_size,
            "layout": [self.layout.images_dir, self.layout.masks_dir, self.layout.resolution]
            + ([self.layout.split_lists] if self.layout.split_lists else []),
            "splits": list(self.splits) if self.splits else None,
        }


def parse_void_label(text: str | int | None) -> int | None:
    if text is None or (isinstance(text, str) and text.lower() == "none"):
        return None
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"--void-label must be a number 1..255 or 'none', got {text!r}") from None


def pipelines_dir() -> Path:
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "pipelines", package.parent / "pipelines"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"pipelines/ not found next to {package}")


def pipeline_names() -> list[str]:
    return sorted(p.stem for p in pipelines_dir().glob("*.toml"))


def load_pipeline(name: str) -> dict[str, Any]:
    """The parsed pipeline file pipelines/<name>.toml; ConfigError listing the known names."""
    path = pipelines_dir() / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown pipeline {name!r}; known: {', '.join(pipeline_names())}")
    with path.open("rb") as fh:
        return tomllib.load(fh)


def from_pipeline(name: str | None, source: str, output: str, **overrides: Any) -> ConvertConfig:
    """A config from a pipeline's defaults, then the options the caller gave explicitly."""
    base = ConvertConfig(source=source, output=output)
    if name is not None:
        spec = load_pipeline(name)
        conv = spec.get("convert", {})
        lay = spec.get("layout", {})
        unknown = sorted(set(lay) - set(LAYOUT_KEYS))
        if unknown:
            raise ConfigError(f"pipelines/{name}.toml: unknown [layout] key(s) {', '.join(unknown)}")
        base = replace(
            base,
            pipeline=name,
            layout=Layout(**{k: v for k, v in lay.items() if k in LAYOUT_KEYS}),
            shard_size=parse_size(conv.get("shard_size", base.shard_size)),
            void_label=parse_void_label(conv.get("void_label", DEFAULT_VOID_LABEL)),
            splits=tuple(conv["splits"]) if conv.get("splits") else None,
            max_member_size=parse_size(conv.get("max_member_size", base.max_member_size)),
        )
    return replace(base, **overrides)
