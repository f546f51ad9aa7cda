"""What SAM 2's training code does with a raw dataset, re-written for tests and benchmarks (no SAM 2).

`PNGRawLike` reads a raw tree the way SAM 2's `PNGRawDataset` and `PalettisedPNGSegmentLoader` do
(listdir, a sorted glob of *.jpg, the int of each file name, a listing of the masks, one PIL open
per mask; 255 stays an object there).

`sample_clip` follows `RandomUniformSampler.sample` then `VOSDataset.construct`: consecutive frames
from a random start, the first frame's mask loaded (twice, as the sampler does) until it shows an
object, at most `max_objects` of those, every image opened through iopath's g_pathmgr and decoded
with PIL as `load_images` does, then every sampled frame's mask loaded.
"""

from __future__ import annotations

import glob
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from iopath.common.file_io import g_pathmgr
from PIL import Image
from torch.utils.data import Dataset


def reference_videos(
    img_folder: Path, file_list: list[str] | None = None, excluded: list[str] = (), sample_rate: int = 1,
    truncate_video: int = -1,
) -> list[tuple[str, list[tuple[int, str]]]]:  # fmt: skip
    """PNGRawDataset's videos: [(video name, [(frame_idx, jpg path), ...]), ...] in its order."""
    subset = file_list if file_list is not None else os.listdir(img_folder)
    names = sorted(v for v in subset if v not in excluded)
    out = []
    for name in names:
        paths = sorted(glob.glob(os.path.join(img_folder, name, "*.jpg")))
        if truncate_video > 0:
            paths = paths[:truncate_video]
        out.append((name, [(int(os.path.basename(p).split(".")[0]), p) for p in paths[::sample_rate]]))
    return out


def reference_mask(png: str | Path) -> dict[int, np.ndarray]:
    """PalettisedPNGSegmentLoader.load: {object id: HxW bool} for every non-zero value, 255 included,
    in the order of first appearance (row-major), as its pd.unique gives them."""
    ids = np.array(Image.open(png).convert("P"))
    values, first = np.unique(ids.ravel(), return_index=True)
    return {int(i): ids == i for i in values[np.argsort(first)] if i != 0}


@dataclass
class RawFrame:
    frame_idx: int
    image_path: str
    data: Any = None
    is_conditioning_only: bool = False


@dataclass
class RawVideo:
    video_name: str
    video_id: int
    frames: list[RawFrame] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.frames)


class RawSegmentLoader:
    """PalettisedPNGSegmentLoader: a listing of the video's masks, then one PIL open per load."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.by_number = {int(os.path.splitext(f)[0]): f for f in os.listdir(root)}

    def load(self, frame_idx: int) -> dict[int, Any]:
        return {
            k: torch.from_numpy(v) for k, v in reference_mask(self.root / self.by_number[frame_idx]).items()
        }


class PNGRawLike:
    """PNGRawDataset(img_folder, gt_folder) over a raw split folder."""

    def __init__(self, split_dir: Path) -> None:
        self.img_folder, self.gt_folder = split_dir / "JPEGImages", split_dir / "Annotations"
        self.video_names = sorted(os.listdir(self.img_folder))

    def __len__(self) -> int:
        return len(self.video_names)

    def get_video(self, idx: int) -> tuple[RawVideo, RawSegmentLoader]:
        name = self.video_names[idx]
        ((_, frames),) = reference_videos(self.img_folder, file_list=[name])
        video = RawVideo(name, idx, [RawFrame(n, p) for n, p in frames])
        return video, RawSegmentLoader(self.gt_folder / name)


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
