"""ClipLoader and ClipDataset inside real torch DataLoaders: worker processes (fork and spawn),
persistent workers across epochs, equal steps per rank, and torchdata's StatefulDataLoader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from mose_shards import ClipDataset
from mose_shards.core.errors import ConfigError

pytestmark = pytest.mark.torch
torch = pytest.importorskip("torch")

Key = tuple[str, int, bool, tuple[int, ...]]


def keys(batch: dict[str, Any]) -> list[Key]:
    """(video, clip, padding, frame positions) per item: the positions differ between epochs."""
    frames = [tuple(f) for f in batch["frame_indices"]]
    return list(zip(batch["video_id"], batch["clip"], batch["padding"], frames, strict=True))


def run(loader: Any) -> list[list[Key]]:
    return [keys(b) for b in loader]


def dataset(converted: Path, **kwargs: Any) -> ClipDataset:
    options = {"clip_length": 3, "clips_per_video": 3, "seed": 2, **kwargs}
    return ClipDataset(str(converted), **options)


@pytest.mark.parametrize(("world", "batch", "workers"), [(3, 2, 2), (2, 3, 3), (4, 1, 2), (1, 5, 2)])
def test_ranks_take_equal_steps_and_share_every_clip_once(
    converted: Path, world: int, batch: int, workers: int
) -> None:
    """Real workers: every rank yields len(loader) batches of `batch`; each clip once over the ranks;
    the global batches equal those of one process with the same global batch."""
    from mose_shards.loader import ClipLoader

    per_rank = []
    for rank in range(world):
        ds = dataset(converted, rank=rank, world_size=world, batch_size=batch)
        loader = ClipLoader(ds, num_workers=workers)
        batches = run(loader)
        assert len(batches) == len(loader) and all(len(b) == batch for b in batches)
        per_rank.append(batches)
    regular = [k[:2] for r in per_rank for b in r for k in b if not k[2]]
    assert sorted(regular) == sorted({(k[0], k[1]) for k in regular}) and len(regular) == 12
    single = run(ClipLoader(dataset(converted, batch_size=world * batch), num_workers=0))
    steps = zip(*per_rank, strict=True)
    assert [[k for part in step for k in part] for step in steps] == single


@pytest.mark.slow
@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_persistent_workers_see_each_epoch(converted: Path, start_method: str) -> None:
    """persistent_workers=True over 3 epochs: each epoch's `epoch` field and order are its own."""
    from mose_shards.loader import ClipLoader

    expected = {}
    for epoch in range(3):
        fresh = ClipLoader(dataset(converted, batch_size=2))
        fresh.set_epoch(epoch)
        expected[epoch] = run(fresh)
    assert expected[0] != expected[1] and expected[1] != expected[2] and expected[0] != expected[2]
    loader = ClipLoader(
        dataset(converted, batch_size=2), num_workers=2, persistent_workers=True,
        multiprocessing_context=start_method,
    )  # fmt: skip
    for epoch in range(3):
        loader.set_epoch(epoch)
        batches = list(loader)
        assert {e for b in batches for e in b["epoch"]} == {epoch}
        assert [keys(b) for b in batches] == expected[epoch]


@pytest.mark.filterwarnings("ignore:.set_vital. is deprecated:UserWarning")
def test_stateful_dataloader_resumes_on_the_same_topology(converted: Path) -> None:
    """torchdata's StatefulDataLoader (2 workers) saved after 3 batches continues exactly."""
    tdl = pytest.importorskip("torchdata.stateful_dataloader")
    from mose_shards.loader import collate_clips

    def make() -> Any:
        ds = dataset(converted, batch_size=2)
        return tdl.StatefulDataLoader(ds, batch_size=ds.batch_size, num_workers=2, collate_fn=collate_clips)

    expected = run(make())
    first = make()
    head = []
    for batch in first:
        head.append(keys(batch))
        if len(head) == 3:
            break
    state = first.state_dict()
    resumed = make()
    resumed.load_state_dict(state)
    assert head + run(resumed) == expected


def test_dataset_state_mid_batch_and_its_limits(converted: Path) -> None:
    """Without workers a state after 3 items (batch 2) resumes exactly on the same global batch,
    and is refused on another one."""
    full = [(i["video_id"], i["clip"]) for i in dataset(converted, batch_size=2)]
    ds = dataset(converted, batch_size=2)
    it = iter(ds)
    head = [(i["video_id"], i["clip"]) for i in (next(it), next(it), next(it))]
    state = ds.state_dict()
    assert (state["items_seen"], state["skip"]) == (2, 1)
    again = dataset(converted, batch_size=2)
    again.load_state_dict(state)
    assert head + [(i["video_id"], i["clip"]) for i in again] == full
    with pytest.raises(ConfigError, match="global batch"):
        dataset(converted, batch_size=3).load_state_dict(state)
    with pytest.raises(ConfigError, match="seed"):
        dataset(converted, seed=9).load_state_dict(state)


def _pixels(batch: dict[str, Any]) -> list[tuple[str, bytes, bytes, bytes]]:
    return [(v, batch["images"][i].numpy().tobytes(), batch["masks"][i].numpy().tobytes(),
             batch["mask_valid"][i].numpy().tobytes()) for i, v in enumerate(batch["video_id"])]  # fmt: skip


def test_batches_from_workers_are_recycled_without_touching_held_ones(converted: Path) -> None:
    """ClipLoader with 2 workers: the same pixels as without workers; batches the loop dropped come
    back in the same shared-memory blocks, while batches the loop keeps are never written again."""
    from mose_shards.loader import ClipLoader
    from mose_shards.loader.batches import BLOCK_MAGIC, HEADER

    def loader(workers: int) -> Any:
        return ClipLoader(dataset(converted, batch_size=2, clips_per_video=6), num_workers=workers)

    expected = [p for b in loader(0) for p in _pixels(b)]
    assert len(expected) == 24
    seen, blocks = [], set()
    for batch in loader(2):  # each batch dropped after use
        storage = batch["images"].untyped_storage()
        assert storage.is_shared() and bytes(storage[i] for i in range(len(BLOCK_MAGIC))) == BLOCK_MAGIC
        assert batch["images"].storage_offset() == HEADER and batch["mask_valid"].dtype == torch.bool
        blocks.add(storage.data_ptr())
        seen += _pixels(batch)
    assert seen == expected
    assert len(blocks) < 12  # 12 batches in fewer blocks: they were reused
    kept = list(loader(2))  # every batch held at once: none is overwritten
    assert [p for b in kept for p in _pixels(b)] == expected
    assert len({b["images"].untyped_storage().data_ptr() for b in kept}) == 12


@pytest.mark.filterwarnings("ignore:'pin_memory' argument is set as true:UserWarning")
def test_pinned_and_plain_dataloader_batches_hold_the_same_pixels(converted: Path) -> None:
    """collate_clips in a plain DataLoader's workers (one fresh shared block per batch, nothing
    recycled) and ClipLoader with pin_memory give the pixels of the in-process loader."""
    from torch.utils.data import DataLoader

    from mose_shards.loader import ClipLoader, collate_clips

    ds = dataset(converted, batch_size=3)
    expected = [p for b in ClipLoader(ds) for p in _pixels(b)]
    plain = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_clips)
    assert [p for b in plain for p in _pixels(b)] == expected
    pinned = ClipLoader(dataset(converted, batch_size=3), num_workers=2, pin_memory=True)
    assert [p for b in pinned for p in _pixels(b)] == expected


def test_collate_clips_of_one_shape_and_of_several() -> None:
    """One shape: [B, T, ...] tensors equal to the stacked items, a frame without mask all zero and
    invalid; different shapes: per-clip arrays in lists."""
    import numpy as np

    from mose_shards.loader import collate_clips

    rng = np.random.default_rng(0)

    def item(height: int, missing: int | None) -> dict[str, Any]:
        images = [rng.integers(0, 256, (height, 5, 3), dtype=np.uint8) for _ in range(3)]
        masks = [None if t == missing else rng.integers(0, 4, (height, 5), dtype=np.uint8) for t in range(3)]
        return {"video_id": f"v{height}{missing}", "images": images, "masks": masks}

    items = [item(4, None), item(4, 1)]
    batch = collate_clips(items)
    assert batch["video_id"] == ["v4None", "v41"] and batch["images"].shape == (2, 3, 4, 5, 3)
    assert np.array_equal(batch["images"].numpy(), np.stack([np.stack(i["images"]) for i in items]))
    assert batch["mask_valid"].tolist() == [[True, True, True], [True, False, True]]
    assert not batch["masks"][1, 1].any() and np.array_equal(
        batch["masks"][1, 2].numpy(), items[1]["masks"][2]
    )
    mixed = collate_clips([item(4, None), item(6, 0)])
    assert isinstance(mixed["images"], list) and [a.shape for a in mixed["images"]] == [
        (3, 4, 5, 3),
        (3, 6, 5, 3),
    ]
    assert mixed["mask_valid"][1].tolist() == [False, True, True] and not mixed["masks"][1][0].any()
