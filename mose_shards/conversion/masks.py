"""Mask PNGs -> object ids, areas, boxes and COCO RLE (pycocotools)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as coco_mask

from ..core.images import DEFAULT_MAX_PIXELS
from ..core.maskpng import DEFAULT_VOID_LABEL, PLACEHOLDER_PNG, decode_mask, object_ids

__all__ = ["DEFAULT_VOID_LABEL", "PLACEHOLDER_PNG", "MaskInfo", "ObjectMask", "analyze", "decode_rle"]


@dataclass(frozen=True)
class ObjectMask:
    """One visible object of one mask."""

    object_id: int
    area: int
    bbox: tuple[int, int, int, int]  # COCO x, y, w, h
    rle: str  # COCO compressed counts


@dataclass(frozen=True)
class MaskInfo:
    width: int
    height: int
    objects: tuple[ObjectMask, ...]


def analyze(
    data: bytes, void_label: int | None = DEFAULT_VOID_LABEL, max_pixels: int = DEFAULT_MAX_PIXELS
) -> MaskInfo:
    """Object ids, areas, boxes and RLEs of one mask PNG (ValueError above `max_pixels` pixels)."""
    ids = decode_mask(data, max_pixels)
    height, width = ids.shape
    objects = []
    present = object_ids(ids, void_label)
    if present:
        # pycocotools wants column-major masks: transpose the id map once, compare per object.
        fortran = np.asfortranarray(ids)
        for object_id in present:
            binary = (fortran == object_id).view(np.uint8)[:, :, None]
            rle = coco_mask.encode(binary)[0]
            x, y, w, h = (int(v) for v in coco_mask.toBbox(rle))
            objects.append(
                ObjectMask(object_id, int(coco_mask.area(rle)), (x, y, w, h), rle["counts"].decode("ascii"))
            )
    return MaskInfo(width=width, height=height, objects=tuple(objects))


def decode_rle(rle: str, height: int, width: int) -> np.ndarray:
    """The HxW 0/1 mask of a COCO compressed RLE string."""
    decoded: np.ndarray = coco_mask.decode({"size": [height, width], "counts": rle.encode("ascii")})
    return decoded
