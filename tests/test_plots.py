"""PNG charts: written, open as PNGs, and the presence timeline agrees with the source masks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from mose_shards.analytics import plots
from mose_shards.analytics.stats import read_table
from mose_shards.cli import main
from mose_shards.core.errors import ConfigError, MissingDependencyError
from mose_shards.core.manifest import read

pytest.importorskip("matplotlib")
CHARTS = ("objects-per-video", "object-areas", "presence")


def test_write_plots_every_split(converted: Path, tmp_path: Path) -> None:
    """Three charts per split, each a real PNG of a sensible size, nothing else left behind."""
    written = plots.write_plots(str(converted), tmp_path / "charts")
    want = {f"{s}-{c}.png" for s in ("train", "valid") for c in CHARTS}
    assert {p.name for p in written} == want == {p.name for p in (tmp_path / "charts").iterdir()}
    for path in written:
        with Image.open(path) as img:
            assert img.format == "PNG" and min(img.size) >= 300
            # Not a blank canvas: a chart has many colours.
            assert len(np.unique(np.asarray(img.convert("RGB")).reshape(-1, 3), axis=0)) > 10


def test_presence_matrix_by_hand() -> None:
    """Visible, absent and no-mask cells from hand-made tables, padded past a short video."""
    frames = pa.table(
        {
            "video_id": ["a", "a", "a", "a", "b"],
            "frame_index": [0, 1, 2, 3, 0],
            "has_mask": [True, True, True, False, True],
        }
    )
    masks = pa.table(
        {"video_id": ["a", "a", "a", "a", "b"], "frame_index": [0, 0, 2, 2, 0], "object_id": [1, 2, 2, 3, 7]}
    )
    labels, matrix = plots.presence_matrix(frames, masks)
    v, a, n = plots.VISIBLE, plots.ABSENT, plots.NO_MASK
    assert labels == ["a/1", "a/2", "a/3", "b/7"]
    assert matrix.tolist() == [[v, a, a, n], [v, a, v, n], [a, a, v, n], [v, n, n, n]]


def test_presence_matches_source_pngs(converted: Path, raw_tree: Path) -> None:
    """Every VISIBLE cell of the train timeline is a frame whose PNG shows that object, and back."""
    store, doc = read(str(converted))
    frames = read_table(store, doc, "train", "frames", ["video_id", "frame_index", "has_mask"])
    masks = read_table(store, doc, "train", "masks", ["video_id", "frame_index", "object_id"])
    labels, matrix = plots.presence_matrix(frames, masks)
    seen = set()
    for video_dir in (raw_tree / "train" / "Annotations").iterdir():
        for index, png in enumerate(sorted(video_dir.glob("*.png"), key=lambda p: int(p.stem))):
            for oid in np.unique(np.asarray(Image.open(png))):
                if oid not in (0, 255):
                    seen.add((video_dir.name, int(oid), index))
    cells = {
        (label.rpartition("/")[0], int(label.rpartition("/")[2]), int(i))
        for label, row in zip(labels, matrix, strict=True)
        for i in np.flatnonzero(row == plots.VISIBLE)
    }
    assert cells == seen


def test_cli_plot(converted: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`stats --plot DIR --split valid` prints the statistics and writes the valid charts."""
    assert main(["stats", str(converted), "--split", "valid", "--plot", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "mBOR" in captured.out and "wrote 3 charts" in captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"valid-{c}.png" for c in CHARTS)


def test_unknown_split(converted: Path, tmp_path: Path) -> None:
    """An unknown split is a ConfigError and no chart is written."""
    with pytest.raises(ConfigError, match="nope"):
        plots.write_plots(str(converted), tmp_path / "charts", splits=["nope"])
    assert not (tmp_path / "charts").exists()


def test_missing_matplotlib(converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without matplotlib the error carries the install hint."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingDependencyError, match=r"mose-shards\[plot\]"):
        plots.write_plots(str(converted), tmp_path)
