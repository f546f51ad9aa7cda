"""Source videos as columns: the same frames and blobs as a file walk, compact to hold and to ship."""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import pytest

from mose_shards.conversion.sources import discover
from mose_shards.synth import SynthSpec, generate


def _tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    """A tar of `members` in order; a name may come twice (tar_bytes takes a dict, so not here)."""
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def test_columns_give_the_blobs_of_a_file_walk(tmp_path: Path) -> None:
    """Every frame's JPEG and mask blob names the file of the tree, with its size, in frame order."""
    raw = tmp_path / "raw"
    generate(raw, spec=SynthSpec(videos=3, frames=6, size=(32, 24), seed=3))
    for split in discover(str(raw)):
        folder = raw / split.name
        for video in split.videos:
            jpgs = sorted((folder / "JPEGImages" / video.video_id).glob("*.jpg"))
            assert [f.name for f in video.frames] == [p.stem for p in jpgs]
            for frame, jpg in zip(video.frames, jpgs, strict=True):
                assert (Path(frame.jpg.path), frame.jpg.size) == (jpg, jpg.stat().st_size)
                png = folder / "Annotations" / video.video_id / f"{jpg.stem}.png"
                if png.exists():
                    assert frame.png is not None and Path(frame.png.path) == png
                    assert frame.png.size == png.stat().st_size and frame.png.version
                else:
                    assert frame.png is None


def test_plan_of_a_video_pickles_in_a_few_bytes_a_frame(tmp_path: Path) -> None:
    """What a task ships to a worker grows by tens of bytes a frame, not an object per file."""
    members = []
    for i in range(2000):
        members.append((f"train/JPEGImages/v/{i:05d}.jpg", b"j" * (100 + i % 7)))
        members.append((f"train/Annotations/v/{i:05d}.png", b"p" * (50 + i % 5)))
    (video,) = discover(str(_tar(tmp_path / "train.tar", members)))[0].videos
    per_frame = len(pickle.dumps(video)) / video.num_frames
    # A Blob per file pickled ~400 bytes a frame.
    assert video.num_frames == 2000 and per_frame < 100, per_frame


def test_a_member_listed_twice_is_a_problem_naming_both(tmp_path: Path) -> None:
    """A tar may hold a path twice (extraction would keep the last copy silently): the video is a
    problem naming the member and both data offsets, not converted with either copy."""
    tar = _tar(
        tmp_path / "train.tar",
        [("train/JPEGImages/v/00000.jpg", b"first"), ("train/JPEGImages/v/00000.jpg", b"second!")],
    )
    (split,) = discover(str(tar))
    assert split.videos == []
    ((video_id, message),) = split.problems
    assert video_id == "v"
    assert f"{tar}:train/JPEGImages/v/00000.jpg: two members of this name (at bytes 512 and 1536)" in message


@pytest.mark.parametrize("second", ["./train/JPEGImages/v/00001.jpg", "extra/train/JPEGImages/v/00001.jpg"])
def test_a_video_in_two_folders_is_named_not_merged(tmp_path: Path, second: str) -> None:
    """Files of one video id under two folders are a problem naming both, not one silent video."""
    tar = _tar(tmp_path / "train.tar", [("train/JPEGImages/v/00000.jpg", b"a"), (second, b"b")])
    (split,) = discover(str(tar))
    assert split.videos == []
    ((video_id, message),) = split.problems
    assert video_id == "v" and "two folders" in message and second.rsplit("/", 1)[0] in message
