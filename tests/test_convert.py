"""Round trips of `convert` on generated trees: every frame once, bytes and masks unchanged."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from mose_shards.conversion.config import ConvertConfig, from_pipeline
from mose_shards.conversion.orchestrate import convert
from mose_shards.core.errors import ProblemsError
from mose_shards.core.layout import unescape_video_id
from mose_shards.synth import SynthSpec, generate
from tests.conftest import SMALL_SHARD
from tests.helpers import all_samples, davis_tree, decode_ids, expected_objects, raw_frames, table, tree_bytes


@pytest.mark.parametrize("split", ["train", "valid"])
def test_every_source_frame_appears_once_with_identical_bytes(
    raw_tree: Path, converted: Path, split: str
) -> None:
    """Each JPEG and mask of the source is one sample, bytes unchanged; the rest get the placeholder."""
    source = raw_frames(raw_tree / split)
    samples = all_samples(converted, split)
    seen = {}
    for key, members in samples:
        assert sorted(members) == ["jpg", "json", "png"]
        meta = json.loads(members["json"])
        assert key == f"{meta['video_id']}/{meta['frame_name']}"  # generated ids have no dots
        ident = (meta["video_id"], meta["frame_name"])
        assert ident not in seen, f"{ident} twice"
        seen[ident] = members
    assert set(seen) == set(source)
    for ident, (jpg, png) in source.items():
        assert seen[ident]["jpg"] == jpg
        meta = json.loads(seen[ident]["json"])
        assert meta["has_mask"] is (png is not None)
        if png is not None:
            assert seen[ident]["png"] == png
        else:
            assert decode_ids(seen[ident]["png"]).shape == (1, 1)


def test_videos_are_contiguous_ordered_and_never_span_shards(converted: Path) -> None:
    """A video's frames are consecutive in one shard, in frame order."""
    manifest = json.loads((converted / "manifest.json").read_text())
    for split, entry in manifest["splits"].items():
        owner: dict[str, str] = {}
        for shard in entry["shards"]:
            previous = None
            for _key, members in all_samples_of(converted, shard["path"]):
                meta = json.loads(members["json"])
                video = meta["video_id"]
                assert owner.setdefault(video, shard["path"]) == shard["path"], f"{video} spans shards"
                if previous and previous[0] == video:
                    assert meta["frame_index"] == previous[1] + 1
                else:
                    assert meta["frame_index"] == 0
                previous = (video, meta["frame_index"])
        assert len(owner) == entry["videos"], split


def all_samples_of(out: Path, rel: str) -> list[tuple[str, dict[str, bytes]]]:
    from tests.helpers import shard_samples

    return shard_samples(out / rel)


def test_mask_rows_match_an_independent_computation(raw_tree: Path, converted: Path) -> None:
    """area, bbox and RLE of every object equal values computed with numpy from the PNGs."""
    rows = table(converted, "masks", "train")
    by_frame: dict[tuple[str, str], dict[int, dict]] = {}
    for row in rows:
        by_frame.setdefault((row["video_id"], row["frame_name"]), {})[row["object_id"]] = row
    checked = 0
    for (video, frame), (_, png) in raw_frames(raw_tree / "train").items():
        assert png is not None
        expected = expected_objects(png)
        got = by_frame.get((video, frame), {})
        assert set(got) == set(expected), (video, frame)
        for object_id, (area, box, binary) in expected.items():
            row = got[object_id]
            assert row["area"] == area
            assert row["bbox"] == box
            assert (row["height"], row["width"]) == binary.shape
            rle = {"size": [row["height"], row["width"]], "counts": row["rle"].encode()}
            assert np.array_equal(coco_mask.decode(rle).astype(bool), binary)
            checked += 1
    assert checked > 20


def test_frames_table_offsets_point_at_the_members(converted: Path) -> None:
    """jpg/png/json offsets and sizes in the frames table address the member bytes inside the tar."""
    for row in table(converted, "frames"):
        with open(converted / row["shard"], "rb") as fh:
            for ext in ("jpg", "png", "json"):
                fh.seek(row[f"{ext}_offset"])
                data = fh.read(row[f"{ext}_size"])
                if ext == "json":
                    assert json.loads(data)["frame_name"] == row["frame_name"]
                elif ext == "jpg":
                    assert data[:2] == b"\xff\xd8"
                else:
                    assert data[:4] == b"\x89PNG"


def test_objects_table_tracks_presence(converted: Path) -> None:
    """objects rows agree with the masks rows: first/last frame, visible count, disappearance."""
    masks = table(converted, "masks", "train")
    frames = table(converted, "frames", "train")
    annotated: dict[str, list[int]] = {}
    for f in frames:
        if f["has_mask"]:
            annotated.setdefault(f["video_id"], []).append(f["frame_index"])
    seen: dict[tuple[str, int], set[int]] = {}
    for m in masks:
        seen.setdefault((m["video_id"], m["object_id"]), set()).add(m["frame_index"])
    objects = {(o["video_id"], o["object_id"]): o for o in table(converted, "objects", "train")}
    assert set(objects) == set(seen)
    for key, frames_seen in seen.items():
        row = objects[key]
        assert row["first_frame_index"] == min(frames_seen)
        assert row["last_frame_index"] == max(frames_seen)
        assert row["num_visible_frames"] == len(frames_seen)
        after = [i for i in annotated[key[0]] if i >= min(frames_seen)]
        gaps = [i for i in after if i not in frames_seen]
        assert row["disappears"] == bool(gaps)
        assert row["reappears"] == any(g < max(frames_seen) for g in gaps)
    assert any(o["reappears"] for o in objects.values()), "the generator makes objects come back"


def test_shards_respect_the_size_cap(converted: Path) -> None:
    """Every shard holding more than one video stays under --shard-size."""
    manifest = json.loads((converted / "manifest.json").read_text())
    shards = [s for e in manifest["splits"].values() for s in e["shards"]]
    assert len(shards) > 2
    for shard in shards:
        assert shard["bytes"] == (converted / shard["path"]).stat().st_size
        if shard["videos"] > 1:
            assert shard["bytes"] <= SMALL_SHARD


def test_same_input_gives_identical_bytes(raw_tree: Path, converted: Path, tmp_path: Path) -> None:
    """A second conversion writes byte-identical shards, tables and manifest."""
    again = tmp_path / "again"
    convert(ConvertConfig(source=str(raw_tree), output=str(again), shard_size=SMALL_SHARD))
    assert tree_bytes(again) == tree_bytes(converted)


def test_tar_form_equals_folder_form(raw_tree: Path, converted: Path, tmp_path: Path) -> None:
    """Converting train.tar + valid.tar (the shipped form) gives the same shards and tables."""
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for split in ("train", "valid"):
        with tarfile.open(shipped / f"{split}.tar", "w") as archive:
            archive.add(raw_tree / split, arcname=split)
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(shipped), output=str(out), shard_size=SMALL_SHARD))
    got, want = tree_bytes(out), tree_bytes(converted)
    del got["manifest.json"], want["manifest.json"]  # the manifest names its source
    assert got == want


def test_single_tar_without_split_folder_takes_its_name(raw_tree: Path, tmp_path: Path) -> None:
    """A tar holding JPEGImages/ at its top is one split named after the archive."""
    archive_path = tmp_path / "valid.tar"
    with tarfile.open(archive_path, "w") as archive:
        for sub in ("JPEGImages", "Annotations"):
            archive.add(raw_tree / "valid" / sub, arcname=sub)
    out = tmp_path / "out"
    result = convert(ConvertConfig(source=str(archive_path), output=str(out)))
    assert list(result.manifest["splits"]) == ["valid"]
    assert result.frames == len(raw_frames(raw_tree / "valid"))


def test_output_to_memory_url(raw_tree: Path, converted: Path) -> None:
    """Output to an fsspec memory:// URL holds the same bytes as the local output."""
    import fsspec

    url = "memory://mose-shards-test/out"
    convert(ConvertConfig(source=str(raw_tree), output=url, shard_size=SMALL_SHARD))
    fs = fsspec.filesystem("memory")
    local = tree_bytes(converted)
    assert local, "fixture output is empty"
    for rel, data in local.items():
        assert fs.cat_file(f"/mose-shards-test/out/{rel}") == data, rel
    fs.rm("/mose-shards-test", recursive=True)


def test_dotted_video_ids_are_escaped_in_keys_only(tmp_path: Path) -> None:
    """A video id with dots keeps its name in tables and .json; its key escapes the dot."""
    raw = generate(tmp_path / "raw", spec=SynthSpec(videos=2, frames=3, size=(64, 48), splits=("train",)))
    video = next((raw / "train" / "JPEGImages").iterdir()).name
    for sub in ("JPEGImages", "Annotations"):
        (raw / "train" / sub / video).rename(raw / "train" / sub / f"clip.v1.{video}")
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(raw / "train"), output=str(out)))
    keys = [key for key, _ in all_samples(out, "train")]
    dotted = [k for k in keys if "%2E" in k]
    assert len(dotted) == 3 and all("." not in k for k in keys)
    assert unescape_video_id(dotted[0].split("/")[0]) == f"clip.v1.{video}"
    ids = {r["video_id"] for r in table(out, "videos")}
    assert f"clip.v1.{video}" in ids


def test_void_label_none_keeps_255_as_an_object(tmp_path: Path) -> None:
    """With void_label=None, 255 pixels are an object; by default they are ignored."""
    raw = generate(tmp_path / "raw", spec=SynthSpec(videos=1, frames=2, size=(64, 48), splits=("train",),
                                                   void_border=True))  # fmt: skip
    with_void = tmp_path / "void"
    without = tmp_path / "novoid"
    convert(ConvertConfig(source=str(raw), output=str(with_void)))
    convert(ConvertConfig(source=str(raw), output=str(without), void_label=None))
    assert 255 not in {r["object_id"] for r in table(with_void, "masks")}
    assert 255 in {r["object_id"] for r in table(without, "masks")}


def test_grayscale_masks_are_accepted(raw_tree: Path, tmp_path: Path) -> None:
    """L-mode (grayscale) mask PNGs convert like palette ones."""
    from PIL import Image

    tree = tmp_path / "valid"
    shutil.copytree(raw_tree / "valid", tree)
    for png in (tree / "Annotations").glob("*/*.png"):
        Image.fromarray(np.asarray(Image.open(png))).convert("L").save(png)
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(tree), output=str(out)))
    assert len(table(out, "masks")) > 0


def test_youtube_vos_layout_sparse_masks_and_categories(tmp_path: Path) -> None:
    """Every-5th naming, sparse valid masks and meta.json categories flow into the tables."""
    spec = SynthSpec(videos=2, frames=10, size=(64, 48), splits=("train", "valid"), frame_step=5,
                     categories=True, annotation={"train": "all", "valid": "sparse"})  # fmt: skip
    raw = generate(tmp_path / "raw", spec=spec)
    out = tmp_path / "out"
    convert(from_pipeline("youtube-vos", str(raw), str(out)))
    frames = table(out, "frames", "train")
    assert [f["frame_name"] for f in frames[:3]] == ["00000", "00005", "00010"]
    assert [f["frame_index"] for f in frames[:3]] == [0, 1, 2]
    meta = json.loads((raw / "train" / "meta.json").read_text())
    for row in table(out, "objects"):
        if row["split"] == "train":
            assert (
                row["category"]
                == meta["videos"][row["video_id"]]["objects"][str(row["object_id"])]["category"]
            )
    valid = table(out, "frames", "valid")
    assert 1 < sum(f["has_mask"] for f in valid) < len(valid)


def test_eight_digit_names_start_past_zero(tmp_path: Path) -> None:
    """MOSEv2-style 00002058.jpg names: numeric order, 0-based frame_index."""
    spec = SynthSpec(videos=1, frames=4, size=(64, 48), splits=("train",), frame_name_start=2058,
                     frame_name_digits=8)  # fmt: skip
    raw = generate(tmp_path / "raw", spec=spec)
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(raw), output=str(out)))
    frames = table(out, "frames")
    assert [f["frame_name"] for f in frames] == ["00002058", "00002059", "00002060", "00002061"]
    assert [f["frame_index"] for f in frames] == [0, 1, 2, 3]


def test_davis_layout_and_split_lists(tmp_path: Path) -> None:
    """davis-2017 reads JPEGImages/480p/<video>/ and splits videos by ImageSets/2017/<split>.txt."""
    davis, videos = davis_tree(tmp_path)
    out = tmp_path / "out"
    result = convert(from_pipeline("davis-2017", str(davis), str(out)))
    assert result.frames == 9
    assert result.manifest["options"]["pipeline"] == "davis-2017"
    by_split = {s: sorted(r["video_id"] for r in table(out, "videos", s)) for s in ("train", "val")}
    assert by_split == {"train": videos[:2], "val": videos[2:]}
    (davis / "ImageSets" / "2017" / "val.txt").write_text("ghost\n")
    with pytest.raises(ProblemsError, match="ghost"):
        convert(from_pipeline("davis-2017", str(davis), str(tmp_path / "out2")))


def test_davis_tree_without_its_pipeline_is_a_clear_error(tmp_path: Path) -> None:
    """A nested 480p tree without --pipeline davis-2017 names a file and suggests the pipeline."""
    raw = generate(tmp_path / "raw", spec=SynthSpec(videos=1, frames=2, size=(64, 48), splits=("train",)))
    davis = tmp_path / "DAVIS"
    (davis / "JPEGImages").mkdir(parents=True)
    shutil.copytree(raw / "train" / "JPEGImages", davis / "JPEGImages" / "480p")
    with pytest.raises(ProblemsError, match="davis-2017") as info:
        convert(ConvertConfig(source=str(davis), output=str(tmp_path / "out")))
    assert "480p" in info.value.problems[0]
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_test_split_without_masks(tmp_path: Path) -> None:
    """A split with no Annotations at all converts; every frame carries the placeholder."""
    raw = generate(tmp_path / "raw", spec=SynthSpec(videos=2, frames=3, size=(64, 48), splits=("test",)))
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(raw), output=str(out)))
    frames = table(out, "frames")
    assert len(frames) == 6 and not any(f["has_mask"] for f in frames)
    assert table(out, "masks") == []


def test_video_ids_roundtrip_unescape() -> None:
    """unescape_video_id reverses the key escaping, % included."""
    from mose_shards.core.layout import sample_key

    for video in ("plain", "a.b", "100%.x", "%2E"):
        key = sample_key(video, "00000")
        assert "." not in key
        assert unescape_video_id(key.split("/")[0]) == video
