"""Clip items read only the frames they use: spans per frame, merged across small gaps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mose_shards import ClipDataset
from mose_shards.core.errors import OutputError
from mose_shards.loader import framefetch
from mose_shards.loader.framefetch import PartialVideo, frame_spans
from mose_shards.loader.stream import Reader, in_flight


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


def test_the_first_video_is_read_alone_then_the_next_ones_before_it_is_used(
    converted: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the start only the first video's spans are requested; once they have arrived, and before
    the first video is handed out, the next video is requested (it arrives while the first is
    decoded), then more with each video handed out, 1, 2, 4, ... up to `prefetch` in flight."""
    from concurrent.futures import ThreadPoolExecutor

    events: list[str] = []
    original = Reader.read

    def logged(self: Reader, shard: Any, start: int, size: int) -> bytes:
        data = original(self, shard, start, size)
        events.append(f"read {shard.path}")
        return data

    class Logged(ThreadPoolExecutor):
        def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            events.append(f"submit {args[0].path}")
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(Reader, "read", logged)
    monkeypatch.setattr(framefetch, "ThreadPoolExecutor", Logged)
    ds = ClipDataset(str(converted), clip_length=2, shuffle=False)
    entries = [v for v in ds.videos][:4]
    assert len({e.shard.path for e in entries}) == 4 and all(
        len(frame_spans(e, [0, 1])) == 1 for e in entries
    )
    stream = framefetch.stream_frames(ds.reader(), entries, [[0, 1]] * 4, prefetch=3)
    assert next(stream).entry is entries[0]
    events.append("yielded")
    first, *others = [e.shard.path for e in entries]
    submits = [e for e in events if e.startswith("submit")]
    assert submits == [f"submit {first}", f"submit {others[0]}"]  # one read beside the first clip
    assert events.index(f"read {first}") < events.index(f"submit {others[0]}") < events.index("yielded")
    assert next(stream).entry is entries[1]
    events.append("yielded second")
    submits = [e for e in events if e.startswith("submit")]
    assert submits == [f"submit {p}" for p in (first, *others)]  # then two in flight
    assert events.index(f"submit {others[2]}") < events.index("yielded second")
    assert [v.entry for v in stream] == entries[2:]


def test_reads_in_flight_start_at_one_and_double_up_to_prefetch() -> None:
    assert [in_flight(4, taken) for taken in range(6)] == [1, 1, 2, 4, 4, 4]
    assert [in_flight(3, taken) for taken in range(5)] == [1, 1, 2, 3, 3]
    assert in_flight(0, 5) == in_flight(1, 5) == 1
