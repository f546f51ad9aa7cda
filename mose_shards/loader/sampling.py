"""The clip sampler: pure functions of a video's frame list and a seeded generator.

Every item draws from its own generator, seeded by (seed, epoch, video id, clip index), so a clip does
not depend on which rank or worker samples it, nor on what was sampled before: resumption and
re-distribution give the same clips.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..core.errors import ConfigError


@dataclass(frozen=True)
class ClipOptions:
    """How clips are cut; clip_length None means whole videos, in order."""

    clip_length: int | None = 8
    max_skip: int = 5
    max_objects: int | None = 3
    reverse_prob: float = 0.0
    clips_per_video: int = 1

    def __post_init__(self) -> None:
        if self.clip_length is not None and self.clip_length < 1:
            raise ConfigError(f"clip_length must be >= 1 or None, got {self.clip_length}")
        if self.max_skip < 1:
            raise ConfigError(f"max_skip must be >= 1, got {self.max_skip}")
        if self.max_objects is not None and self.max_objects < 1:
            raise ConfigError(f"max_objects must be >= 1 or None, got {self.max_objects}")
        if not 0.0 <= self.reverse_prob <= 1.0:
            raise ConfigError(f"reverse_prob must be in [0, 1], got {self.reverse_prob}")
        if self.clips_per_video < 1:
            raise ConfigError(f"clips_per_video must be >= 1, got {self.clips_per_video}")


def item_rng(seed: int, epoch: int, video_id: str, index: int) -> np.random.Generator:
    """The generator of one item, independent of every other item."""
    digest = hashlib.sha256(f"{seed}\0{epoch}\0{video_id}\0{index}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def anchors(num_objects: Sequence[int] | np.ndarray, length: int, reverse: bool) -> list[int]:
    """Positions a clip of `length` frames can start at: the frame shows an object and the clip fits."""
    n = len(num_objects)
    if reverse:
        return [p for p in range(length - 1, n) if num_objects[p] > 0]
    return [p for p in range(0, n - length + 1) if num_objects[p] > 0]


def clip_count(num_objects: Sequence[int] | np.ndarray, options: ClipOptions) -> int:
    """Items a video gives per epoch: 1 in whole-video mode; clips_per_video if any clip fits, else 0."""
    if options.clip_length is None:
        return 1
    fits = bool(anchors(num_objects, options.clip_length, reverse=False))
    if not fits and options.reverse_prob > 0:
        fits = bool(anchors(num_objects, options.clip_length, reverse=True))
    return options.clips_per_video if fits else 0


def clip_counts(num_objects: np.ndarray, first_frame: np.ndarray, options: ClipOptions) -> np.ndarray:
    """`clip_count` of every video at once; video i's frames are rows first_frame[i]:first_frame[i+1]."""
    lengths = np.diff(first_frame)
    if options.clip_length is None:
        return np.ones(len(lengths), np.int64)
    seen = np.concatenate([[0], np.cumsum(np.asarray(num_objects) > 0)])  # frames with objects before row i
    room = np.maximum(lengths - options.clip_length + 1, 0)  # anchors a forward clip may start at
    fits = seen[first_frame[:-1] + room] - seen[first_frame[:-1]] > 0
    if options.reverse_prob > 0:
        fits |= seen[first_frame[1:]] - seen[first_frame[1:] - room] > 0
    return np.where(fits, options.clips_per_video, 0).astype(np.int64)


def steps(rng: np.random.Generator, room: int, count: int, max_skip: int) -> list[int]:
    """`count` skips in [1, max_skip] whose sum is at most `room`."""
    out: list[int] = []
    for i in range(count):
        left = count - i - 1  # steps still to take after this one, each at least 1
        high = min(max_skip, room - sum(out) - left)
        out.append(int(rng.integers(1, high + 1)))
    return out


def sample_positions(
    num_objects: Sequence[int] | np.ndarray, options: ClipOptions, rng: np.random.Generator
) -> tuple[list[int], bool]:
    """(frame positions in clip order, reversed?) for one clip; the first shows >= 1 object.

    Forward clips increase; reversed clips (probability reverse_prob) decrease. Consecutive positions
    differ by 1..max_skip. If the drawn direction has no anchor, the other one is used.
    """
    length = options.clip_length
    if length is None:
        return list(range(len(num_objects))), False
    reverse = bool(rng.random() < options.reverse_prob)
    choices = anchors(num_objects, length, reverse)
    if not choices:
        reverse = not reverse
        choices = anchors(num_objects, length, reverse)
    if not choices:
        raise ConfigError(f"no clip of {length} frames fits this video")
    anchor = choices[int(rng.integers(len(choices)))]
    room = anchor if reverse else len(num_objects) - 1 - anchor
    positions = [anchor]
    for skip in steps(rng, room, length - 1, options.max_skip):
        positions.append(positions[-1] - skip if reverse else positions[-1] + skip)
    return positions, reverse


def choose_objects(visible: Sequence[int], max_objects: int | None, rng: np.random.Generator) -> list[int]:
    """Up to max_objects ids among those visible in the first frame, sorted."""
    ids = sorted(int(v) for v in visible)
    if max_objects is None or len(ids) <= max_objects:
        return ids
    picked = rng.choice(len(ids), size=max_objects, replace=False)
    return sorted(ids[int(i)] for i in picked)
