"""What SAM 2's training code does with a raw dataset, re-written for tests and benchmarks (no SAM 2).

`sample_clip` follows `RandomUniformSampler.sample` then `VOSDataset.construct`: consecutive frames
from a random start, the first frame's mask loaded (twice, as the sampler does) until it shows an
object, at most `max_objects` of those, every image opened through iopath's g_pathmgr and decoded
with PIL as `load_images` does, then every sampled frame's mask loaded.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from iopath.common.file_io import g_pathmgr
from PIL import Image
from torch.utils.data import Dataset


def load_image(path: str) -> Image.Image:
    with g_pathmgr.open(path, "rb") as fopen:
        return Image.open(fopen).convert("RGB")


def sample_clip(video: Any, segment_loader: Any, num_frames: int, max_objects: int,
                rng: random.Random) -> dict[str, Any]:  # fmt: skip
    """One SAM 2 datapoint: {video_id, frame_idx, images (PIL), object_ids, segments [T][objects]}."""
    for _ in range(1000):
        if len(video.frames) < num_frames:
            raise ValueError(f"{video.video_name}: fewer than {num_frames} frames")
        start = rng.randrange(0, len(video.frames) - num_frames + 1)
        frames = video.frames[start : start + num_frames]
        segment_loader.load(frames[0].frame_idx)  # the sampler loads the first frame twice
        visible = [o for o, s in segment_loader.load(frames[0].frame_idx).items() if s.sum()]
        if visible:
            break
    else:
        raise ValueError(f"{video.video_name}: no visible objects")
    object_ids = rng.sample(visible, min(len(visible), max_objects))
    images = [load_image(f.image_path) for f in frames]
    segments = []
    for frame, image in zip(frames, images, strict=True):
        masks = segment_loader.load(frame.frame_idx)
        w, h = image.size
        segments.append([masks[o] if o in masks else np.zeros((h, w), bool) for o in object_ids])
    return {"video_id": video.video_id, "frame_idx": [f.frame_idx for f in frames], "images": images,
            "object_ids": object_ids, "segments": segments}  # fmt: skip


class FirstFrames(Dataset):
    """A map-style dataset over a raw dataset: item i is video i's first `num_frames` frames and masks."""

    def __init__(self, raw_dataset: Any, num_frames: int) -> None:
        self.raw_dataset, self.num_frames = raw_dataset, num_frames

    def __len__(self) -> int:
        return len(self.raw_dataset)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        video, segment_loader = self.raw_dataset.get_video(idx)
        frames = video.frames[: self.num_frames]
        return {
            "video_id": video.video_id,
            "video_name": video.video_name,
            "frame_idx": [f.frame_idx for f in frames],
            "images": np.stack([np.asarray(load_image(f.image_path)) for f in frames]),
            "masks": [{k: v.numpy() for k, v in segment_loader.load(f.frame_idx).items()} for f in frames],
        }
