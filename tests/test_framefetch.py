"""Clip items read only the frames they use: spans per frame, merged across small gaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mose_shards import ClipDataset
from mose_shards.core.errors import OutputError
from mose_shards.loader import framefetch
from mose_shards.loader.framefetch import PartialVideo, frame_spans
from mose_shards.loader.stream import Reader


def test_spans_cover_the_frames_and_merge_small_gaps(converted: Path) -> None:
    """Each wanted frame's members lie inside one span; spans closer than the gap merge."""
    entry = ClipDataset(str(converted), clip_length=2).videos[0]
    wanted = [0, 1, entry.num_frames - 1]
    for gap, count in ((0, 3), (1024, 2), (10**9, 1)):  # tar headers (512 B) sit between frames
        spans = frame_spans(entry, wanted, gap)
        assert len(spans) == count
        for p in wanted:
            jo, js, po, ps, no, ns = (int(v) for v in entry.members[p])
            assert any(s <= min(jo, po, no) and max(jo + js, po + ps, no + ns) <= e for s, e in spans)


def test_clips_read_fewer_bytes_than_their_videos(converted: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Short clips of long videos move less than the videos' bytes; whole videos move all of them."""
    read: list[int] = []
    original = Reader.read

    def counting(self: Reader, shard: object, start: int, size: int) -> bytes:
        read.append(size)
        return original(self, shard, start, size)  # type: ignore[arg-type]

    monkeypatch.setattr(Reader, "read", counting)
    monkeypatch.setattr(framefetch, "GAP", 0)
    clips = list(ClipDataset(str(converted), clip_length=2, max_skip=1, shuffle=False))
    video_bytes = sum(v.end - v.start for v in ClipDataset(str(converted), clip_length=2).videos)
    assert clips and sum(read) < video_bytes
    read.clear()
    whole = list(ClipDataset(str(converted), clip_length=None, shuffle=False))
    assert whole and sum(read) >= video_bytes


def test_a_member_that_was_not_read_is_an_error(converted: Path) -> None:
    """Slicing a frame outside the spans read raises instead of returning wrong bytes."""
    entry = ClipDataset(str(converted), clip_length=2).videos[0]
    (start, end), *_ = frame_spans(entry, [0], 0)
    video = PartialVideo(entry, [(start, b"\0" * (end - start))], "here", False)
    assert len(video[0]["jpg"]) == int(entry.members[0][1])
    with pytest.raises(OutputError, match="not read"):
        video[entry.num_frames - 1]
    assert np.all(np.diff([s for s, _ in frame_spans(entry, range(entry.num_frames), 0)]) > 0)
