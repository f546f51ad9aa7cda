"""Where an epoch stands: the epoch and the global position a pass starts at, shared with DataLoader
workers, and the small resumable state built from them.

DataLoader workers hold a copy of the dataset made when they started; with `persistent_workers=True`
they keep it for the whole run, so an attribute set on the parent's dataset (`set_epoch`) never
reaches them. The two numbers live in shared memory instead (a torch tensor moved to shared memory
when torch is there, passed to workers by fork or spawn alike), read by each worker at the start of
every pass.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..core.errors import ConfigError

EPOCH, START = 0, 1


class SharedPosition:
    """(epoch, start) readable by every DataLoader worker started from the object that holds it."""

    def __init__(self) -> None:
        try:
            import torch
        except ImportError:  # no torch, no worker processes: a plain array does
            self._values: Any = np.zeros(2, np.int64)
        else:
            self._values = torch.zeros(2, dtype=torch.int64).share_memory_()

    def get(self) -> tuple[int, int]:
        return int(self._values[EPOCH]), int(self._values[START])

    def set(self, epoch: int, start: int) -> None:
        self._values[EPOCH] = int(epoch)
        self._values[START] = int(start)


def check_state(state: dict[str, Any], seed: int) -> tuple[int, int]:
    """(epoch, items_seen) of a state dict, refused when it belongs to another seed or is malformed."""
    try:
        epoch, seen, their_seed = int(state["epoch"]), int(state["items_seen"]), int(state["seed"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"not a ClipDataset/ClipLoader state dict ({type(exc).__name__}: {exc})") from None
    if their_seed != seed:
        raise ConfigError(f"the state dict was saved with seed={their_seed}, this dataset has seed={seed}")
    if epoch < 0 or seen < 0:
        raise ConfigError(f"the state dict has a negative epoch or position: {state}")
    return epoch, seen
