"""Mask PNGs as id maps: decoding and the ids present (Pillow and numpy only, for every stage)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

DEFAULT_VOID_LABEL = 255
_MASK_MODES = ("P", "L")

# A 1x1 grayscale PNG whose only pixel is 255 (the DAVIS void label): the `.png` member of a frame that
# has no annotation, so that every sample of every shard has the same members (README, "Members").
# Its size can never match a real frame, so no consumer can mistake it for a mask.
PLACEHOLDER_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b550000000a49444154789c63f80f00"
    "01010100b138f6140000000049454e44ae426082"
)


def decode_mask(data: bytes) -> np.ndarray:
    """Decode a palette or grayscale PNG into its HxW uint8 id map; ValueError for other modes."""
    with Image.open(io.BytesIO(data)) as img:
        if img.mode not in _MASK_MODES:
            raise ValueError(
                f"mask is a {img.mode} image; expected a palette (P) or grayscale (L) PNG of object ids"
            )
        return np.asarray(img)


def object_ids(ids: np.ndarray, void_label: int | None) -> list[int]:
    """Ids present in an id map: every non-zero value except the void label."""
    counts = np.bincount(ids.ravel(), minlength=256)
    counts[0] = 0
    if void_label is not None:
        counts[void_label] = 0
    return [int(i) for i in np.flatnonzero(counts)]
