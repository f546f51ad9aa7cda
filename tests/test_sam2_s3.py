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

from mose_shards.core.errors import ConfigError  # noqa: E402
from mose_shards.loader import random_access  # noqa: E402
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


def _ranges(calls: list[tuple[str, str, str | None]]) -> list[tuple[int, int]]:
    """The byte ranges [start, end] of ranged GETs of shards; every call must be one."""
    out = []
    for operation, key, byte_range in calls:
        assert operation == "get_object" and key.endswith(".tar") and byte_range is not None
        found = re.fullmatch(r"bytes=(\d+)-(\d+)", byte_range)
        assert found is not None
        out.append((int(found.group(1)), int(found.group(2))))
    return out


def _span(entry: object, positions: list[int]) -> tuple[int, int]:
    """[first byte, last byte] of the given frames' members."""
    members = entry.members[positions]  # type: ignore[attr-defined]
    starts, ends = members[:, 0::2], members[:, 0::2] + members[:, 1::2]
    return int(starts.min()), int(ends.max()) - 1


@pytest.mark.parametrize("num_frames", [1, 4, 8])
def test_a_clip_costs_at_most_two_ranged_gets(
    s3_converted: str, s3_server: S3Server, s3_calls: list, num_frames: int
) -> None:
    """SAM 2's sampling of a T-frame clip, counted at the real s3fs client against SeaweedFS: at most
    2 GETs (1 once the window size is learned), each a range inside the clip's video, never a shard,
    no byte fetched twice; the frames the clip did not use are dropped, at most 2 windows held."""
    ds = ShardRawDataset(s3_converted, storage_options=s3_server.storage_options())
    reader = random_access.shared_reader(s3_converted, s3_server.storage_options())
    index = reader.index("train")
    rng = random.Random(num_frames)
    per_clip = []
    for idx in list(range(len(ds))) * 2:
        reader.ahead.clear()  # no clip served by another's GETs
        calls_before = len(s3_calls)
        video, loader = ds.get_video(idx)
        clip = sample_clip(video, loader, num_frames, 3, rng)
        ranges = _ranges(s3_calls[calls_before:])
        assert len(clip["images"]) == num_frames and clip["object_ids"]
        per_clip.append(len(ranges))
        entry = index.video(index.position(video.video_name))
        first, last = _span(entry, list(range(entry.num_frames)))
        for start, end in ranges:
            assert first <= start <= end <= last
        ordered = sorted(ranges)
        assert all(b[0] > a[1] for a, b in zip(ordered, ordered[1:], strict=False))  # no byte twice
        positions = [f.frame_idx for f in video.frames].index
        for number in clip["frame_idx"]:  # each frame of the clip came in one of them
            used = _span(entry, [positions(number)])
            assert any(s <= used[0] and used[1] <= e for s, e in ranges)
        assert reader.ahead.held() <= 2
    assert max(per_clip) <= 2 and per_clip[-len(ds) :] == [1] * len(ds)


def test_read_clip_is_one_ranged_get(s3_converted: str, s3_server: S3Server, s3_calls: list) -> None:
    """FrameReader.read_clip of 8 frames (every frame, then every other one of a video): one GET each."""
    reader = random_access.FrameReader(s3_converted, s3_server.storage_options())
    index = reader.index("train")
    video = index.video(0)
    for frames in (list(range(8)), [0, 2, 4, 6]):
        before = len(s3_calls)
        got = reader.read_clip(video.video_id, frames, split="train")
        assert [g["frame_index"] for g in got] == frames
        (only,) = _ranges(s3_calls[before:])
        assert only == _span(video, frames)
        alone = [reader.read(video.video_id, f, split="train") for f in frames]
        for a, b in zip(got, alone, strict=True):
            assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["mask"], b["mask"])


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


def test_list_files_on_the_outputs_store_use_its_client(
    s3_converted: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A video list beside the output on S3 is read with the output's own client: no client is made
    for it (one made and dropped would need a full collection before DataLoader workers fork)."""
    import s3fs

    options = s3_server.storage_options()  # skip_instance_cache: every S3FileSystem() is a new client
    all_videos = ShardRawDataset(s3_converted, storage_options=options).video_names
    fs = s3fs.S3FileSystem(**options)
    listed, excluded = f"{s3_converted}/lists/train.txt", f"{s3_converted}/lists/excluded.txt"
    fs.pipe_file(listed, "".join(f"{v}.mp4\n" for v in all_videos[:3]).encode())
    fs.pipe_file(excluded, f"{all_videos[0]}\n".encode())
    made: list[object] = []
    original = s3fs.S3FileSystem.__init__

    def counted(self: object, *args: object, **kwargs: object) -> None:
        made.append(self)
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(s3fs.S3FileSystem, "__init__", counted)
    ds = ShardRawDataset(s3_converted, storage_options=options, file_list_txt=listed,
                         excluded_videos_list_txt=excluded)  # fmt: skip
    assert ds.video_names == all_videos[1:3]
    assert made == []
    with pytest.raises(ConfigError, match="video list not found"):
        ShardRawDataset(s3_converted, storage_options=options, file_list_txt=f"{s3_converted}/lists/none.txt")
