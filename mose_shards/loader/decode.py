"""Member bytes -> arrays: RGB frames and object-id masks (None for a frame without a mask), at full
size or at a training size given by the shorter side.

Frames decode with libjpeg-turbo through simplejpeg when it is installed (the same library and
settings as Pillow's decoder: identical pixels, checked on real footage in the tests), else Pillow.
With `short_side`, a JPEG is decoded at the smallest DCT scale (n/8) that still covers the target,
then resized bilinearly to it; a mask is resized nearest-neighbour, straight from its inflated rows
(pngids.py). Masks decode through pngids.py's fast path, else Pillow (`decode_mask`).
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from PIL import Image

from ..core.errors import ConfigError
from ..core.images import check_pixels, open_image
from ..core.maskpng import decode_mask
from .pngids import decode_ids

try:  # optional: libjpeg-turbo without Pillow's per-image overhead and extra copy
    _simplejpeg: Any = importlib.import_module("simplejpeg")
except ImportError:  # pragma: no cover - depends on the environment
    _simplejpeg = None

Size = tuple[int, int]  # (width, height), as Pillow has it


def check_short_side(short_side: int | None) -> int | None:
    """A valid `short_side` option (None or a positive int); ConfigError otherwise."""
    if short_side is not None and (isinstance(short_side, bool) or not isinstance(short_side, int)
                                   or short_side < 1):  # fmt: skip
        raise ConfigError(f"short_side must be a positive number of pixels or None, got {short_side!r}")
    return short_side


def target_size(width: int, height: int, short_side: int | None) -> Size:
    """(width, height) whose shorter side is exactly `short_side`, aspect ratio kept (rounded)."""
    if short_side is None:
        return width, height
    if width <= height:
        return short_side, max(1, round(height * short_side / width))
    return max(1, round(width * short_side / height)), short_side


def _jpeg_size(data: bytes) -> Size | None:
    if _simplejpeg is None or not _simplejpeg.is_jpeg(data):
        return None
    try:
        height, width, _, _ = _simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    return int(width), int(height)


def _fast_jpeg(data: bytes, short_side: int | None) -> np.ndarray | None:
    """simplejpeg's decode (at a DCT scale when reducing), or None where it cannot (CMYK, not a JPEG)."""
    size = _jpeg_size(data)
    if size is None:
        return None
    assert _simplejpeg is not None
    target = target_size(*size, short_side)
    try:
        if target[0] < size[0] and target[1] < size[1]:  # the smallest n/8 scale still >= target
            image = _simplejpeg.decode_jpeg(data, "RGB", min_width=target[0], min_height=target[1])
        else:
            image = _simplejpeg.decode_jpeg(data, "RGB")
    except ValueError:
        return None
    return _resize_rgb(image, target)


def _torch_interpolate() -> Any:
    """torch's interpolate when torch is installed (imported on first use), else None."""
    global _interpolate
    if _interpolate is None:
        try:
            from torch.nn.functional import interpolate
        except ImportError:
            _interpolate = False
        else:
            _interpolate = interpolate
    return _interpolate or None


_interpolate: Any = None


def _resize_rgb(image: np.ndarray, target: Size) -> np.ndarray:
    """Bilinear (antialiased) resize of HxWx3 uint8. torch's uint8 kernel when torch is there (about
    10x faster than Pillow's, within 1 of it per channel), else Pillow."""
    if (image.shape[1], image.shape[0]) == target:
        return image
    interpolate = _torch_interpolate()
    if interpolate is None:
        return np.asarray(Image.fromarray(image).resize(target, Image.Resampling.BILINEAR))
    import torch

    with warnings.catch_warnings():  # Pillow's arrays are read-only; torch only reads this one
        warnings.simplefilter("ignore", UserWarning)
        nchw = torch.from_numpy(image).unsqueeze(0).permute(0, 3, 1, 2)  # channels-last strides, no copy
    out = interpolate(nchw, size=(target[1], target[0]), mode="bilinear", antialias=True, align_corners=False)
    resized: np.ndarray = out.permute(0, 2, 3, 1)[0].numpy()
    return resized


def _pil_image(data: bytes, short_side: int | None) -> np.ndarray:
    with open_image(data) as img:
        target = target_size(*img.size, short_side)
        if short_side is not None and img.format == "JPEG":
            img.draft("RGB", target)  # DCT-domain downscale to the smallest scale >= target
        rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))  # convert() would copy
        return _resize_rgb(rgb, target)


def decode_image(data: bytes, short_side: int | None = None) -> np.ndarray:
    """A JPEG (or any image Pillow reads) -> HxWx3 uint8; with `short_side`, resized so that its
    shorter side is exactly that many pixels (DCT-scaled decode, then bilinear). ValueError (one
    line) for bytes no decoder reads, and above the default pixel cap (core/images.py)."""
    check_pixels(data)
    fast = _fast_jpeg(data, short_side)
    return fast if fast is not None else _pil_image(data, short_side)


def decode_frame_mask(data: bytes, has_mask: bool, short_side: int | None = None) -> np.ndarray | None:
    """The `.png` member -> HxW uint8 ids (nearest-resized with `short_side`), or None for the
    placeholder of an unannotated frame."""
    if not has_mask:
        return None
    check_pixels(data)  # before the fast path inflates height x width bytes
    target = None if short_side is None else (lambda w, h: target_size(w, h, short_side))
    fast = decode_ids(data, target)
    if fast is not None:
        return fast
    full = decode_mask(data)
    if target is None:
        return full
    size = target(full.shape[1], full.shape[0])
    if size == (full.shape[1], full.shape[0]):
        return full
    return np.asarray(Image.fromarray(full).resize(size, Image.Resampling.NEAREST))


def keep_objects(
    mask: np.ndarray, keep: Sequence[int], void_label: int | None, present: Collection[int] | None = None
) -> np.ndarray:
    """Zero every object not in `keep`; background and void pixels stay as they are. With `present`
    (the frame's objects, from the tables), a mask holding no other object is returned untouched."""
    if present is not None and set(present) <= set(keep):
        return mask
    table = np.zeros(256, np.uint8)
    kept = [*keep, *([void_label] if void_label is not None else [])]
    table[kept] = kept
    # bytes.translate is a byte lookup table in C, 2-5x faster than numpy's fancy indexing; the
    # bytearray keeps the result writable, as masks always were
    filtered = bytearray(mask.tobytes().translate(table.tobytes()))
    return np.frombuffer(filtered, np.uint8).reshape(mask.shape)
