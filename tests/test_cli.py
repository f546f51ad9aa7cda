"""The command line: help that teaches, summaries, and one-line errors with non-zero exits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mose_shards.cli import main


def run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("mose-shards: error:")]


def test_help_lists_commands_and_examples() -> None:
    """`mose-shards --help` runs as a real process and shows commands and examples."""
    proc = subprocess.run([sys.executable, "-m", "mose_shards.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for word in ("convert", "info", "demo", "examples:"):
        assert word in proc.stdout


def test_convert_help_explains_options(capsys) -> None:
    """`convert --help` documents the shard size, void label and pipelines."""
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    for word in ("--shard-size", "--void-label", "mose-v1", "davis-2017", "--on-error"):
        assert word in out


def test_convert_prints_a_summary_and_info_reads_it(raw_tree: Path, tmp_path: Path, capsys) -> None:
    """convert ends with one summary line; info prints per-split counts from the manifest."""
    out = tmp_path / "out"
    code, stdout, _ = run(["convert", str(raw_tree), str(out), "--shard-size", "150KB", "-q"], capsys)
    assert code == 0
    assert len(stdout.strip().splitlines()) == 1 and "converted 8 videos" in stdout
    code, stdout, _ = run(["info", str(out)], capsys)
    manifest = json.loads((out / "manifest.json").read_text())
    assert code == 0
    for split, entry in manifest["splits"].items():
        line = next(x for x in stdout.splitlines() if x.strip().startswith(split))
        assert line.split()[1:3] == [str(entry["videos"]), str(entry["frames"])]


def test_demo_generates_converts_and_explains(tmp_path: Path, capsys) -> None:
    """`mose-shards demo DIR` writes DIR/raw and DIR/out and says how to read them."""
    code, stdout, _ = run(["demo", str(tmp_path / "d"), "--videos", "2", "--frames", "4", "-q"], capsys)
    assert code == 0
    assert (tmp_path / "d" / "out" / "manifest.json").is_file()
    assert "read it back" in stdout and "webdataset" in stdout


def test_unknown_layout_is_one_line(tmp_path: Path, capsys) -> None:
    """A folder that is not a VOS tree gives one error line naming it."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("hello")
    code, _, err = run(["convert", str(tmp_path / "src"), str(tmp_path / "out")], capsys)
    assert code == 1
    lines = error_lines(err)
    assert len(lines) == 1
    assert lines[0].startswith(f"mose-shards: error: {tmp_path / 'src'}: unknown layout")
    assert "Traceback" not in err


def test_mask_without_frame_names_the_mask(raw_tree: Path, tmp_path: Path, capsys) -> None:
    """A mask whose JPEG is missing: exit 1, the PNG named, no manifest."""
    tree = tmp_path / "train"
    shutil.copytree(raw_tree / "train", tree)
    victim = sorted((tree / "JPEGImages").glob("*/*.jpg"))[2]
    victim.unlink()
    out = tmp_path / "out"
    code, _, err = run(["convert", str(tree), str(out), "-q"], capsys)
    lines = error_lines(err)
    assert code == 1 and len(lines) == 1
    assert f"{victim.parent.name}/{victim.stem}.png" in lines[0] and "without a frame" in lines[0]
    assert not (out / "manifest.json").exists()


def test_mask_size_mismatch_names_the_mask(raw_tree: Path, tmp_path: Path, capsys) -> None:
    """A mask one pixel narrower than its frame: exit 1, one line with both sizes."""
    tree = tmp_path / "valid"
    shutil.copytree(raw_tree / "valid", tree)
    victim = sorted((tree / "Annotations").glob("*/*.png"))[0]
    ids = np.asarray(Image.open(victim))
    Image.fromarray(ids[:, :-1]).save(victim)
    out = tmp_path / "out"
    code, _, err = run(["convert", str(tree), str(out), "-q"], capsys)
    lines = error_lines(err)
    assert code == 1 and len(lines) == 1
    h, w = ids.shape
    assert str(victim) in lines[0] and f"{w - 1}x{h}" in lines[0] and f"{w}x{h}" in lines[0]
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--pipeline", "nope"], "unknown pipeline 'nope'; known: davis-2017, demo, mose-v1"),
        (["--shard-size", "12 parsecs"], "not a byte size"),
        (["--void-label", "300"], "--void-label must be 1..255"),
        (["--storage-option", "novalue"], "KEY=VALUE"),
    ],
)
def test_bad_options_exit_2_with_a_message(raw_tree: Path, tmp_path: Path, capsys, args, message) -> None:
    """Option mistakes exit 2 with one line that says what is wrong."""
    code, _, err = run(["convert", str(raw_tree), str(tmp_path / "out"), *args], capsys)
    assert code == 2
    assert message in err and len(error_lines(err)) == 1


def test_info_on_a_folder_without_manifest(tmp_path: Path, capsys) -> None:
    """info on an unfinished or foreign folder says there is no manifest."""
    code, _, err = run(["info", str(tmp_path)], capsys)
    assert code == 1 and "no manifest" in err


def test_public_api_is_lazy_and_complete() -> None:
    """`import mose_shards` loads no pyarrow/torch; every name in __all__ resolves except the loader's."""
    code = (
        "import sys, mose_shards; heavy = [m for m in ('pyarrow', 'torch', 'ray') if m in sys.modules]; "
        "print(heavy); print(sorted(set(mose_shards.__all__) ^ set(mose_shards._EXPORTS) ^ {'__version__'}))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.splitlines() == ["[]", "[]"]
    import mose_shards

    # a submodule import must not shadow the function of the same name
    import mose_shards.conversion.orchestrate

    for name in mose_shards.__all__:
        assert getattr(mose_shards, name) is not None
    assert callable(mose_shards.convert) and not isinstance(mose_shards.convert, type(mose_shards))


def test_convert_reports_its_plan_and_progress_on_stderr(raw_tree: Path, tmp_path: Path, capsys) -> None:
    """Without -q, stderr says what was planned and shows a progress bar; stdout keeps the summary."""
    code, stdout, err = run(
        ["convert", str(raw_tree), str(tmp_path / "out"), "--shard-size", "150KB"], capsys
    )
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    shards = sum(len(s["shards"]) for s in manifest["splits"].values())
    assert code == 0
    assert f"mose-shards: planned 8 videos into {shards} shards" in err
    assert "frame" in err and "100%" in err
    assert "converted 8 videos" in stdout and "planned" not in stdout


def test_every_shipped_pipeline_builds_a_config() -> None:
    """Each pipelines/*.toml loads into a valid ConvertConfig (known keys, sizes, void labels)."""
    from mose_shards.conversion.config import from_pipeline, pipeline_names

    names = pipeline_names()
    assert {"mose-v1", "mose-v2", "davis-2017", "youtube-vos", "demo"} <= set(names)
    for name in names:
        config = from_pipeline(name, "src", "out")
        assert config.pipeline == name and config.shard_size > 0


def test_pipeline_with_an_unknown_layout_key_is_refused(tmp_path: Path, monkeypatch) -> None:
    """A typo in a pipeline file's [layout] fails loudly instead of being ignored."""
    from mose_shards.conversion import config as config_mod

    (tmp_path / "typo.toml").write_text('[layout]\nimage_dir = "Frames"\n')
    monkeypatch.setattr(config_mod, "pipelines_dir", lambda: tmp_path)
    with pytest.raises(config_mod.ConfigError, match=r"typo.toml: unknown \[layout\] key\(s\) image_dir"):
        config_mod.from_pipeline("typo", "src", "out")
