"""The loader against SeaweedFS: stream back what convert wrote to s3://, over ranks, with resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mose_shards import ClipDataset, read_frame
from tests.s3server import S3Server
from tests.test_loader import source_arrays

pytestmark = pytest.mark.s3


def test_whole_videos_over_two_ranks_cover_each_once(
    s3_converted: str, s3_server: S3Server, raw_tree: Path
) -> None:
    """Two ranks, whole-video mode, from S3: every video exactly once, images and masks equal the source."""
    opts = s3_server.storage_options()
    seen: list[str] = []
    for rank in range(2):
        ds = ClipDataset(
            s3_converted, split="train", clip_length=None, rank=rank, world_size=2, storage_options=opts
        )
        for item in ds:
            seen.append(item["video_id"])
            assert not item["padding"]
            for name, image, mask in zip(item["frame_names"], item["images"], item["masks"], strict=True):
                src_image, src_mask = source_arrays(raw_tree, "train", item["video_id"], name)
                assert np.array_equal(image, src_image) and np.array_equal(mask, src_mask)
    assert sorted(seen) == sorted(p.name for p in (raw_tree / "train/JPEGImages").iterdir())


def test_clip_contract_from_s3(s3_converted: str, s3_server: S3Server) -> None:
    """Clips streamed from S3 hold the contract: length, steps, first frame with kept objects."""
    ds = ClipDataset(
        s3_converted, clip_length=5, max_skip=3, max_objects=1, storage_options=s3_server.storage_options()
    )
    items = list(ds)
    assert len(items) == 4
    for item in items:
        idx = item["frame_indices"]
        assert len(idx) == 5 and all(1 <= b - a <= 3 for a, b in zip(idx, idx[1:], strict=False))
        assert len(item["object_ids"]) == 1
        assert item["object_ids"][0] in np.unique(item["masks"][0])
        assert all(set(np.unique(m).tolist()) <= {0, 255, item["object_ids"][0]} for m in item["masks"])


def test_resume_from_s3_is_exact(s3_converted: str, s3_server: S3Server) -> None:
    """Resuming from a state_dict taken mid-epoch yields exactly the items the full run yields next."""
    opts = s3_server.storage_options()
    make = lambda: ClipDataset(s3_converted, clip_length=3, clips_per_video=3, seed=9, storage_options=opts)  # noqa: E731
    key = lambda i: (i["video_id"], tuple(i["frame_indices"]), tuple(i["object_ids"]))  # noqa: E731
    expected = [key(i) for i in make()]
    first = make()
    it = iter(first)
    head = [key(next(it)) for _ in range(5)]
    resumed = make()
    resumed.load_state_dict(first.state_dict())
    assert head + [key(i) for i in resumed] == expected


def test_read_frame_from_s3(s3_converted: str, s3_server: S3Server, raw_tree: Path) -> None:
    """read_frame fetches one frame and mask from S3 by range read; equal to the source."""
    video = sorted(p.name for p in (raw_tree / "train/JPEGImages").iterdir())[1]
    got = read_frame(s3_converted, video, 6, split="train", storage_options=s3_server.storage_options())
    image, mask = source_arrays(raw_tree, "train", video, got["frame_name"])
    assert np.array_equal(got["image"], image) and np.array_equal(got["mask"], mask)


def test_loader_uses_aws_variables(
    s3_converted: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With only the AWS_* variables set, ClipDataset reads from the server."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    ds = ClipDataset(
        s3_converted, split="valid", clip_length=None, storage_options={"skip_instance_cache": True}
    )
    assert len(list(ds)) == 4


def test_s3_client_made_once_per_process_and_workers_reuse_its_session(
    s3_converted: str, s3_server: S3Server
) -> None:
    """The dataset connects its shard reader when made; another process (here: a pretended fork)
    makes its own client on the parent's session; a ClipLoader's workers yield what one process does."""
    torch = pytest.importorskip("torch")  # noqa: F841 - ClipLoader needs it
    from mose_shards.loader import ClipLoader

    opts = s3_server.storage_options()
    ds = ClipDataset(s3_converted, clip_length=3, storage_options=opts, batch_size=2)
    assert ds._readers is not None
    pid, reader, (store,) = ds._readers
    assert ds.reader() is reader and store.fs.session is not None
    ds._readers = (-1, reader, [store])  # as a forked worker sees it
    child = ds.reader()
    assert child is not reader and child.store.fs is not store.fs  # type: ignore[attr-defined]
    assert child.store.storage_options["session"] is store.fs.session  # type: ignore[attr-defined]
    ds._readers = None
    expected = [(b["video_id"], b["images"].numpy().tobytes()) for b in ClipLoader(ds)]
    got = [(b["video_id"], b["images"].numpy().tobytes()) for b in ClipLoader(ds, num_workers=2)]
    assert got == expected and len(expected) == 2


def test_workers_first_clips_are_read_by_the_main_process_once(
    s3_converted: str, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ClipLoader workers on S3, each worker's first video is read by the main process before
    the workers start, and by no one else: the same batches, the same shard GETs in all (counted at
    a proxy in front of SeaweedFS), of which the main process sent one per worker."""
    pytest.importorskip("torch")
    import s3fs

    from mose_shards.loader import ClipLoader
    from tests.faulty_proxy import faulty_proxy

    here: list[str] = []  # shard GETs sent by this process (a forked worker appends to its own copy)
    original = s3fs.S3FileSystem._call_s3

    async def counted(self, method, *args, **kwargs):  # type: ignore[no-untyped-def]
        if str(kwargs.get("Key", "")).endswith(".tar"):
            here.append(kwargs["Key"])
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_call_s3", counted)
    runs = []
    for primed in (True, False):
        if not primed:
            monkeypatch.setattr(ClipDataset, "prime", lambda self, workers: None)
        with faulty_proxy(s3_server.ports["s3"], match=b".tar") as proxy:
            opts = {**s3_server.storage_options(), "endpoint_url": proxy.endpoint()}
            ds = ClipDataset(s3_converted, clip_length=3, storage_options=opts, seed=3)
            here.clear()
            batches = [(b["video_id"], b["images"].numpy().tobytes()) for b in ClipLoader(ds, num_workers=2)]
            runs.append((batches, proxy.requests, len(here)))
    (primed_batches, primed_gets, from_main), (plain_batches, plain_gets, plain_main) = runs
    assert primed_batches == plain_batches and len(primed_batches) == 4
    assert primed_gets == plain_gets == 4  # one per video, nothing read twice
    assert (from_main, plain_main) == (2, 0)
