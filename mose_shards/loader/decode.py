"""Member bytes -> arrays: RGB frames and object-id masks (None for a frame without a mask)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from ..core.maskpng import decode_mask


def decode_image(data: bytes) -> np.ndarray:
    """A JPEG -> HxWx3 uint8."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))  # convert() would copy


def decode_frame_mask(data: bytes, has_mask: bool) -> np.ndarray | None:
    """The `.png` member -> HxW uint8 ids, or None for the placeholder of an unannotated frame."""
    return decode_mask(data) if has_mask else None


def keep_objects(mask: np.ndarray, keep: Sequence[int], void_label: int | None) -> np.ndarray:
    """Zero every object not in `keep`; background and void pixels stay as they are."""
    table = np.zeros(256, np.uint8)  # a lookup table: one pass, no per-id comparisons
    kept = [*keep, *([void_label] if void_label is not None else [])]
    table[kept] = kept
    return table[mask]
