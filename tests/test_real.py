"""Real DAVIS-style sequences from ../shared/data/real: a round trip, and its real defect refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from mose_shards.cli import main
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from tests.helpers import all_samples, expected_objects, raw_frames, table


def test_real_defect_is_refused_naming_the_file(real_data: Path, tmp_path: Path, capsys) -> None:
    """judo/00005.png is 853x480 beside 854x480 frames: a one-line error naming it, no manifest."""
    out = tmp_path / "out"
    code = main(["convert", str(real_data / "valid"), str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("mose-shards: error:")]
    assert len(lines) == 1
    assert "judo/00005.png" in lines[0] and "853x480" in lines[0] and "854x480" in lines[0]
    assert "Traceback" not in err
    assert not (out / "manifest.json").exists()


@pytest.fixture()
def repaired(real_data: Path, tmp_path: Path) -> Path:
    """A copy of the real valid split without the defective mask (judo keeps masks 0, 8, 13)."""
    tree = tmp_path / "valid"
    shutil.copytree(real_data / "valid", tree)
    (tree / "Annotations" / "judo" / "00005.png").unlink()
    return tree


def test_real_round_trip(repaired: Path, tmp_path: Path) -> None:
    """Real frames and sparse masks come back byte-identical, with independent area/bbox/RLE."""
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(repaired), output=str(out)))
    source = raw_frames(repaired)
    samples = {tuple(json.loads(m["json"])[k] for k in ("video_id", "frame_name")): m
               for _, m in all_samples(out, "valid")}  # fmt: skip
    assert set(samples) == set(source) and len(source) == 20
    masks = {(r["video_id"], r["frame_name"], r["object_id"]): r for r in table(out, "masks")}
    checked = 0
    for ident, (jpg, png) in source.items():
        assert samples[ident]["jpg"] == jpg
        if png is None:
            continue
        assert samples[ident]["png"] == png
        for object_id, (area, box, binary) in expected_objects(png).items():
            row = masks[(*ident, object_id)]
            assert (row["area"], row["bbox"]) == (area, box)
            decoded = coco_mask.decode({"size": [row["height"], row["width"]], "counts": row["rle"].encode()})
            assert np.array_equal(decoded.astype(bool), binary)
            checked += 1
    assert checked >= 5
    videos = {v["video_id"]: v for v in table(out, "videos")}
    assert (videos["judo"]["width"], videos["judo"]["height"]) == (854, 480)
    assert videos["judo"]["num_annotated_frames"] == 3 and videos["bike"]["num_frames"] == 4
