"""Deterministic MOSE-like VOS datasets in the raw layout, for the demo, tests and benchmarks.

Every video mixes what makes MOSE hard: an object that leaves the frame and comes back, one that
enters after the first frame, a crowd of look-alikes that occlude each other, and a small object.
Shapes are drawn in bounding-box windows over a panning textured background, so a 1920x1080 frame
costs a few tens of milliseconds, most of it JPEG and PNG encoding.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from ..core.errors import ConfigError

logger = logging.getLogger(__name__)

ANNOTATION_MODES = ("all", "first", "sparse", "every5", "none")
DEFAULT_ANNOTATION = {"train": "all", "valid": "first", "test": "none"}
CATEGORIES = ("person", "car", "dog", "sheep", "zebra", "bird", "horse", "cow", "fish", "boat")
VOID = 255
# Half-width ranges, as fractions of the short side, of the leaver, entrant, small object and crowd.
_RADII = ((0.10, 0.14), (0.08, 0.12), (0.04, 0.05), (0.075, 0.11))


@dataclass(frozen=True)
class SynthSpec:
    """What to generate. Equal specs write byte-identical trees."""

    videos: int = 4  # per split
    frames: int = 12  # JPEGs per video
    size: tuple[int, int] = (320, 240)  # (width, height)
    objects: tuple[int, int] = (1, 5)  # ids 1..N per video, N in this inclusive range, >= 2 if max allows
    seed: int = 0
    splits: tuple[str, ...] = ("train", "valid")
    annotation: dict[str, str] | None = None  # split -> one of ANNOTATION_MODES; else DEFAULT_ANNOTATION
    frame_name_start: int = 0  # frame i is named str(start + i * step).zfill(digits)
    frame_name_digits: int = 5
    frame_step: int = 1
    categories: bool = False  # write a YouTube-VOS meta.json per split
    video_prefix: str = ""
    jpeg_quality: int = 90
    void_border: bool = False  # 255 (DAVIS void) on background pixels next to objects

    def __post_init__(self) -> None:
        lo, hi = self.objects
        _require(self.videos >= 0 and self.frames >= 1, "videos must be >= 0 and frames >= 1")
        _require(min(self.size) >= 16, f"size must be at least 16x16, got {self.size}")
        _require(1 <= lo <= hi <= 254, f"objects must satisfy 1 <= min <= max <= 254, got {self.objects}")
        _require(self.frame_name_start >= 0, "frame_name_start must be >= 0")
        _require(
            min(self.frame_name_digits, self.frame_step) >= 1, "frame_name_digits, frame_step must be >= 1"
        )
        _require(1 <= self.jpeg_quality <= 100, f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        bad = {k: v for k, v in (self.annotation or {}).items() if v not in ANNOTATION_MODES}
        _require(not bad, f"unknown annotation mode(s) {bad}; known: {', '.join(ANNOTATION_MODES)}")

    def mode(self, split: str) -> str:
        """The annotation mode of one split (explicit, else the default, else "all")."""
        return (self.annotation or {}).get(split, DEFAULT_ANNOTATION.get(split, "all"))


@dataclass(frozen=True)
class _Object:
    """One object of one video: its look (texture patch, shape) and its per-frame track."""

    oid: int
    category: str
    patch: np.ndarray  # (S, S, 3) uint8, centred on the object; S bounds the shape at any angle
    radii: tuple[float, float]
    power: float  # 2 = ellipse, 4 = rounded rectangle
    track: np.ndarray  # (frames, 4): cx, cy, angle, scale


@dataclass(frozen=True)
class _Video:
    canvas: np.ndarray  # background larger than the frame; the camera pans over it
    pan: np.ndarray  # (frames, 2) int top-left of the crop
    objects: tuple[_Object, ...]  # in draw order: last is on top


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def palette() -> list[int]:
    """The 256-entry DAVIS / PASCAL VOC colour map as 768 ints (r, g, b, r, g, b, ...)."""
    out = []
    for index in range(256):
        rgb, c = [0, 0, 0], index
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((c >> channel) & 1) << (7 - bit)
            c >>= 3
        out.extend(rgb)
    return out


def parse_size(text: str) -> tuple[int, int]:
    """Parse "WIDTHxHEIGHT" (e.g. "1920x1080") into positive ints; ConfigError (a ValueError) otherwise."""
    parts = text.strip().lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdecimal() for p in parts):
        raise ConfigError(f"size must look like WIDTHxHEIGHT (e.g. 1920x1080), got {text!r}")
    width, height = int(parts[0]), int(parts[1])
    if width <= 0 or height <= 0:
        raise ConfigError(f"size must be positive, got {text!r}")
    return width, height


def generate(root: str | os.PathLike[str], *, spec: SynthSpec = SynthSpec()) -> Path:
    """Write the dataset under root (created if missing) and return root as a Path."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    taken: set[str] = set()
    for split in spec.splits:
        meta: dict[str, dict] = {}
        for index in range(spec.videos):
            video_id, seed = _video_key(spec, split, index, taken)
            video = _plan_video(np.random.default_rng(seed), spec)
            meta[video_id] = {"objects": _write_video(root / split, video_id, video, spec, spec.mode(split))}
        if spec.categories:
            (root / split).mkdir(parents=True, exist_ok=True)
            (root / split / "meta.json").write_text(json.dumps({"videos": meta}, indent=1) + "\n", "utf-8")
        logger.info("synth: wrote %d videos to %s (%s)", spec.videos, root / split, spec.mode(split))
    return root


def _video_key(spec: SynthSpec, split: str, index: int, taken: set[str]) -> tuple[str, int]:
    """A unique hash-like video id and an rng seed, both derived from seed, split and index."""
    salt = 0
    while True:
        digest = hashlib.sha256(f"{spec.seed}/{split}/{index}/{salt}".encode()).digest()
        video_id = spec.video_prefix + digest[:4].hex()
        if video_id not in taken:
            taken.add(video_id)
            return video_id, int.from_bytes(digest[8:16], "little")
        salt += 1


def _frame_names(spec: SynthSpec) -> list[str]:
    return [
        str(spec.frame_name_start + i * spec.frame_step).zfill(spec.frame_name_digits)
        for i in range(spec.frames)
    ]


def _smooth(x: np.ndarray | float) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _ramp_len(frames: int) -> int:
    return 2 if frames >= 14 else 1 if frames >= 5 else 0


def _leave_profile(frames: int) -> np.ndarray:
    """Per frame, how far out of the frame the leaver is: 0 in, 1 fully out, then back to 0."""
    out = np.zeros(frames)
    if frames < 3:
        return out
    ramp = _ramp_len(frames)
    length = max(1, min(max(2, frames // 4), frames - 2 * ramp - 2))
    first_out = (frames - (length + 2 * ramp + 2)) // 2 + ramp + 1
    out[first_out : first_out + length] = 1.0
    for k in range(1, ramp + 1):
        out[first_out - k] = out[first_out + length - 1 + k] = _smooth(1.0 - k / (ramp + 1))
    return out


def _enter_profile(frames: int) -> np.ndarray:
    """Per frame, how far out the entrant is: fully out at frame 0, in from about a quarter on."""
    ramp, enter = _ramp_len(frames), max(1, frames // 4)
    t = np.arange(frames, dtype=float)
    return 1.0 - _smooth((t - enter + 1) / (ramp + 1))


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v)) * 255.0


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A muted gradient plus colour blobs plus grain, (height, width, 3) uint8."""
    c0, c1 = _hsv(rng.random(), rng.uniform(0.1, 0.4), 0.3), _hsv(rng.random(), rng.uniform(0.1, 0.4), 0.8)
    alpha = rng.uniform(0, 2 * math.pi)
    ys, xs = np.ogrid[0:height, 0:width]
    ramp = (xs * math.cos(alpha) / width + ys * math.sin(alpha) / height).astype(np.float32)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    img = c0.astype(np.float32) + ramp[..., None] * (c1 - c0).astype(np.float32)
    # Blurring an upsampled grid gives soft blobs without the plaid that bilinear upsampling alone leaves.
    grid = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize((width, height))
    blobs = np.asarray(grid.filter(ImageFilter.GaussianBlur(max(width, height) / 16)), dtype=np.float32)
    img += 0.45 * (blobs - 128.0)
    img += rng.integers(-10, 11, size=img.shape, dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _patch(rng: np.random.Generator, side: int, rgb: np.ndarray) -> np.ndarray:
    """A textured (side, side, 3) uint8 patch: shading blobs, maybe stripes, and grain around rgb."""
    shade = 0.7 + 0.5 * np.asarray(Image.fromarray(rng.random((4, 4), dtype=np.float32)).resize((side, side)))
    if rng.random() < 0.5:
        ys, xs = np.mgrid[0:side, 0:side].astype(np.float32)
        angle, period = rng.uniform(0, math.pi), side / rng.uniform(3, 8)
        shade += 0.2 * np.sin(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period)
    img = shade[..., None] * rgb.astype(np.float32) + rng.integers(-8, 9, (side, side, 3), dtype=np.int16)
    return np.clip(img, 0, 255).astype(np.uint8)


def _make_object(
    rng: np.random.Generator, *, oid: int, category: str, rgb: np.ndarray, rx: float, centres: np.ndarray
) -> _Object:
    """An object of half-width rx following the (frames, 2) centres, slowly turning and breathing."""
    ry = rx * rng.uniform(0.55, 1.0)
    side = 2 * (math.ceil(math.hypot(rx, ry) * 1.06) + 2) + 1
    t = np.arange(len(centres))
    angle = rng.uniform(0, math.pi) + rng.uniform(-0.08, 0.08) * t
    scale = 1.0 + 0.05 * np.sin(2 * math.pi * t / rng.uniform(6, 20) + rng.uniform(0, 2 * math.pi))
    patch, power = _patch(rng, side, rgb), float(rng.choice([2.0, 4.0]))
    return _Object(oid, category, patch, (rx, ry), power, np.column_stack([centres, angle, scale]))


def _edge_path(
    rng: np.random.Generator, spec: SynthSpec, profile: np.ndarray, axis: int, sign: int, reach: float
) -> np.ndarray:
    """Centres near the edge (axis, sign) pushed out by profile * the distance to leave the frame."""
    extent = spec.size[axis]
    t = np.arange(spec.frames)
    base = extent * (0.25 if sign < 0 else 0.75)
    along = base + sign * profile * ((extent - base if sign > 0 else base) + reach + 2.0)
    other = spec.size[1 - axis] * (rng.uniform(0.3, 0.7) + 0.05 * np.sin(t / rng.uniform(2, 5)))
    return np.column_stack([along, other] if axis == 0 else [other, along])


def _crowd_paths(rng: np.random.Generator, spec: SynthSpec, count: int) -> np.ndarray:
    """(count, frames, 2) centres of a group drifting together, each member wobbling around it."""
    (w, h), t = spec.size, np.arange(spec.frames)[None, :]
    period = max(spec.frames, 8) * rng.uniform(1.0, 2.0, size=2)
    gx = w * (0.5 + 0.2 * np.sin(2 * math.pi * t / period[0] + rng.uniform(0, 6.3)))
    gy = h * (0.55 + 0.12 * np.sin(2 * math.pi * t / period[1] + rng.uniform(0, 6.3)))
    ring = np.linspace(0, 2 * math.pi, count, endpoint=False)[:, None] + rng.uniform(0, 6.3)
    # Tight enough that neighbours overlap: crowds are where MOSE's occlusions happen.
    radius, phase = 0.06 * min(w, h) * math.sqrt(count), rng.uniform(0, 6.3, size=(count, 1))
    wobble = 0.05 * min(w, h) * np.sin(t / rng.uniform(1.5, 4, size=(count, 1)) + phase)
    return np.stack([gx + radius * np.cos(ring) + wobble, gy + radius * np.sin(ring) + wobble], axis=-1)


def _plan_video(rng: np.random.Generator, spec: SynthSpec) -> _Video:
    """Draw every random choice of one video: background, pan, objects and their tracks."""
    (w, h), s = spec.size, min(spec.size)
    lo, hi = spec.objects
    count = int(rng.integers(max(lo, min(hi, 2)), hi + 1))
    ids = rng.permutation(np.arange(1, count + 1)).tolist()
    hue, leaver_category, crowd_category = rng.random(), *(str(c) for c in rng.choice(CATEGORIES, 2))
    margin = max(1, round(0.03 * s))
    canvas = _background(rng, w + 2 * margin, h + 2 * margin)
    t = np.arange(spec.frames)
    pan = margin + np.round(margin * np.sin(t[:, None] / rng.uniform(3, 9, size=2) + rng.uniform(0, 6.3, 2)))
    # Roles by index: the leaver, the entrant (opposite edge), the small one, then the crowd.
    axis, sign, reach = int(rng.integers(0, 2)), int(rng.choice([-1, 1])), 1.5 * _RADII[0][1] * s
    paths = [_edge_path(rng, spec, _leave_profile(spec.frames), axis, sign, reach)]
    paths += [_edge_path(rng, spec, _enter_profile(spec.frames), axis, -sign, reach)][: count - 1]
    paths += list(_crowd_paths(rng, spec, max(count - 2, 0)))
    objects = []
    for k, centres in enumerate(paths):
        look = (leaver_category, _hsv(hue, 0.8, 0.9)) if k == 0 else (crowd_category, _crowd_rgb(rng, hue))
        rx = s * rng.uniform(*_RADII[min(k, 3)])
        objects.append(_make_object(rng, oid=ids[k], category=look[0], rgb=look[1], rx=rx, centres=centres))
    # Depth: the crowd in random order under the small one, then the leaver and the entrant on top;
    # these two keep to opposite halves of the frame, so neither ever hides the other.
    crowd = [objects[3 + i] for i in rng.permutation(max(count - 3, 0)).tolist()]
    return _Video(canvas, pan.astype(int), tuple(crowd + objects[2:3] + objects[:2]))


def _crowd_rgb(rng: np.random.Generator, hue: float) -> np.ndarray:
    """A colour of the crowd family: the hue opposite the leaver's, slightly jittered."""
    return _hsv(hue + 0.5 + rng.uniform(-0.03, 0.03), rng.uniform(0.55, 0.75), rng.uniform(0.7, 0.9))


def _draw(obj: _Object, t: int, image: np.ndarray, ids: np.ndarray) -> None:
    """Paint obj at frame t into image and ids, inside its clipped bounding box only."""
    cx, cy, angle, scale = obj.track[t]
    half = obj.patch.shape[0] // 2
    icx, icy = math.floor(cx), math.floor(cy)
    x0, x1 = max(icx - half, 0), min(icx + half + 1, ids.shape[1])
    y0, y1 = max(icy - half, 0), min(icy + half + 1, ids.shape[0])
    if x0 >= x1 or y0 >= y1:
        return
    xs = (np.arange(x0, x1, dtype=np.float32) - cx)[None, :]
    ys = (np.arange(y0, y1, dtype=np.float32) - cy)[:, None]
    c, s = math.cos(angle), math.sin(angle)
    u = np.abs((xs * c + ys * s) / (obj.radii[0] * scale)) ** obj.power
    v = np.abs((ys * c - xs * s) / (obj.radii[1] * scale)) ** obj.power
    inside = u + v <= 1.0
    tex = obj.patch[y0 - icy + half : y1 - icy + half, x0 - icx + half : x1 - icx + half]
    image[y0:y1, x0:x1][inside] = tex[inside]
    ids[y0:y1, x0:x1][inside] = obj.oid


def _void_band(ids: np.ndarray, width: int) -> None:
    """Mark background pixels within width (Chebyshev) of any object as VOID, in place."""
    # Padding by width makes np.roll's wrap-around bring in only False.
    grown = np.pad(ids > 0, width)
    for axis in (0, 1):
        grown = np.logical_or.reduce([np.roll(grown, k, axis) for k in range(-width, width + 1)])
    grown = grown[width:-width, width:-width]
    ids[grown & (ids == 0)] = VOID


def _render(video: _Video, t: int, spec: SynthSpec) -> tuple[np.ndarray, np.ndarray]:
    """The (h, w, 3) image and (h, w) id map of frame t."""
    w, h = spec.size
    px, py = video.pan[t]
    image = video.canvas[py : py + h, px : px + w].copy()
    ids = np.zeros((h, w), dtype=np.uint8)
    for obj in video.objects:
        _draw(obj, t, image, ids)
    if spec.void_border:
        _void_band(ids, max(1, round(min(w, h) / 160)))
    return image, ids


def _annotations(video: _Video, spec: SynthSpec, mode: str) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Per frame: the image and the id map to write as PNG (None when that frame has no PNG)."""
    seen = np.zeros(256, dtype=bool)
    seen[[0, VOID]] = True
    for t in range(spec.frames):
        image, ids = _render(video, t, spec)
        present = np.bincount(ids.ravel(), minlength=256) > 0
        new = present & ~seen
        seen |= present
        if mode == "sparse":
            keep = np.where(new, np.arange(256), 0).astype(np.uint8)
            yield image, (keep[ids] if new.any() else None)
        elif mode == "all" or (mode == "first" and t == 0) or (mode == "every5" and t % 5 == 0):
            yield image, ids
        else:
            yield image, None


def _write_video(split_dir: Path, video_id: str, video: _Video, spec: SynthSpec, mode: str) -> dict:
    """Write one video's JPEGs and PNGs; return its meta.json "objects" entry."""
    jpeg_dir, png_dir = split_dir / "JPEGImages" / video_id, split_dir / "Annotations" / video_id
    jpeg_dir.mkdir(parents=True, exist_ok=True)
    objects = sorted(video.objects, key=lambda o: o.oid)
    frames: dict[int, list[str]] = {o.oid: [] for o in objects}
    flat_palette = palette()
    for name, (image, ids) in zip(_frame_names(spec), _annotations(video, spec, mode), strict=True):
        Image.fromarray(image).save(jpeg_dir / f"{name}.jpg", format="JPEG", quality=spec.jpeg_quality)
        if ids is None:
            continue
        png_dir.mkdir(parents=True, exist_ok=True)
        mask = Image.fromarray(ids)
        mask.putpalette(flat_palette)
        mask.save(png_dir / f"{name}.png", format="PNG")
        for oid in np.flatnonzero(np.bincount(ids.ravel(), minlength=256)[1:VOID]) + 1:
            frames[int(oid)].append(name)
    logger.debug("synth: %s/%s %d objects, annotation %s", split_dir.name, video_id, len(objects), mode)
    return {str(o.oid): {"category": o.category, "frames": frames[o.oid]} for o in objects}
