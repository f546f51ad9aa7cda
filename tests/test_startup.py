"""A loader's start costs what it must: building an index does not import pandas (~0.3 s of every
process, DataLoader workers included, for Arrow's own `to_numpy`, `pa.array` and `pa.scalar`)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mose_shards.loader.index import arrow_numpy

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "values",
    [
        pa.array([3, 1, 2], pa.int32()),
        pa.array([3, 1, 2, 7, 9], pa.uint8()).slice(2, 2),  # an offset into the buffer
        pa.chunked_array([pa.array([1, 2], pa.int64()), pa.array([5], pa.int64())]),
        pa.array([True, False, True, True]).slice(1),
        pa.array([1, None, 3], pa.int16()),  # nulls: Arrow's own conversion
        pa.array(["a", "b", "a"]).dictionary_encode().indices,
    ],
)
def test_arrow_numpy_gives_arrows_values(values: pa.Array) -> None:
    expected = values.to_numpy(zero_copy_only=False)
    got = arrow_numpy(values)
    assert got.dtype == expected.dtype and len(got) == len(expected)
    assert np.array_equal(got, expected, equal_nan=True)


def test_loading_an_index_and_reading_a_clip_imports_no_pandas(converted: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        from mose_shards import ClipDataset
        from mose_shards.loader.random_access import FrameReader
        assert "pandas" not in sys.modules, "imported with the package"
        ds = ClipDataset({str(converted)!r}, clip_length=2, verify=True, short_side=32)
        next(iter(ds))
        FrameReader({str(converted)!r}).read_clip(ds.index.video_ids[0].as_py(), [0, 1])
        try:
            from mose_shards.sam2 import ShardRawDataset
        except ImportError:
            pass  # without the sam2 extra
        else:
            raw = ShardRawDataset({str(converted)!r}, short_side=32)
            video, segments = raw.get_video(0)
            segments.load(video.frames[0].frame_idx)
        print("pandas" in sys.modules)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False", "pandas was imported while loading an index"
