"""Read-ahead for random access: a frame's read brings the frames read next, in the same request.

SAM 2's sampler (and anyone reading a video frame after frame) asks for one frame at a time, but
reads the next ones of the same video right after; on object storage each request is a round trip.
So a miss reads a *window*: the frame and the ones that follow it in the video's sampling (every
`step`-th frame up to `stop`, as `plan` records; else every frame), as many as `frames` allows and
as long as their bytes, first to last, stay within `max_bytes`. The window is one ranged read when
its frames lie together in the shard (framefetch.clip_spans), several issued at once otherwise.
Later reads of its frames are served from memory.

How many frames a window holds is learned: the longest run of frames the last windows served (a run
goes on across a window that continues the one before it), at most `frames`; before anything is
learned, `frames`. So 8-frame clips read 8 frames, not 16, once the first clip has been read.

Memory: at most `windows` windows per reader, each at most `max_bytes` of shard bytes (beyond a
single frame larger than that): 2 x 16 MiB by default. A window's frames that nobody asks for are
dropped with it when newer windows push it out; nothing is kept beyond that bound.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import ConfigError
from .framefetch import PartialVideo
from .index import IndexedVideo
from .stream import Sample

# 16 frames cover SAM 2's 8- and 16-frame training clips (RandomUniformSampler's num_frames) at the
# dataset's sample_rate; 16 full-HD frames with their masks are 5-10 MB.
READ_AHEAD_FRAMES = 16
READ_AHEAD_BYTES = 16 << 20
WINDOWS = 2  # two readers interleaving (threads), or a clip spanning a window and its continuation
HISTORY = 8  # runs remembered to size the next window

Fetch = Callable[[IndexedVideo, list[int]], PartialVideo]


@dataclass(eq=False)
class Window:
    """Frames of one video read together; `used`: how far into `positions` reads have come."""

    split: str
    video: int
    positions: list[int]
    data: Future[PartialVideo] = field(default_factory=Future)
    base: int = 0  # frames the windows it continues served
    used: int = 0

    @property
    def run(self) -> int:
        return self.base + self.used

    def take(self, position: int) -> bool:
        """True, and the read counted, when the window holds the frame."""
        if position not in self.positions:
            return False
        self.used = max(self.used, self.positions.index(position) + 1)
        return True


class ReadAhead:
    """The windows of one reader (see the module's docstring); thread-safe."""

    def __init__(self, frames: int = READ_AHEAD_FRAMES, max_bytes: int = READ_AHEAD_BYTES,
                 windows: int = WINDOWS) -> None:  # fmt: skip
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ConfigError(f"read_ahead must be an integer >= 1 (frames per read), got {frames!r}")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ConfigError(f"read_ahead_bytes must be an integer >= 0, got {max_bytes!r}")
        self.frames, self.max_bytes, self.windows = frames, max_bytes, max(1, windows)
        self._open: list[Window] = []  # least recently used first
        self._runs: deque[int] = deque(maxlen=HISTORY)
        self._plans: dict[tuple[str, int], tuple[int, int]] = {}
        self._lock = threading.Lock()

    def plan(self, split: str, video: int, step: int, stop: int) -> None:
        """The positions a sampler draws from in this video: every `step`-th below `stop`."""
        with self._lock:
            self._plans[split, video] = (max(1, step), stop)

    def sample(self, split: str, entry: IndexedVideo, video: int, position: int, fetch: Fetch) -> Sample:
        """The frame's members, from a window holding it or from a new window read with `fetch`."""
        with self._lock:
            window = next((w for w in reversed(self._open) if w.split == split and w.video == video
                           and w.take(position)), None)  # fmt: skip
            opened = window is None
            if window is None:
                window = self._window(split, entry, video, position)
                window.take(position)
            else:
                self._open.remove(window)
            self._open.append(window)
            while len(self._open) > self.windows:
                self._runs.append(self._open.pop(0).run)  # its frames not yet read are dropped
        if opened:
            try:
                window.data.set_result(fetch(entry, window.positions))
            except BaseException as exc:
                window.data.set_exception(exc)
                with self._lock:
                    if window in self._open:
                        self._open.remove(window)
                raise
        return window.data.result()[position]

    def _window(self, split: str, entry: IndexedVideo, video: int, position: int) -> Window:
        """A new window from `position` (the lock held)."""
        step, stop = self._plans.get((split, video), (1, entry.num_frames))
        if position % step or position >= stop:  # off the plan: the frames after it
            step, stop = 1, entry.num_frames
        after = next((w for w in self._open if w.split == split and w.video == video
                      and w.positions[-1] + step == position), None)  # fmt: skip
        if after is not None:  # a run longer than its window: go on as far as allowed
            count, base = self.frames, after.run
        else:
            runs = [*self._runs, *(w.run for w in self._open)]
            count, base = min(self.frames, max(runs)) if runs else self.frames, 0
        wanted = list(range(position, min(stop, entry.num_frames), step))[: max(1, count)]
        return Window(split, video, self._within_budget(entry, wanted), base=base)

    def _within_budget(self, entry: IndexedVideo, positions: list[int]) -> list[int]:
        """The leading positions whose bytes, first to last, fit `max_bytes` (always the first)."""
        members = entry.members[positions]
        starts = np.minimum.reduce([members[:, 0], members[:, 2], members[:, 4]])
        ends = np.maximum.reduce([members[:, 0] + members[:, 1], members[:, 2] + members[:, 3],
                                  members[:, 4] + members[:, 5]])  # fmt: skip
        spread = np.maximum.accumulate(ends) - np.minimum.accumulate(starts)
        return positions[: max(1, int(np.searchsorted(spread, self.max_bytes, side="right")))]

    def clear(self) -> None:
        """Drop every window (what was learned stays)."""
        with self._lock:
            self._runs.extend(w.run for w in self._open)
            self._open.clear()

    def reset(self) -> None:
        """Drop every window and what was learned (a reader shared by a process starts over)."""
        with self._lock:
            self._open.clear()
            self._runs.clear()

    def held(self) -> int:
        """Windows in memory."""
        with self._lock:
            return len(self._open)
