"""The exceptions mose-shards raises for a user's mistake or broken input.

Each carries a one-line message that names the file and what is wrong; the CLI prints that line and
exits non-zero, never a traceback. They subclass stdlib bases so callers can also catch them as such.
"""

from __future__ import annotations

from typing import Any

from .urls import redact


class MoseShardsError(Exception):
    """Base of every error mose-shards raises on purpose; URL credentials in its message are masked."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class LayoutError(MoseShardsError, ValueError):
    """The source is not a VOS tree we understand (no JPEGImages/, unknown form)."""


class DataError(MoseShardsError, ValueError):
    """A file of the source is broken or inconsistent (bad JPEG, mask size, frame names)."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across worker processes
        return (type(self), (self.path, self.problem))


class ConfigError(MoseShardsError, ValueError):
    """Options that do not make sense (unknown pipeline, bad size, conflicting rerun)."""


class OutputError(MoseShardsError, OSError):
    """The output cannot be read or written (missing manifest, damaged shard)."""


class MissingMaskError(MoseShardsError, LookupError):
    """A mask was asked for a frame that has none (or a frame the video does not have)."""


class MissingDependencyError(MoseShardsError, ImportError):
    """An optional dependency is not installed; the message carries the install hint."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(f"{package} is not installed: pip install 'mose-shards[{extra}]'")
        self.package = package
        self.extra = extra

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.package, self.extra))


class ProblemsError(MoseShardsError, ValueError):
    """Several problems found at once: one line each, file first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = [redact(p) for p in problems]
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the source:"
        super().__init__("\n".join([head, *self.problems]))

    def __reduce__(self) -> tuple[type, tuple[list[str]]]:
        return (type(self), (self.problems,))
