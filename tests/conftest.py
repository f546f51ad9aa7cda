"""Shared fixtures: tiny generated VOS trees, their conversions, and the real samples when present."""

from __future__ import annotations

from pathlib import Path

import pytest

from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.synth import SynthSpec, generate
from tests.s3server import s3_converted, s3_server, s3_server_b  # noqa: F401 - registers the SeaweedFS fixtures

REAL_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"

# Small enough to be quick, large enough that the 150 KB cap gives several shards per split.
SMALL = SynthSpec(videos=4, frames=8, size=(160, 120), seed=7)
SMALL_SHARD = 150_000


@pytest.fixture(scope="session")
def raw_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated raw tree with train (every frame annotated) and valid (first frame only)."""
    return generate(tmp_path_factory.mktemp("raw"), spec=SMALL)


@pytest.fixture(scope="session")
def converted(raw_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The conversion of raw_tree (read-only for tests: copy it before changing anything)."""
    out = tmp_path_factory.mktemp("converted") / "out"
    convert(ConvertConfig(source=str(raw_tree), output=str(out), shard_size=SMALL_SHARD))
    return out


@pytest.fixture(scope="session")
def real_data() -> Path:
    """../shared/data/real (two real DAVIS-style sequences); the test is skipped where it is absent."""
    if not (REAL_DATA / "valid" / "JPEGImages").is_dir():
        pytest.skip(f"real VOS samples not found at {REAL_DATA}")
    return REAL_DATA
