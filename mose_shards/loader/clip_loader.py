"""ClipLoader: the torch DataLoader around a ClipDataset, with its batch size, its collate function,
a true `len`, and a resumable state on any topology.

The dataset deals each rank's batches to the workers round-robin, in the order DataLoader takes
batches from them, so the loader yields exactly the rank's batches, in order. It counts the batches
it hands to the training loop: `state_dict()` is then the global item the run has reached, which a
loader on any world size, worker count or batch size can continue from.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import DataLoader

from ..core.errors import ConfigError
from .batches import HeldBlocks, RecycledCollate
from .dataset import ClipDataset, collate_clips
from .mixture import Source

# set from the dataset, so that every rank and worker agrees on the batches
FIXED = ("batch_size", "shuffle", "sampler", "batch_sampler", "collate_fn", "drop_last")


# recycled blocks per worker beyond prefetch_factor: the batch being filled, the one the training
# loop holds and the one it held before (dropped when the next arrives)
BLOCKS_BEYOND_PREFETCH = 3

DatasetSpec = str | os.PathLike[str] | Source | Sequence[str | os.PathLike[str] | Source]
DATASET_OPTIONS = frozenset(inspect.signature(ClipDataset.__init__).parameters) - {"self", "url"}


def _dataset_of(spec: Any, kwargs: dict[str, Any]) -> tuple[ClipDataset, dict[str, Any]]:
    """A URL, a Source or a list of them -> the ClipDataset made with the options that are its own
    (batch_size, clip_length, ...), and the remaining DataLoader options."""
    if not isinstance(spec, (str, os.PathLike, Source, list, tuple)):
        raise ConfigError(
            f"ClipLoader takes a ClipDataset, a URL, a Source or a list of them, got {type(spec).__name__}"
        )
    own = {k: v for k, v in kwargs.items() if k in DATASET_OPTIONS}
    return ClipDataset(spec, **own), {k: v for k, v in kwargs.items() if k not in DATASET_OPTIONS}


class ClipLoader(DataLoader):
    """`DataLoader(dataset, batch_size=dataset.batch_size, collate_fn=collate_clips, ...)`, resumable.

    `dataset` may also be what ClipDataset takes (a URL, a Source or a list of them): the options
    that are ClipDataset's (batch_size, clip_length, rank, ...) then make the dataset, the rest go to
    DataLoader."""

    def __init__(
        self, dataset: ClipDataset | DatasetSpec, num_workers: int = 0, **dataloader_kwargs: Any
    ) -> None:
        if not isinstance(dataset, ClipDataset):
            dataset, dataloader_kwargs = _dataset_of(dataset, dataloader_kwargs)
        fixed = sorted(set(dataloader_kwargs) & set(FIXED))
        if fixed:
            raise ConfigError(
                f"ClipLoader takes {', '.join(fixed)} from the dataset: pass batch_size= and drop_last= to "
                "ClipDataset (shuffling is ClipDataset's shuffle=, batching uses collate_clips)"
            )
        # Batches from workers travel in shared-memory blocks that each worker reuses once the
        # training loop has dropped them (batches.py); pinned batches are copies, so not there.
        recycle = num_workers > 0 and not dataloader_kwargs.get("pin_memory", False)
        prefetch = dataloader_kwargs.get("prefetch_factor") or 2
        collate = RecycledCollate(prefetch + BLOCKS_BEYOND_PREFETCH) if recycle else collate_clips
        super().__init__(dataset, batch_size=dataset.batch_size, num_workers=num_workers,
                         collate_fn=collate, **dataloader_kwargs)  # fmt: skip
        self._epoch, self._start = dataset._position.get()
        self._steps = 0
        self._blocks = HeldBlocks()

    def __len__(self) -> int:
        """Batches this rank yields in the pass that starts now (during a pass: in that pass)."""
        ds: ClipDataset = self.dataset  # type: ignore[assignment]
        return ds.schedule().steps

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        ds: ClipDataset = self.dataset  # type: ignore[assignment]
        self._epoch, self._start = ds._position.get()
        self._steps = 0
        starting = self.num_workers > 0 and (not self.persistent_workers or self._iterator is None)
        if starting and ds.remote:  # each worker's first clip read here, its client made meanwhile
            ds.prime(self.num_workers)
        try:
            batches = super().__iter__()  # the workers start, each with its copy of what was primed
            ds._primed = None
            for batch in batches:
                self._steps += 1
                self._blocks.release()  # blocks of batches the loop has dropped go back to their worker
                self._blocks.receive(batch)
                yield batch
                del batch
            ds._position.set(self._epoch, 0)  # the pass is over: the next one starts the epoch afresh
        finally:
            if not self.persistent_workers:  # the workers that reuse them are gone
                self._blocks.clear()

    def set_epoch(self, epoch: int) -> None:
        """The dataset's set_epoch (it reaches persistent workers)."""
        ds: ClipDataset = self.dataset  # type: ignore[assignment]
        ds.set_epoch(epoch)
        if epoch != self._epoch:
            self._steps = 0

    def state_dict(self) -> dict[str, Any]:
        """{epoch, seed, items_seen, global_batch}: the global items the batches handed out so far cover."""
        ds: ClipDataset = self.dataset  # type: ignore[assignment]
        epoch, start = (self._epoch, self._start) if self._steps else ds._position.get()
        return {"epoch": epoch, "seed": ds.seed, "items_seen": start + self._steps * ds.global_batch,
                "global_batch": ds.global_batch}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the epoch of `state` from global item `items_seen`, on this loader's topology."""
        ds: ClipDataset = self.dataset  # type: ignore[assignment]
        ds.load_state_dict({**state, "skip": 0})
        self._epoch, self._start = ds._position.get()
        self._steps = 0
