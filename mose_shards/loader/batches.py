"""Batches handed from DataLoader workers to the training process without per-batch page churn.

A 1080p batch of one 8-frame clip is 66 MB of pixels. torch sends a worker's tensors to the main
process as shared-memory files: a fresh file per tensor is zeroed and faulted in page by page by the
worker, then freed page by page by the main process when the batch is dropped. At 1080p that costs
about as much CPU as a third of the decoding, and the main process's share of it is taken from the
workers when they fill both cores.

`collate_batch` in a worker therefore stacks a batch straight into one shared-memory block (images,
masks and mask_valid are views of it: one file, one copy, one descriptor passed). Under a
`ClipLoader` the blocks are also recycled: each worker keeps a few (`WorkerBlocks`), and the
loader's main side (`HeldBlocks`) marks a block free again once no tensor of the batch it carried is
referenced any more, so the pages stay mapped in both processes and are written again in place.

A block starts with a small header: the magic `BLOCK_MAGIC`, then a state byte (`FREE`: the
worker may reuse it; `BUSY`: being filled, in flight or in the training process's hands). Only the
worker that made a block moves it to BUSY, and only the main side moves it back to FREE, after it has
received the batch and every tensor on it is gone; so a block is never written while read. A
block that never comes back (its batch dropped by DataLoader when a pass is abandoned) stays BUSY:
past `limit` blocks a worker makes fresh unrecycled ones, as collate_clips does in a plain DataLoader.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

HEADER = 64  # bytes before the first tensor of a block (keeps the tensors 64-byte aligned)
BLOCK_MAGIC = b"MOSEBLK1"
STATE = len(BLOCK_MAGIC)  # offset of the state byte
FREE, BUSY = 0, 1
ALIGN = 1 << 20  # blocks are made in whole MiB, so that a slightly larger batch still fits


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _in_worker() -> bool:
    try:
        from torch.utils.data import get_worker_info
    except ImportError:
        return False
    return get_worker_info() is not None


class WorkerBlocks:
    """One worker process's recyclable shared-memory blocks (at most `limit`)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.blocks: list[tuple[Any, np.ndarray]] = []  # (UntypedStorage, uint8 view of all of it)

    def take(self, nbytes: int) -> tuple[Any, np.ndarray]:
        """A block of at least HEADER + nbytes bytes in state BUSY: a free one, a new one while under
        the limit, else a fresh unrecycled one (no magic: the main side leaves it alone)."""
        need = HEADER + nbytes
        for storage, view in self.blocks:
            if view[STATE] == FREE and view.size >= need:
                view[STATE] = BUSY
                return storage, view
        recycled = len(self.blocks) < self.limit
        storage, view = _shared(-(-need // ALIGN) * ALIGN if recycled else need)
        if recycled:
            view[: len(BLOCK_MAGIC)] = np.frombuffer(BLOCK_MAGIC, np.uint8)
            view[STATE] = BUSY
            self.blocks.append((storage, view))
        return storage, view


_POOLS: dict[tuple[int, int], WorkerBlocks] = {}  # (process id, limit) -> that worker's blocks


def worker_blocks(limit: int) -> WorkerBlocks:
    """This process's blocks (a forked worker never sees its parent's)."""
    key = (os.getpid(), limit)
    if key not in _POOLS:
        _POOLS.clear()  # entries inherited through fork belong to another process
        _POOLS[key] = WorkerBlocks(limit)
    return _POOLS[key]


def _shared(nbytes: int) -> tuple[Any, np.ndarray]:
    torch = _torch()
    storage = torch.UntypedStorage._new_shared(nbytes)
    return storage, _tensor(storage, 0, (nbytes,)).numpy()


def _tensor(storage: Any, offset: int, shape: Sequence[int]) -> Any:
    torch = _torch()
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return torch.empty(0, dtype=torch.uint8).set_(storage, offset, tuple(shape), tuple(reversed(strides)))


class HeldBlocks:
    """The main side of recycled blocks: the ones whose batch the loader has handed out, freed for
    their worker once nothing references them."""

    def __init__(self) -> None:
        self.known: dict[int, Any] = {}  # data_ptr -> the block's storage (kept mapped)
        self.held: set[int] = set()

    def receive(self, batch: Any) -> None:
        images = batch.get("images") if isinstance(batch, dict) else None
        torch = _torch()
        if torch is None or not isinstance(images, torch.Tensor):
            return
        storage = images.untyped_storage()
        if not storage.is_shared() or storage.nbytes() < HEADER or storage.device.type != "cpu":
            return
        if bytes(storage[i] for i in range(len(BLOCK_MAGIC))) != BLOCK_MAGIC:
            return
        key = storage.data_ptr()
        self.known.setdefault(key, storage)
        self.held.add(key)

    def release(self) -> None:
        """Mark FREE every handed-out block that only this object still references."""
        torch = _torch()
        for key in list(self.held):
            storage = self.known[key]
            if torch._C._storage_Use_Count(storage._cdata) == 1:
                storage[STATE] = FREE
                self.held.discard(key)

    def clear(self) -> None:
        self.known.clear()
        self.held.clear()


def collate_batch(items: Sequence[dict[str, Any]], limit: int | None = None) -> dict[str, Any]:
    """collate_clips' batch. Clips of one shape are stacked once, straight into their batch arrays:
    in a DataLoader worker into one shared-memory block (recycled among `limit` per worker when
    given), else into numpy arrays (torch tensors when torch is installed)."""
    out: dict[str, Any] = {k: [it[k] for it in items] for k in items[0] if k not in ("images", "masks")}
    shapes = {(a.shape, a.dtype.str) for it in items for a in it["images"]}
    lengths = {len(it["images"]) for it in items}
    if len(shapes) != 1 or len(lengths) != 1 or next(iter(shapes))[1] != "|u1":
        out.update(  # clips of different shapes: per clip arrays, as lists
            images=[np.stack(it["images"]) for it in items],
            masks=[
                np.stack([_filled(m, i) for m, i in zip(it["masks"], it["images"], strict=True)])
                for it in items
            ],
            mask_valid=[np.array([m is not None for m in it["masks"]], dtype=bool) for it in items],
        )
        return out
    shape = (len(items), lengths.pop(), *next(iter(shapes))[0])
    torch = _torch()
    if torch is not None and _in_worker():
        images, masks, valid = _block_views(shape, limit)
        pixels, ids, flags = images.numpy(), masks.numpy(), valid.numpy()
        valid = valid.view(torch.bool)
    else:
        pixels, ids, flags = (
            np.empty(shape, np.uint8),
            np.empty(shape[:4], np.uint8),
            np.empty(shape[:2], bool),
        )
        images, masks, valid = (_as_tensor(a) for a in (pixels, ids, flags))
    for b, item in enumerate(items):
        for t, (image, mask) in enumerate(zip(item["images"], item["masks"], strict=True)):
            pixels[b, t] = image
            ids[b, t] = 0 if mask is None else mask
            flags[b, t] = mask is not None
    out.update(images=images, masks=masks, mask_valid=valid)
    return out


def _block_views(shape: tuple[int, ...], limit: int | None) -> tuple[Any, Any, Any]:
    """images [B, T, H, W, C], masks [B, T, H, W] and mask_valid [B, T] (uint8) as views of one
    shared-memory block."""
    sizes = [int(np.prod(shape)), int(np.prod(shape[:4])), int(np.prod(shape[:2]))]
    if limit:
        storage, _ = worker_blocks(limit).take(sum(sizes))
    else:
        storage, _ = _shared(HEADER + sum(sizes))
    images = _tensor(storage, HEADER, shape)
    masks = _tensor(storage, HEADER + sizes[0], shape[:4])
    valid = _tensor(storage, HEADER + sizes[0] + sizes[1], shape[:2])
    return images, masks, valid


def _filled(mask: np.ndarray | None, image: np.ndarray) -> np.ndarray:
    return mask if mask is not None else np.zeros(image.shape[:2], np.uint8)


def _as_tensor(array: np.ndarray) -> Any:
    torch = _torch()
    return array if torch is None else torch.from_numpy(array)


class RecycledCollate:
    """ClipLoader's collate: collate_batch with up to `limit` recycled blocks per worker (picklable,
    for spawned workers)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate_batch(items, self.limit)
