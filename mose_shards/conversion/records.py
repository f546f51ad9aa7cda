"""Per-video work: source bytes -> shard samples + table rows. Pure: no I/O, easy to test."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import DataError
from ..core.images import DEFAULT_MAX_PIXELS, open_image
from ..core.layout import sample_key
from . import masks as mask_ops
from .sources import Frame, SourceVideo

JPEG_EOI = b"\xff\xd9"


@dataclass
class VideoRecords:
    """What one video contributes to a shard and to each table."""

    samples: list[tuple[str, dict[str, bytes]]] = field(default_factory=list)
    frames: list[dict[str, Any]] = field(default_factory=list)
    masks: list[dict[str, Any]] = field(default_factory=list)
    objects: list[dict[str, Any]] = field(default_factory=list)
    video: dict[str, Any] = field(default_factory=dict)


def jpeg_size(data: bytes, where: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """(width, height) of a JPEG from its header; DataError for a non-JPEG or truncated file, or one
    of more than `max_pixels` pixels."""
    if not data.startswith(b"\xff\xd8"):
        raise DataError(where, "not a JPEG file")
    if not data.rstrip(b"\0").endswith(JPEG_EOI):
        raise DataError(where, "truncated JPEG (no end-of-image marker)")
    try:
        with open_image(data, max_pixels, "JPEG") as img:
            return img.size
    except ValueError as exc:
        raise DataError(where, str(exc)) from None


def build_video(
    video: SourceVideo,
    jpgs: Sequence[bytes],
    pngs: Sequence[bytes | None],
    void_label: int | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> VideoRecords:
    """Validate one video and turn it into samples and rows (shard offsets are filled in later)."""
    out = VideoRecords()
    width = height = 0
    presence: dict[int, list[tuple[int, int]]] = {}  # object id -> [(frame index, area)]
    annotated: list[int] = []
    frames = video.frames
    for index, (frame, jpg, png) in enumerate(zip(frames, jpgs, pngs, strict=True)):
        size = jpeg_size(jpg, str(frame.jpg), max_pixels)
        if index == 0:
            width, height = size
        elif size != (width, height):
            raise DataError(
                str(frame.jpg), f"frame is {size[0]}x{size[1]}, the video's first frame {width}x{height}"
            )
        infos = _mask_rows(video, index, frame, png, size, void_label, max_pixels)
        if png is not None:
            annotated.append(index)
        for row in infos:
            presence.setdefault(row["object_id"], []).append((index, row["area"]))
        out.masks += infos
        out.samples.append(_sample(video, index, frame, jpg, png, size))
        out.frames.append(_frame_row(video, index, frame, jpg, png, size, len(infos)))
    out.objects = _object_rows(video, presence, annotated)
    out.video = {
        "split": video.split,
        "video_id": video.video_id,
        "width": width,
        "height": height,
        "num_frames": video.num_frames,
        "num_annotated_frames": len(annotated),
        "num_objects": len(presence),
        "first_frame_name": video.names[0],
        "last_frame_name": video.names[-1],
        "jpg_bytes": sum(len(b) for b in jpgs),
        "png_bytes": sum(len(b) for b in pngs if b is not None),
    }
    return out


def _mask_rows(
    video: SourceVideo,
    index: int,
    frame: Frame,
    png: bytes | None,
    size: tuple[int, int],
    void_label: int | None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[dict[str, Any]]:
    if png is None:
        return []
    where = str(frame.png)
    try:
        info = mask_ops.analyze(png, void_label, max_pixels)
    except ValueError as exc:
        raise DataError(where, str(exc)) from None
    except (OSError, SyntaxError) as exc:
        raise DataError(where, f"unreadable PNG ({exc})") from None
    if (info.width, info.height) != size:
        raise DataError(where, f"mask is {info.width}x{info.height} but its frame is {size[0]}x{size[1]}")
    return [
        {
            "split": video.split,
            "video_id": video.video_id,
            "frame_index": index,
            "frame_name": frame.name,
            "object_id": obj.object_id,
            "area": obj.area,
            "bbox": list(obj.bbox),
            "rle": obj.rle,
            "height": info.height,
            "width": info.width,
        }
        for obj in info.objects
    ]


def frame_json(video: SourceVideo, index: int, frame: Frame, size: tuple[int, int], has_mask: bool) -> bytes:
    """The `.json` member: scalar fields only, the same on every sample (Hugging Face infers from them)."""
    doc = {
        "split": video.split,
        "video_id": video.video_id,
        "frame_index": index,
        "frame_name": frame.name,
        "num_frames": video.num_frames,
        "has_mask": has_mask,
        "width": size[0],
        "height": size[1],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _sample(
    video: SourceVideo, index: int, frame: Frame, jpg: bytes, png: bytes | None, size: tuple[int, int]
) -> tuple[str, dict[str, bytes]]:
    members = {
        "jpg": jpg,
        "png": png if png is not None else mask_ops.PLACEHOLDER_PNG,
        "json": frame_json(video, index, frame, size, png is not None),
    }
    return sample_key(video.video_id, frame.name), members


def _frame_row(
    video: SourceVideo,
    index: int,
    frame: Frame,
    jpg: bytes,
    png: bytes | None,
    size: tuple[int, int],
    objects: int,
) -> dict[str, Any]:
    return {
        "split": video.split,
        "video_id": video.video_id,
        "frame_index": index,
        "frame_name": frame.name,
        "key": sample_key(video.video_id, frame.name),
        "has_mask": png is not None,
        "width": size[0],
        "height": size[1],
        "num_objects": objects,
        "jpg_sha256": hashlib.sha256(jpg).hexdigest(),
        "png_sha256": hashlib.sha256(png).hexdigest() if png is not None else None,
    }


def _object_rows(
    video: SourceVideo, presence: dict[int, list[tuple[int, int]]], annotated: list[int]
) -> list[dict[str, Any]]:
    categories = dict(video.categories)
    rows = []
    for object_id in sorted(presence):
        seen = presence[object_id]
        visible = {i for i, _ in seen}
        first, last = seen[0][0], seen[-1][0]
        after = [i for i in annotated if i >= first]
        gaps = [i for i in after if i not in visible]
        areas = [a for _, a in seen]
        rows.append(
            {
                "split": video.split,
                "video_id": video.video_id,
                "object_id": object_id,
                "category": categories.get(object_id),
                "first_frame_index": first,
                "last_frame_index": last,
                "num_visible_frames": len(visible),
                "num_annotated_frames": len(after),
                "disappears": bool(gaps),
                "reappears": any(g < last for g in gaps),
                "max_area": max(areas),
                "mean_area": sum(areas) / len(areas),
            }
        )
    return rows
