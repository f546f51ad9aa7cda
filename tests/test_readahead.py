"""Random access reads ahead: a frame's read brings the next ones, within budget, checked and retried;
one index per output and process for ClipDataset, FrameReader and the SAM 2 adapter."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mose_shards import ClipDataset
from mose_shards.core.errors import ConfigError, OutputError
from mose_shards.core.storage import Store
from mose_shards.loader import index as index_module
from mose_shards.loader.random_access import FrameReader, read_frame
from mose_shards.loader.retry import RetryPolicy
from mose_shards.loader.stream import Reader


@pytest.fixture()
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int, int]]:
    """Every range read of a shard, as (shard, start, size), at the loader's Reader."""
    seen: list[tuple[str, int, int]] = []
    original = Reader.read_range

    def counted(self: Reader, shard: Any, start: int, size: int) -> bytes:
        seen.append((shard.path, start, size))
        return original(self, shard, start, size)

    monkeypatch.setattr(Reader, "read_range", counted)
    return seen


def _bytes(entry: Any, positions: list[int]) -> tuple[int, int]:
    members = entry.members[positions]
    return int(members[:, 0::2].min()), int((members[:, 0::2] + members[:, 1::2]).max())


def test_a_frame_brings_the_next_ones_and_they_come_from_memory(converted: Path, reads: list) -> None:
    """Reading a video frame after frame: one read for all of its 8 frames, equal to read_clip's."""
    reader = FrameReader(str(converted))
    entry = reader.index("train").video(1)
    got = [reader.read(entry.video_id, f, split="train") for f in range(entry.num_frames)]
    assert len(reads) == 1 and (reads[0][1], reads[0][1] + reads[0][2]) == _bytes(entry, list(range(8)))
    clip = reader.read_clip(entry.video_id, range(entry.num_frames), split="train")
    assert len(reads) == 2
    for a, b in zip(got, clip, strict=True):
        assert a["frame_name"] == b["frame_name"] and np.array_equal(a["image"], b["image"])
        assert np.array_equal(a["mask"], b["mask"])


def test_the_window_is_learned_bounded_in_bytes_and_dropped(converted: Path, reads: list) -> None:
    """After 3-frame runs the windows hold 3 frames; a byte budget below two frames holds one;
    windows nobody reads are dropped (at most 2 held)."""
    reader = FrameReader(str(converted))
    index = reader.index("train")
    for video in range(len(index)):
        for f in range(3):
            reader.read(index.video(video).video_id, f, split="train")
    assert reader.ahead.held() == 2
    sizes = [size for _, _, size in reads]
    assert sizes[0] == np.subtract(*_bytes(index.video(0), list(range(8)))[::-1])  # nothing learned yet
    assert sizes[1:] == [np.subtract(*_bytes(index.video(v), [0, 1, 2])[::-1]) for v in range(1, len(index))]
    reads.clear()
    entry = index.video(0)
    one = np.subtract(*_bytes(entry, [0])[::-1])
    small = FrameReader(str(converted), read_ahead_bytes=int(one) + 1)
    small.read(entry.video_id, 0, split="train")
    assert [size for _, _, size in reads] == [one]
    reads.clear()
    read_frame(str(converted), entry.video_id, 0, split="train")
    assert [size for _, _, size in reads] == [one]  # a one-off read brings nothing along
    with pytest.raises(ConfigError, match="read_ahead must be an integer >= 1"):
        FrameReader(str(converted), read_ahead=0)


def test_sample_rate_windows_read_the_sampled_frames(converted: Path, reads: list) -> None:
    """A SAM 2 dataset with sample_rate=2: a 4-frame clip's frames (every other one) in one read."""
    pytest.importorskip("torch")
    pytest.importorskip("iopath")
    from mose_shards.sam2 import ShardRawDataset
    from tests.sam2_like import FirstFrames

    ds = ShardRawDataset(str(converted), sample_rate=2)
    ds._reader.ahead.reset()  # the process's shared reader may have learned shorter runs in other tests
    reads.clear()
    item = FirstFrames(ds, 4)[0]
    assert item["frame_idx"] == [0, 2, 4, 6] and len(reads) == 1
    entry = ds._index().video(ds._index().position(item["video_name"]))
    assert (reads[0][1], reads[0][1] + reads[0][2]) == _bytes(entry, [0, 2, 4, 6])


def test_read_ahead_bytes_are_retried_and_checked(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-ahead that fails once is retried; with verify, a changed byte in a frame read ahead
    (not the first of its window) fails naming the shard, the range and the sample."""
    out = tmp_path / "out"
    shutil.copytree(converted, out)
    reader = FrameReader(str(out), retry=RetryPolicy(attempts=2, backoff=0), verify=True)
    entry = reader.index("train").video(0)
    failures = [ConnectionResetError("reset by peer")]
    original = Store.read_range

    def flaky(self: Store, rel: str, start: int, size: int) -> bytes:
        if failures:
            raise failures.pop()
        return original(self, rel, start, size)

    monkeypatch.setattr(Store, "read_range", flaky)
    assert reader.read(entry.video_id, 0, split="train")["image"].shape[:2] == (120, 160)
    assert not failures
    jpg_at = int(entry.members[3, 0])
    shard = out / entry.shard.path
    data = bytearray(shard.read_bytes())
    data[jpg_at + 100] ^= 0xFF
    shard.write_bytes(bytes(data))
    fresh = FrameReader(str(out), verify=True)
    fresh.read(entry.video_id, 0, split="train")
    with pytest.raises(OutputError, match=r"\.tar bytes \[\d+, \d+\): sample .*\.jpg member does not match"):
        fresh.read(entry.video_id, 3, split="train")


def test_one_index_per_output_and_process(
    converted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ClipDataset, FrameReader and ShardRawDataset of one output read its frames table once."""
    out = tmp_path / "out"  # an output no other test has read in this process
    shutil.copytree(converted, out)
    loaded: list[str] = []
    original = index_module.load_index

    def counted(store: Any, doc: Any, split: str, verify: bool = False) -> Any:
        loaded.append(split)
        return original(store, doc, split, verify)

    monkeypatch.setattr(index_module, "load_index", counted)
    ds = ClipDataset(str(out), clip_length=2)
    reader = FrameReader(str(out))
    assert reader.index("train") is ds.index and loaded == ["train"]
    pytest.importorskip("iopath")
    pytest.importorskip("torch")
    from mose_shards.sam2 import ShardRawDataset

    assert ShardRawDataset(str(out))._index() is ds.index and loaded == ["train"]
    assert ClipDataset(str(out), clip_length=2, verify=True).index.digests is not None
    assert loaded == ["train", "train"]  # sha256 digests were not loaded the first time


def test_primed_first_videos_are_used_only_where_they_fit(converted: Path, reads: list) -> None:
    """prime reads each worker's first video once; a worker of that topology yields the same items
    without reading it again; another topology, or a later pass, reads for itself."""
    from mose_shards.loader.priming import claim

    def items_of(ds: ClipDataset, worker: int, workers: int) -> list[tuple[str, bytes]]:
        epoch, start, share, padding = ds.share(worker, workers)
        ready = claim(ds, worker, workers, epoch, start, share)
        got = ds._run(epoch, share, padding, main=False, ready=ready)
        return [(i["video_id"], b"".join(im.tobytes() for im in i["images"])) for i in got]

    plain = ClipDataset(str(converted), clip_length=2, seed=5)
    expected = [items_of(plain, w, 2) for w in range(2)]
    reads.clear()
    ds = ClipDataset(str(converted), clip_length=2, seed=5)
    ds.prime(2)
    primed = len(reads)
    assert primed == 2 and ds._primed is not None and sorted(ds._primed) == [0, 1]
    saved = dict(ds._primed)
    assert [items_of(ds, 0, 2)] == expected[:1] and len(reads) == primed + len(expected[0]) - 1
    other = items_of(plain, 0, 3)
    ds._primed = saved
    before = len(reads)
    assert items_of(ds, 0, 3) == other and ds._primed is None  # primed for 2 workers, not 3
    assert len(reads) - before == len(other)  # it read every video itself (one read each here)
