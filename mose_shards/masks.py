"""Mask PNGs -> object ids, areas, boxes and COCO RLE (pycocotools)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

DEFAULT_VOID_LABEL = 255
_MASK_MODES = ("P", "L")

# A 1x1 grayscale PNG whose only pixel is 255 (the DAVIS void label): the `.png` member of a frame that
# has no annotation, so that every sample of every shard has the same members (README, "Members").
# Its size can never match a real frame, so no consumer can mistake it for a mask.
PLACEHOLDER_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108000000003a7e9b550000000a49444154789c63f80f00"
    "01010100b138f6140000000049454e44ae426082"
)


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


def analyze(data: bytes, void_label: int | None = DEFAULT_VOID_LABEL) -> MaskInfo:
    """Object ids, areas, boxes and RLEs of one mask PNG."""
    ids = decode_mask(data)
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
