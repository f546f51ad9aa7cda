"""`mose-shards show`: one video of an output with its masks drawn over it, as an animation
(.webp, .gif, .mp4) or a contact sheet (.png).

Frames come from the shards by ranged reads (the loader's FrameReader: one GET for frames that lie
together), so only the video's bytes are read, from a folder, s3:// or http alike. Everything
is checked (format, split, video, frames, objects) before a byte is written, and the file is written
under a temporary name and renamed, so a failure leaves no file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..core.errors import ConfigError, MissingDependencyError
from ..core.storage import StorageOptions
from ..loader.decode import check_short_side
from ..loader.index import SplitIndex
from ..loader.random_access import FrameReader
from . import overlay
from .predictions import PredictionReader

FORMATS = (".webp", ".gif", ".png", ".mp4")
FRAME_MS = 150  # per frame of an animation (about 6.7 fps, MOSE's own rate is 6)


@dataclass(frozen=True)
class ShowResult:
    path: str
    split: str
    video: str
    frames: int  # frames drawn
    size: tuple[int, int]  # (width, height) of the written image or video
    scores: tuple[float | None, ...] = ()  # per-frame J with predictions


def output_format(dest: str) -> str:
    """The suffix of dest, checked: ConfigError naming the formats we write."""
    suffix = Path(dest).suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"{dest}: unknown image format {suffix or '(none)'!r}; use {', '.join(FORMATS)}")
    if suffix == ".mp4":
        av_module()
    return suffix


def av_module() -> object:
    try:
        import av
    except ImportError:
        raise MissingDependencyError("av (PyAV, for .mp4)", "av") from None
    return av


def parse_frames(text: str | None, count: int, video: str) -> range:
    """The frames a Python slice `A:B` (or `A:B:C`, or one index `A`) selects of count frames."""
    if text is None or not text.strip():
        return range(count)
    parts = text.split(":")
    try:
        if len(parts) == 1:
            index = int(parts[0])
            if not -count <= index < count:
                raise ConfigError(f"--frames {text}: video {video!r} has {count} frames (0..{count - 1})")
            return range(index % count, index % count + 1)
        if len(parts) > 3:
            raise ValueError(text)
        bounds = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise ConfigError(f"--frames {text!r}: not a Python slice A:B (or A:B:C) of frame indices") from None
    for bound in bounds[:2]:
        if bound is not None and not -count <= bound <= count:
            raise ConfigError(f"--frames {text}: out of range, video {video!r} has {count} frames")
    if len(bounds) == 3 and bounds[2] == 0:
        raise ConfigError(f"--frames {text}: the step cannot be zero")
    chosen = range(count)[slice(*bounds)]
    if not chosen:
        raise ConfigError(f"--frames {text}: selects none of the {count} frames of video {video!r}")
    return chosen


def render(
    reader: FrameReader,
    index: SplitIndex,
    video: str,
    chosen: Sequence[int],
    objects: Sequence[int] | None = None,
    pred: PredictionReader | None = None,
    short_side: int | None = None,
) -> tuple[list[np.ndarray], list[float | None]]:
    """The drawn frames of video (with pred: ground truth and prediction side by side) and per-frame J;
    the frames come in one ranged read where they lie together (FrameReader.read_clip)."""
    drawn: list[np.ndarray] = []
    scores: list[float | None] = []
    seen: set[int] = set()
    for frame in reader.read_clip(video, list(chosen), index.split, short_side):
        image, mask, name = frame["image"], frame["mask"], frame["frame_name"]
        if mask is not None:
            seen.update(int(i) for i in np.unique(mask))
        if pred is None:
            drawn.append(overlay.draw(image, mask, objects, banner=name))
            continue
        guess = pred.mask(video, name, (image.shape[1], image.shape[0]))
        score = overlay.jaccard(mask, guess)
        scores.append(score)
        label = f"{name}  J={'-' if score is None else f'{score:.3f}'}"
        if guess is None:
            right = overlay.draw(image, None, banner="no prediction")
        else:
            right = overlay.draw(image, guess, objects, banner="prediction")
        drawn.append(overlay.side_by_side(overlay.draw(image, mask, objects, banner=label), right))
    missing = sorted(set(objects or ()) - seen)
    entry = index.video(index.position(video))  # type: ignore[arg-type]
    if missing and any(entry.has_mask[i] for i in chosen):
        present = ", ".join(str(i) for i in sorted(seen - {0, overlay.VOID})) or "none"
        raise ConfigError(f"--objects: object {missing[0]} is not in video {video!r} (objects: {present})")
    return drawn, scores


def show(
    output: str,
    video: str,
    dest: str,
    *,
    split: str | None = None,
    frames: str | None = None,
    objects: Sequence[int] | None = None,
    pred: str | None = None,
    short_side: int | None = None,
    storage_options: StorageOptions | None = None,
) -> ShowResult:
    """Draw video's masks over its frames into dest (.webp, .gif, .png contact sheet, .mp4)."""
    kind = output_format(dest)
    check_short_side(short_side)
    if not Path(dest).resolve().parent.is_dir():
        raise ConfigError(f"{dest}: its folder does not exist")
    reader = FrameReader(output, storage_options)
    table, position = reader.find(video, None, split)
    chosen = parse_frames(frames, table.video(position).num_frames, video)
    preds = PredictionReader(pred, storage_options) if pred is not None else None
    drawn, scores = render(reader, table, video, chosen, objects, preds, short_side)
    size = _write(kind, dest, drawn)
    return ShowResult(dest, table.split, video, len(drawn), size, tuple(scores))


def _write(kind: str, dest: str, drawn: list[np.ndarray]) -> tuple[int, int]:
    """Write under a temporary name beside dest, then rename: dest appears whole or not at all."""
    folder = str(Path(dest).resolve().parent)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".show-", suffix=kind)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; dest gets the usual mode
    try:
        if kind == ".png":
            sheet = overlay.contact_sheet(drawn)
            Image.fromarray(sheet).save(tmp, format="PNG")
            size = (sheet.shape[1], sheet.shape[0])
        elif kind == ".mp4":
            size = _write_mp4(tmp, drawn)
        else:
            images = [Image.fromarray(d) for d in drawn]
            extra: dict[str, Any] = {"lossless": True, "method": 4} if kind == ".webp" else {"disposal": 1}
            images[0].save(tmp, save_all=True, append_images=images[1:], duration=FRAME_MS, loop=0, **extra)
            size = images[0].size
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return size


def _write_mp4(path: str, drawn: list[np.ndarray]) -> tuple[int, int]:
    av = av_module()
    h, w = drawn[0].shape[:2]
    even_h, even_w = h + h % 2, w + w % 2  # yuv420p wants even sides
    with av.open(path, mode="w") as container:  # type: ignore[attr-defined]
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4",  # type: ignore[attr-defined]
                                      rate=round(1000 / FRAME_MS))  # fmt: skip
        stream.width, stream.height, stream.pix_fmt = even_w, even_h, "yuv420p"
        for frame in drawn:
            padded = np.zeros((even_h, even_w, 3), np.uint8)
            padded[:h, :w] = frame
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):  # type: ignore[attr-defined]
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return even_w, even_h
