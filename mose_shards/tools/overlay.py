"""Masks drawn over frames: a fixed colour per object id (the DAVIS palette), outlines and id labels.

Pixels of no object are left exactly as the frame, void (255) is hatched in white so it cannot be
taken for an object or for background, and a frame without a mask carries a "no mask" banner. The
banner (frame name, "no mask", a score) sits in the top-left corner; labels sit inside their objects.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

VOID = 255
OPACITY = 0.5


def palette() -> np.ndarray:
    """The DAVIS / PASCAL VOC colour map, uint8 [256, 3]: id i is drawn in palette()[i]."""
    out = np.zeros((256, 3), np.uint8)
    for index in range(256):
        c = index
        for bit in range(8):
            for channel in range(3):
                out[index, channel] |= ((c >> channel) & 1) << (7 - bit)
            c >>= 3
    return out


PALETTE = palette()


def blend(pixels: np.ndarray, colour: np.ndarray, opacity: float = OPACITY) -> np.ndarray:
    """pixels (uint8 [..., 3]) tinted with colour: the formula every overlay pixel follows."""
    mixed = (1.0 - opacity) * pixels.astype(np.float32) + opacity * colour.astype(np.float32)
    return np.rint(mixed).astype(np.uint8)


def _edges(sel: np.ndarray) -> np.ndarray:
    """Pixels of sel with a 4-neighbour outside it (the outline)."""
    inner = sel.copy()
    inner[1:, :] &= sel[:-1, :]
    inner[:-1, :] &= sel[1:, :]
    inner[:, 1:] &= sel[:, :-1]
    inner[:, :-1] &= sel[:, 1:]
    return sel & ~inner


def void_pattern(shape: tuple[int, int]) -> np.ndarray:
    """bool [h, w]: the hatch lines drawn over void pixels (white), the rest of void is dimmed."""
    ys, xs = np.indices(shape)
    return ((xs + ys) % 6) < 2


def draw(
    image: np.ndarray,
    mask: np.ndarray | None,
    objects: Iterable[int] | None = None,
    opacity: float = OPACITY,
    banner: str = "",
) -> np.ndarray:
    """The frame (uint8 [h, w, 3]) with its mask drawn over it; objects: the ids to draw (all if None)."""
    out = image.copy()
    labels: list[tuple[int, int, int]] = []
    if mask is not None:
        wanted = None if objects is None else set(objects)
        void = mask == VOID
        if void.any():
            hatch = void & void_pattern(mask.shape)
            out[void & ~hatch] = blend(out[void & ~hatch], np.zeros(3, np.uint8), 0.5)
            out[hatch] = 255
        for oid in np.unique(mask):
            oid = int(oid)
            if oid in (0, VOID) or (wanted is not None and oid not in wanted):
                continue
            sel = mask == oid
            colour = PALETTE[oid]
            out[sel] = blend(out[sel], colour, opacity)
            out[_edges(sel)] = colour
            ys, xs = np.nonzero(sel)
            labels.append((oid, int(np.median(xs)), int(np.median(ys))))
    else:
        banner = f"{banner}  no mask".strip()
    return _text(out, labels, banner)


def _text(image: np.ndarray, labels: list[tuple[int, int, int]], banner: str) -> np.ndarray:
    if not labels and not banner:
        return image
    pil = Image.fromarray(image)
    pen = ImageDraw.Draw(pil)
    font = ImageFont.load_default()
    for oid, x, y in labels:
        text = str(oid)
        left, top, right, bottom = pen.textbbox((x, y), text, font=font, anchor="mm")
        pen.rectangle((left - 2, top - 1, right + 1, bottom + 1), fill=(0, 0, 0))
        pen.text((x, y), text, fill=(255, 255, 255), font=font, anchor="mm")
    if banner:
        left, top, right, bottom = pen.textbbox((3, 2), banner, font=font)
        pen.rectangle((0, 0, right + 3, bottom + 2), fill=(0, 0, 0))
        pen.text((3, 2), banner, fill=(255, 255, 0), font=font)
    return np.asarray(pil).copy()


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 0) -> np.ndarray:
    """Two frames of one size next to each other (ground truth left, prediction right)."""
    h, w = left.shape[:2]
    out = np.zeros((h, 2 * w + gap, 3), np.uint8)
    out[:, :w], out[:, w + gap :] = left, right
    return out


def jaccard(gt: np.ndarray | None, pred: np.ndarray | None) -> float | None:
    """Mean J (IoU) over the objects of gt or pred in one frame, void pixels left out; None without a
    ground-truth mask or when neither holds an object."""
    if gt is None:
        return None
    pred = np.zeros_like(gt) if pred is None else pred
    care = gt != VOID
    ids = (set(np.unique(gt[care]).tolist()) | set(np.unique(pred[care]).tolist())) - {0, VOID}
    if not ids:
        return None
    scores = []
    for oid in sorted(ids):
        a, b = (gt == oid) & care, (pred == oid) & care
        scores.append(float((a & b).sum()) / float((a | b).sum()))
    return float(np.mean(scores))


def contact_sheet(tiles: list[np.ndarray], max_width: int = 4096) -> np.ndarray:
    """Tiles of one size in a near-square grid, scaled down so that the sheet is at most max_width."""
    h, w = tiles[0].shape[:2]
    cols = int(np.ceil(np.sqrt(len(tiles))))
    rows = int(np.ceil(len(tiles) / cols))
    scale = min(1.0, max_width / (cols * w))
    if scale < 1.0:
        size = (max(1, int(w * scale)), max(1, int(h * scale)))
        tiles = [np.asarray(Image.fromarray(t).resize(size, Image.Resampling.BILINEAR)) for t in tiles]
        h, w = tiles[0].shape[:2]
    sheet = np.zeros((rows * h, cols * w, 3), np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return sheet
