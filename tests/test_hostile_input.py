"""Hostile and broken input built for the purpose (a few KB each): pixel bombs, truncated masks,
random bytes, credentials in URLs, names that cannot round-trip. Each gives one line naming the file,
a non-zero exit and nothing committed; `--on-error skip` leaves the video out and finishes."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mose_shards.cli import main
from mose_shards.core.images import DEFAULT_MAX_PIXELS, header_size
from mose_shards.core.maskpng import decode_mask
from mose_shards.loader.decode import decode_frame_mask, decode_image
from mose_shards.synth import SynthSpec, generate
from tests.test_bad_input import _assert_nothing_committed, _assert_refused, _frame, _videos

SPEC = SynthSpec(videos=3, frames=4, size=(64, 48), seed=11, splits=("train",))
BOMB = (60000, 60000)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A fresh raw tree (root holding train/) that the test may break."""
    return generate(tmp_path / "raw", spec=SPEC)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(body, zlib.crc32(kind)))


def gray_png(width: int, height: int, rows: int) -> bytes:
    """An 8-bit grayscale PNG declaring width x height whose image data holds `rows` rows (ids 0/1)."""
    raw = b"".join(b"\0" + bytes([i % 2]) * width for i in range(rows))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw))
        + _chunk(b"IEND", b"")
    )


def jpeg_declaring(size: tuple[int, int]) -> bytes:
    """A real tiny JPEG whose frame header is patched to declare `size`."""
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 10, 10)).save(buffer, format="JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, size[1], size[0])
    return bytes(data)


def test_headers_are_read_without_decoding() -> None:
    """The pixel cap reads (width, height) from the PNG and JPEG headers."""
    assert header_size(gray_png(*BOMB, rows=1)) == BOMB
    assert header_size(jpeg_declaring(BOMB)) == BOMB
    assert header_size(b"GIF89a") is None
    assert DEFAULT_MAX_PIXELS >= 7680 * 4320 * 2  # well above 8K video


def test_decoders_refuse_bombs_in_one_line() -> None:
    """Every decoder of untrusted images says what is wrong in one line, never a PIL traceback."""
    for call in (
        lambda: decode_mask(gray_png(*BOMB, rows=1)),
        lambda: decode_frame_mask(gray_png(*BOMB, rows=1), True),
        lambda: decode_image(jpeg_declaring(BOMB)),
    ):
        with pytest.raises(ValueError, match=r"declares 60000x60000 = 3600000000 pixels, above the limit"):
            call()
    with pytest.raises(ValueError, match="not a readable image"):
        decode_image(b"\xff\xd8" + bytes(range(256)) * 8 + b"\xff\xd9")


def test_truncated_mask_is_refused_everywhere() -> None:
    """A mask whose image data holds 2 of its 24 rows is refused by the converter's and the loader's
    decoders alike (Pillow alone fills the rest with background)."""
    cut, whole = gray_png(32, 24, rows=2), gray_png(32, 24, rows=24)
    with Image.open(io.BytesIO(cut)) as img:
        assert np.asarray(img).shape == (24, 32)  # what Pillow does on its own: accepts it
    for decode in (decode_mask, lambda d: decode_frame_mask(d, True)):
        with pytest.raises(ValueError, match="truncated PNG: its image data holds 2 of its 24 rows"):
            decode(cut)
        assert decode(whole).shape == (24, 32)


def _hostile_cases(tree: Path) -> dict[str, tuple[Path, bytes, str]]:
    """name -> (file of the tree, hostile bytes, what the error line says)."""
    mask, jpg = _frame(tree, video=0, kind="png"), _frame(tree, video=0)
    return {
        "png-bomb": (mask, gray_png(*BOMB, rows=1), "declares 60000x60000"),
        "jpeg-bomb": (jpg, jpeg_declaring(BOMB), "declares 60000x60000"),
        "png-cut": (mask, gray_png(64, 48, rows=2), "truncated PNG: its image data holds 2 of its 48 rows"),
        "jpeg-random": (jpg, b"\xff\xd8" + os.urandom(2048) + b"\xff\xd9", "not a readable JPEG"),
    }


@pytest.mark.parametrize("case", ["png-bomb", "jpeg-bomb", "png-cut", "jpeg-random"])
def test_convert_refuses_hostile_images(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """Strict: exit 1, one line naming the file, nothing committed. Skip: the video is left out with
    that reason and the others convert."""
    path, data, problem = _hostile_cases(tree)[case]
    path.write_bytes(data)
    out = tmp_path / "out"
    code = main(["convert", str(tree), str(out), "--shard-size", "1", "--workers", "1", "-q"])
    err = capsys.readouterr().err
    _assert_refused(code, err, out, str(path), problem)
    assert "<_io.BytesIO" not in err and "Traceback" not in err
    skipped = tmp_path / "skipped"
    args = ["convert", str(tree), str(skipped), "--workers", "1", "-q", "--on-error", "skip"]
    assert main(args) == 0
    capsys.readouterr()
    split = json.loads((skipped / "manifest.json").read_text())["splits"]["train"]
    assert [e["video_id"] for e in split["skipped"]] == [_videos(tree)[0]]
    assert split["skipped"][0]["reason"].startswith(f"{path}: ") and problem in split["skipped"][0]["reason"]
    assert split["videos"] == SPEC.videos - 1


def test_max_pixels_option(tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--max-pixels lowers (or raises) the cap: 64x48 frames fail under 3000 pixels, pass at 64x48."""
    out = tmp_path / "low"
    code = main(["convert", str(tree), str(out), "--workers", "1", "-q", "--max-pixels", "3000"])
    _assert_refused(
        code, capsys.readouterr().err, out, "declares 64x48 = 3072 pixels, above the limit of 3000"
    )
    assert (
        main(["convert", str(tree), str(tmp_path / "ok"), "--workers", "1", "-q", "--max-pixels", "64x48"])
        == 0
    )
    capsys.readouterr()
    assert main(["convert", str(tree), str(tmp_path / "bad"), "-q", "--max-pixels", "lots"]) == 2
    assert "--max-pixels must be a number of pixels or WxH, got 'lots'" in capsys.readouterr().err


def _peak_rss_of_convert(args: list[str], tmp_path: Path) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in bytes) of `mose-shards convert` in a fresh process."""
    script = (
        "import resource, sys\nfrom mose_shards.cli import main\ncode = main(sys.argv[1:])\n"
        "who = (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)\n"
        "peak = max(resource.getrusage(w).ru_maxrss for w in who)\n"
        "print('PEAK', peak * 1024, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, "convert", *args], capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("PEAK ")
    return done.returncode, "\n".join(lines[:-1]), int(lines[-1].split()[1])


def test_pixel_bomb_memory_stays_small(tree: Path, tmp_path: Path) -> None:
    """A 60000x60000 mask is refused from its header: the process stays far under 1 GB."""
    mask = _frame(tree, video=1, kind="png")
    mask.write_bytes(gray_png(*BOMB, rows=1))
    out = tmp_path / "out"
    code, err, peak = _peak_rss_of_convert([str(tree), str(out), "--workers", "1", "-q"], tmp_path)
    assert code == 1 and str(mask) in err and "declares 60000x60000" in err and "Traceback" not in err
    assert peak < 1_000_000_000
    _assert_nothing_committed(out)


# --- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["back\\slash", "new\nline", "tab\there", " padded", "padded ", "bell\x07", "line\u2028sep"]
)
def test_names_that_cannot_round_trip_are_refused(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """A video folder whose name export, the loader or a video list cannot carry is refused at convert
    time in one line naming it; under --on-error skip it is left out and the rest converts."""
    first = _videos(tree)[0]
    for folder in ("JPEGImages", "Annotations"):
        (tree / "train" / folder / first).rename(tree / "train" / folder / name)
    out = tmp_path / "out"
    code = main(["convert", str(tree), str(out), "--workers", "1", "-q"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("mose-shards: error: ")]
    assert len(errors) == 1 and f"video name {name!r}" in errors[0]
    _assert_nothing_committed(out)
    skipped = tmp_path / "skipped"
    assert main(["convert", str(tree), str(skipped), "--workers", "1", "-q", "--on-error", "skip"]) == 0
    capsys.readouterr()
    split = json.loads((skipped / "manifest.json").read_text())["splits"]["train"]
    assert [e["video_id"] for e in split["skipped"]] == [name] and split["videos"] == SPEC.videos - 1


def test_video_list_refuses_a_name_it_cannot_write() -> None:
    """`--format video-list` writes one id a line: an id with a newline is refused, not split in two."""
    import pyarrow as pa

    from mose_shards.analytics.query import video_list
    from mose_shards.core.errors import ConfigError

    assert video_list(pa.table({"video_id": ["a", "b", "a"]})) == ["a", "b"]
    with pytest.raises(ConfigError, match=r"video name 'two\\nlines' holds a control"):
        video_list(pa.table({"video_id": ["a", "two\nlines"]}))


# --- URLs and credentials ----------------------------------------------------------------------------

SECRET_URL = "http://alice:PASSWORD@127.0.0.1:9/train.tar"


def test_redact_masks_userinfo() -> None:
    """The password (or a lone user part, often a token) of every URL in a text becomes ***."""
    from mose_shards.core.urls import redact

    assert redact(f"{SECRET_URL}: not found") == "http://alice:***@127.0.0.1:9/train.tar: not found"
    assert redact("a https://ghp_token@host/x and s3://bucket/k") == "a https://***@host/x and s3://bucket/k"
    assert redact("mail alice@example.com") == "mail alice@example.com"


def test_no_credential_in_errors_manifest_or_card() -> None:
    """Errors, ProblemsError lines, the manifest's source and skipped reasons and the card mask it."""
    from mose_shards.conversion.card import card_text
    from mose_shards.core import manifest
    from mose_shards.core.errors import DataError, OutputError, ProblemsError

    for exc in (
        DataError(f"{SECRET_URL}/JPEGImages/v/0.jpg", "truncated"),
        OutputError(f"{SECRET_URL}: gone"),
    ):
        assert "PASSWORD" not in str(exc) and "alice:***@" in str(exc)
    assert all("PASSWORD" not in p for p in ProblemsError([f"{SECRET_URL}: bad"]).problems)
    doc = manifest.build(
        source=SECRET_URL,
        options={"void_label": 255, "shard_size": 1, "layout": [], "splits": None, "pipeline": None},
        results=[],
        skipped={"train": [{"video_id": "v", "reason": f"{SECRET_URL}/v: broken"}]},
        split_names=["train"],
    )
    assert "PASSWORD" not in json.dumps(doc) and doc["source"] == "http://alice:***@127.0.0.1:9/train.tar"
    assert "PASSWORD" not in card_text({**doc, "source": SECRET_URL})


def test_cli_never_shows_the_password(tmp_path: Path) -> None:
    """An unreachable URL with credentials: one line, masked, also in -v log lines, exit 1, within seconds."""
    done = subprocess.run(
        [sys.executable, "-m", "mose_shards.cli", "convert", SECRET_URL, str(tmp_path / "out"), "-q", "-v"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "PASSWORD" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("mose-shards: error: ")]
    assert len(errors) == 1 and "alice:***@127.0.0.1:9" in errors[0]
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_logging_filter_masks_arguments() -> None:
    """The CLI's log filter masks a URL passed as a %-argument, after formatting."""
    import logging

    from mose_shards.core.urls import RedactingFilter

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "reading %s", (SECRET_URL,), None)
    assert (
        RedactingFilter().filter(record)
        and record.getMessage() == "reading http://alice:***@127.0.0.1:9/train.tar"
    )


# --- storage options and unreachable stores ------------------------------------------------------------


def test_output_option_takes_json_objects(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`config_kwargs={...}` is parsed as JSON; broken JSON or a non-object is one line, exit 2."""
    from mose_shards.cli.common import storage_options

    assert storage_options(['config_kwargs={"connect_timeout": 5}']) == {
        "config_kwargs": {"connect_timeout": 5}
    }
    for value in ("config_kwargs={oops", "config_kwargs=5"):
        assert main(["convert", str(tmp_path), "s3://b/out", "-q", "--output-option", value]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--output-option config_kwargs" in err


@pytest.mark.parametrize("command", ["convert", "query"])
def test_unreachable_s3_endpoint_is_one_line(tmp_path: Path, command: str) -> None:
    """An S3 endpoint nobody listens on: one line naming the URL and the endpoint, exit 1, quickly
    (the probe's client does not retry for 8-12 s; no wall-time assertion, the timeout only guards)."""
    endpoint = "http://127.0.0.1:9"
    options = [f"endpoint_url={endpoint}", "key=a", "secret=b"]
    url = "s3://bucket/train.tar" if command == "convert" else "s3://bucket/out"
    args = (
        ["convert", url, str(tmp_path / "out"), "-q"] if command == "convert" else ["query", url, "SELECT 1"]
    )
    args += [arg for option in options for arg in ("--storage-option", option)]
    done = subprocess.run(
        [sys.executable, "-m", "mose_shards.cli", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{url}: cannot reach the object store at http://127.0.0.1:9" in lines[0]


def test_plan_json_records_the_source_masked(tree: Path, tmp_path: Path) -> None:
    """plan.json keeps the fingerprint, the byte options and the source (so a rerun can name both
    sources), the source with any URL credential masked."""
    from mose_shards.conversion.config import ConvertConfig
    from mose_shards.conversion.orchestrate import _prepare
    from mose_shards.core.storage import Store

    out = tmp_path / "out"
    assert main(["convert", str(tree), str(out), "--workers", "1", "-q"]) == 0
    plan = json.loads((out / ".mose-shards" / "plan.json").read_text())
    assert set(plan) == {"fingerprint", "options", "source"} and plan["source"] == str(tree)
    (tmp_path / "other").mkdir()
    _prepare(Store(str(tmp_path / "other")), ConvertConfig(source=SECRET_URL, output="x"), "digest")
    written = (tmp_path / "other" / ".mose-shards" / "plan.json").read_text()
    assert (
        "PASSWORD" not in written
        and json.loads(written)["source"] == "http://alice:***@127.0.0.1:9/train.tar"
    )
