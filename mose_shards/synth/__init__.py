"""The generated demo data: deterministic MOSE-like raw trees (moving objects that occlude and return)."""

from .scenes import SynthSpec, generate, parse_size

__all__ = ["SynthSpec", "generate", "parse_size"]
