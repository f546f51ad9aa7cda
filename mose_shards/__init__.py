"""mose-shards: VOS datasets (MOSE, DAVIS, YouTube-VOS) as WebDataset shards + Parquet, streamed.

The public API. Names are imported on first use, so `import mose_shards` stays light (no pyarrow,
no torch) until something is needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .core.version import __version__

_EXPORTS = {
    "ConvertConfig": "conversion.config",
    "from_pipeline": "conversion.config",
    "convert": "conversion.orchestrate",
    "ConvertResult": "conversion.orchestrate",
    "Layout": "conversion.sources",
    "discover": "conversion.sources",
    "SynthSpec": "synth",
    "generate": "synth",
    "ClipDataset": "loader",
    "read_frame": "loader",
    "MoseShardsError": "core.errors",
    "LayoutError": "core.errors",
    "DataError": "core.errors",
    "ConfigError": "core.errors",
    "OutputError": "core.errors",
    "ProblemsError": "core.errors",
    "MissingDependencyError": "core.errors",
    "evaluate": "analytics.evaluate",
    "Evaluator": "analytics.evaluate",
}

__all__ = [  # the keys of _EXPORTS, spelled out for linters and IDEs (a test keeps them equal)
    "__version__", "ConvertConfig", "from_pipeline", "convert", "ConvertResult", "Layout", "discover",
    "SynthSpec", "generate", "ClipDataset", "read_frame", "MoseShardsError", "LayoutError", "DataError",
    "ConfigError", "OutputError", "ProblemsError", "MissingDependencyError", "evaluate", "Evaluator",
]  # fmt: skip

if TYPE_CHECKING:
    from .analytics.evaluate import Evaluator, evaluate
    from .conversion.config import ConvertConfig, from_pipeline
    from .conversion.orchestrate import ConvertResult, convert
    from .conversion.sources import Layout, discover
    from .core.errors import (
        ConfigError,
        DataError,
        LayoutError,
        MissingDependencyError,
        MoseShardsError,
        OutputError,
        ProblemsError,
    )
    from .loader import ClipDataset, read_frame
    from .synth import SynthSpec, generate


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mose_shards' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
