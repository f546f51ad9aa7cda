"""ShardRawDataset reading from SeaweedFS: GETs per clip counted, and DataLoader workers."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.s3server import S3Server

torch = pytest.importorskip("torch")
pytest.importorskip("iopath")

from mose_shards.loader import random_access  # noqa: E402
from mose_shards.loader.sam2 import RECENT  # noqa: E402
from mose_shards.sam2 import ShardRawDataset  # noqa: E402
from tests.sam2_like import FirstFrames, sample_clip  # noqa: E402

pytestmark = pytest.mark.s3


@pytest.fixture()
def s3_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str, str | None]]]:
    """Every S3 request this process makes, as (operation, key, Range header), at the client."""
    import s3fs

    calls: list[tuple[str, str, str | None]] = []
    original = s3fs.S3FileSystem._call_s3

    async def counted(self, method, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append((getattr(method, "__name__", str(method)), kwargs.get("Key", ""), kwargs.get("Range")))
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counted)
    yield calls


@pytest.mark.parametrize("num_frames", [1, 4, 8])
def test_a_clip_costs_one_ranged_get_per_frame(
    s3_converted: str, s3_server: S3Server, s3_calls: list, num_frames: int
) -> None:
    """SAM 2's sampling of a T-frame clip: at most T+1 GETs, each a range of one frame, never a shard."""
    ds = ShardRawDataset(s3_converted, storage_options=s3_server.storage_options())
    reader = random_access.shared_reader(s3_converted, s3_server.storage_options())
    frames = reader.frames("train")
    smallest_shard = min(s["bytes"] for s in reader.doc["splits"]["train"]["shards"])
    rng = random.Random(num_frames)
    for idx in range(len(ds)):
        RECENT.clear()
        calls_before = len(s3_calls)
        video, loader = ds.get_video(idx)
        clip = sample_clip(video, loader, num_frames, 3, rng)
        calls = s3_calls[calls_before:]
        assert len(clip["images"]) == num_frames and clip["object_ids"]
        assert 1 <= len(calls) <= num_frames + 1
        rows = frames.videos[video.video_name]
        spans = set()
        for number in clip["frame_idx"]:
            row = rows.start + [int(n) for n in frames.frame_names[rows.start : rows.stop]].index(number)
            jpg_at, jpg_size, png_at, png_size = (int(v) for v in frames.members[row, :4])
            spans.add((min(jpg_at, png_at), max(jpg_at + jpg_size, png_at + png_size) - 1))
        for operation, key, byte_range in calls:
            assert operation == "get_object" and key.endswith(".tar")
            start, end = (int(v) for v in re.fullmatch(r"bytes=(\d+)-(\d+)", byte_range).groups())
            assert (start, end) in spans and end - start < smallest_shard // 4
        assert len(calls) == len({c[2] for c in calls})  # no frame fetched twice


@pytest.mark.slow
def test_dataloader_with_two_spawned_workers(s3_converted: str, s3_server: S3Server, raw_tree: Path) -> None:
    """A map-style wrapper in a DataLoader with 2 spawned workers: each video once, equal to the source."""
    ds = ShardRawDataset(s3_converted, split="train", storage_options=s3_server.storage_options())
    loader = torch.utils.data.DataLoader(
        FirstFrames(ds, 3), batch_size=None, num_workers=2, multiprocessing_context="spawn"
    )
    items = list(loader)
    assert [i["video_name"] for i in items] == sorted(
        p.name for p in (raw_tree / "train/JPEGImages").iterdir()
    )
    for idx, item in enumerate(items):
        assert item["video_id"] == idx and item["frame_idx"] == [0, 1, 2]
        for number, image, masks in zip(item["frame_idx"], item["images"], item["masks"], strict=True):
            stem = raw_tree / "train" / "JPEGImages" / item["video_name"] / f"{number:05d}"
            assert np.array_equal(image, np.asarray(Image.open(f"{stem}.jpg").convert("RGB")))
            ids = np.asarray(Image.open(str(stem).replace("JPEGImages", "Annotations") + ".png"))
            assert sorted(masks) == sorted(int(i) for i in np.unique(ids) if i not in (0, 255))
            assert all(np.array_equal(m, ids == k) for k, m in masks.items())
