"""`mose-shards show`: masks drawn over a video's frames, checked pixel by pixel against the frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence

from mose_shards.cli import main
from mose_shards.core.storage import Store
from mose_shards.loader.random_access import FrameReader
from mose_shards.tools import overlay
from mose_shards.tools.show import show


def _video(out: Path, split: str = "train") -> str:
    return sorted(FrameReader(str(out)).index(split).video_ids.to_pylist())[0]


def _frames(out: Path, video: str, split: str = "train") -> list[dict]:
    reader = FrameReader(str(out))
    index = reader.index(split)
    count = index.video(index.position(video)).num_frames
    return [reader.read(video, i, split) for i in range(count)]


def _grow(sel: np.ndarray, by: int) -> np.ndarray:
    out = sel.copy()
    for _ in range(by):
        g = out.copy()
        g[1:] |= out[:-1]
        g[:-1] |= out[1:]
        g[:, 1:] |= out[:, :-1]
        g[:, :-1] |= out[:, 1:]
        out = g
    return out


def _interior(sel: np.ndarray, by: int) -> np.ndarray:
    return ~_grow(~sel, by)


def _animation(path: Path) -> list[np.ndarray]:
    with Image.open(path) as img:
        return [np.asarray(f.convert("RGB")).copy() for f in ImageSequence.Iterator(img)]


BANNER = (slice(0, 20), slice(0, 110))  # the top-left corner holds the frame name (and "no mask")


def _far(mask: np.ndarray) -> np.ndarray:
    """Pixels 3 away from every object, outside the banner and the id labels (centred on objects)."""
    far = ~_grow((mask > 0) & (mask < 255), 3)
    far[BANNER] = False
    for oid in set(np.unique(mask).tolist()) - {0, 255}:
        ys, xs = np.nonzero(mask == oid)
        cy, cx = int(np.median(ys)), int(np.median(xs))
        far[max(0, cy - 10) : cy + 10, max(0, cx - 12) : cx + 12] = False
    return far


def test_webp_tints_objects_and_leaves_the_rest_as_the_frame(converted: Path, tmp_path: Path) -> None:
    """Inside an object: the frame blended with its palette colour; far from every object: the frame."""
    video = _video(converted)
    dest = tmp_path / "v.webp"
    result = show(str(converted), video, str(dest))
    frames = _frames(converted, video)
    drawn = _animation(dest)
    assert len(drawn) == len(frames) == result.frames == 8
    checked = 0
    for got, frame in zip(drawn, frames, strict=True):
        image, mask = frame["image"], frame["mask"]
        assert got.shape == image.shape
        far = _far(mask)
        assert far.mean() > 0.5
        assert np.array_equal(got[far], image[far])
        for oid in set(np.unique(mask).tolist()) - {0, 255}:
            inside = _interior(mask == oid, 2)
            ys, xs = np.nonzero(mask == oid)
            cy, cx = int(np.median(ys)), int(np.median(xs))
            inside[max(0, cy - 8) : cy + 8, max(0, cx - 10) : cx + 10] = False  # the id label
            inside[BANNER] = False
            if inside.sum() < 10:
                continue
            expected = overlay.blend(image[inside], overlay.PALETTE[oid])
            assert np.array_equal(got[inside], expected)
            assert not np.array_equal(got[inside], image[inside])
            checked += 1
    assert checked >= 8


def test_outline_and_label_are_drawn(converted: Path, tmp_path: Path) -> None:
    """The outline has the object's colour and the id label puts white text inside the object."""
    video = _video(converted)
    show(str(converted), video, str(tmp_path / "v.webp"), frames="0:1")
    got = _animation(tmp_path / "v.webp")[0]
    mask = _frames(converted, video)[0]["mask"]
    oid = int(sorted(set(np.unique(mask).tolist()) - {0, 255})[0])
    sel = mask == oid
    edge = sel & ~_interior(sel, 1)
    edge[BANNER] = False
    assert (got[edge] == overlay.PALETTE[oid]).all(axis=1).mean() > 0.9
    assert (got[sel] == 0).all(axis=1).any()  # the label's black box
    assert (got[sel] > 200).all(axis=1).any()  # and its light text


def test_void_is_drawn_distinctly_and_a_missing_mask_is_marked() -> None:
    """Void pixels are neither the frame nor an object's tint; a frame without a mask gets a banner."""
    rng = np.random.default_rng(0)
    image = rng.integers(20, 200, (60, 80, 3), dtype=np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    mask[30:50, 10:30] = 1
    mask[30:50, 50:70] = 255
    got = overlay.draw(image, mask)
    void = mask == 255
    assert (got[void] != image[void]).any(axis=1).all()
    assert not np.array_equal(got[void], overlay.blend(image[void], overlay.PALETTE[255]))
    assert (got[void & overlay.void_pattern(mask.shape)] == 255).all()
    assert np.array_equal(got[:25], image[:25])  # no banner without text, nothing drawn far away
    unmasked = overlay.draw(image, None, banner="00003")
    assert not np.array_equal(unmasked[:16, :90], image[:16, :90])
    assert np.array_equal(unmasked[20:], image[20:])
    named = overlay.draw(image, np.zeros_like(mask), banner="00003")  # a mask: the name alone
    assert (unmasked[:14, 45:80] != named[:14, 45:80]).any()  # "no mask" follows the name
    assert np.array_equal(named[:14, 60:], image[:14, 60:])


def test_unannotated_frames_are_marked(converted: Path, tmp_path: Path) -> None:
    """In valid (first frame annotated only) frame 1's banner is wider than frame 0's: "no mask"."""
    video = _video(converted, "valid")
    show(str(converted), video, str(tmp_path / "v.webp"), split="valid", frames="0:2")
    first, second = _animation(tmp_path / "v.webp")
    frames = _frames(converted, video, "valid")
    assert frames[0]["mask"] is not None and frames[1]["mask"] is None
    band = (slice(0, 14), slice(45, 80))
    assert (second[band] != frames[1]["image"][band]).any()
    assert np.array_equal(second[20:], frames[1]["image"][20:])  # nothing else drawn without a mask


def test_objects_option_draws_only_those(converted: Path, tmp_path: Path) -> None:
    """--objects 1: other objects' pixels stay as the frame."""
    video = _video(converted)
    show(str(converted), video, str(tmp_path / "v.webp"), frames="0:1", objects=[1])
    got = _animation(tmp_path / "v.webp")[0]
    frame = _frames(converted, video)[0]
    others = _interior((frame["mask"] > 1) & (frame["mask"] < 255), 1)
    others[BANNER] = False
    assert others.any()
    assert np.array_equal(got[others], frame["image"][others])


def test_gif_png_and_mp4(converted: Path, tmp_path: Path) -> None:
    """A gif has one image per selected frame, the png is a grid of them, the mp4 decodes to as many."""
    video = _video(converted)
    show(str(converted), video, str(tmp_path / "v.gif"), frames="::2")
    gif = _animation(tmp_path / "v.gif")
    assert len(gif) == 4 and gif[0].shape == (120, 160, 3)
    show(str(converted), video, str(tmp_path / "v.webp"), frames="::2")
    result = show(str(converted), video, str(tmp_path / "v.png"), frames="::2")
    sheet = np.asarray(Image.open(tmp_path / "v.png").convert("RGB"))
    assert sheet.shape == (240, 320, 3) and result.size == (320, 240)
    webp = _animation(tmp_path / "v.webp")
    assert np.array_equal(sheet[120:, 160:], webp[3])
    av = pytest.importorskip("av")
    show(str(converted), video, str(tmp_path / "v.mp4"), frames="0:5")
    with av.open(str(tmp_path / "v.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5


def test_pred_side_by_side_with_j(converted: Path, tmp_path: Path) -> None:
    """With --pred the frame is twice as wide and J is 1 where the prediction is the ground truth."""
    video = _video(converted)
    frames = _frames(converted, video)
    pred = tmp_path / "pred" / video
    pred.mkdir(parents=True)
    for i, frame in enumerate(frames):
        ids = frame["mask"] if i % 2 == 0 else np.zeros_like(frame["mask"])
        img = Image.fromarray(ids, mode="P")
        img.putpalette(overlay.PALETTE.flatten().tolist())
        img.save(pred / f"{frame['frame_name']}.png")
    result = show(str(converted), video, str(tmp_path / "p.webp"), pred=str(tmp_path / "pred"))
    assert result.size == (320, 120)
    assert result.scores[0] == 1.0 and result.scores[1] == 0.0
    drawn = _animation(tmp_path / "p.webp")
    far = _far(frames[1]["mask"])
    diff = (drawn[1][:, 160:] != frames[1]["image"]).any(-1) & far
    assert not diff.any(), np.nonzero(diff)  # empty prediction: the frame


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["nosuchvideo"], "no video 'nosuchvideo'"),
        (["VIDEO", "--split", "test"], "no split 'test'"),
        (["VIDEO", "--frames", "20:30"], "out of range"),
        (["VIDEO", "--frames", "a:b"], "not a Python slice"),
        (["VIDEO", "--objects", "9"], "object 9 is not in video"),
        (["VIDEO", "--short-side", "0"], "short"),
    ],
)
def test_bad_input_one_line_no_file(converted: Path, tmp_path: Path, capsys, extra, message) -> None:
    """Unknown video or split, frames out of range: one line naming it, non-zero exit, no file."""
    video = _video(converted)
    dest = tmp_path / "x.webp"
    args = ["show", str(converted), *[video if a == "VIDEO" else a for a in extra], "-o", str(dest)]
    assert main(args) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert list(tmp_path.iterdir()) == []


def test_unknown_format(converted: Path, tmp_path: Path, capsys) -> None:
    """An extension we do not write is named, nothing is written."""
    assert main(["show", str(converted), _video(converted), "-o", str(tmp_path / "x.bmp")]) == 2
    assert "unknown image format '.bmp'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_prints_what_it_wrote(converted: Path, tmp_path: Path, capsys) -> None:
    """The command names the file, the frames and the size."""
    video = _video(converted)
    assert main(["show", str(converted), video, "--frames=-3:", "-o", str(tmp_path / "v.gif")]) == 0
    assert f"3 frames of train/{video}, 160x120" in capsys.readouterr().out


@pytest.mark.s3
def test_show_from_s3_reads_only_the_video(s3_converted: str, s3_server, tmp_path: Path, monkeypatch) -> None:
    """From s3://, the shards are read only in ranges inside the video's own members."""
    reads: list[tuple[str, int, int]] = []
    original = Store.read_range

    def counting(self: Store, rel: str, start: int, size: int) -> bytes:
        reads.append((rel, start, size))
        return original(self, rel, start, size)

    monkeypatch.setattr(Store, "read_range", counting)
    options = s3_server.storage_options()
    reader = FrameReader(s3_converted, options)
    index = reader.index("train")
    video = sorted(index.video_ids.to_pylist())[1]
    entry = index.video(index.position(video))
    low, high = entry.start, entry.end
    result = show(s3_converted, video, str(tmp_path / "s.webp"), storage_options=options, frames="2:6")
    assert result.frames == 4 and len(_animation(tmp_path / "s.webp")) == 4
    shard_reads = [r for r in reads if r[0].endswith(".tar")]
    assert 1 <= len(shard_reads) <= 4
    assert all(low <= start and start + size <= high for _, start, size in shard_reads)


def test_pred_zip_member_is_bounded_like_evaluate(converted: Path, tmp_path: Path, capsys) -> None:
    """show --pred reads a zip as evaluate does: a PNG declaring 60000x60000 is one line naming the
    member (the pixel cap before decoding), no file written."""
    import struct
    import zipfile
    import zlib

    video = _video(converted)
    name = _frames(converted, video)[0]["frame_name"]
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 3, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    pred = tmp_path / "pred.zip"
    with zipfile.ZipFile(pred, "w") as zf:
        zf.writestr(f"Annotations/{video}/{name}.png", b"\x89PNG\r\n\x1a\n" + chunk)
    dest = tmp_path / "p.webp"
    assert main(["show", str(converted), video, "--pred", str(pred), "-o", str(dest)]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{video}/{name}.png" in err and "60000x60000" in err
    assert not dest.exists()
