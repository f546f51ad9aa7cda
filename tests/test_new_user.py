"""What a new user tripped on (issue 21): --workers, debris of a failed convert, rerun messages, help,
the torch hint and the progress bars."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mose_shards.cli import main
from mose_shards.cli.common import ProgressBar
from mose_shards.conversion.executors import available_cores


def _err_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "argv",
    [
        ["convert", "SRC", "OUT", "--workers", "0"],
        ["convert", "SRC", "OUT", "--workers", "-1"],
        ["verify", "OUT", "--workers", "0"],
        ["export", "OUT", "DEST", "--workers", "-3"],
        ["evaluate", "OUT", "PRED", "--workers", "0"],
    ],
)
def test_workers_below_one_is_refused_by_every_command(argv: list[str], capsys) -> None:
    """--workers 0 or below: exit 2 and one error line saying what omitting --workers does."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1, errors
    assert "--workers" in errors[0] and "must be at least 1" in errors[0]
    assert "omit --workers for" in errors[0]
    if argv[0] == "convert":
        assert "omit --workers for all cores" in errors[0]


def test_workers_above_the_cores_are_capped_and_said_once(converted: Path, capsys) -> None:
    """verify --workers 10000 uses the cores available and says so in one warning line."""
    assert main(["verify", str(converted), "--workers", "10000", "-q"]) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert warnings == [
        f"mose-shards: warning: --workers 10000: using the {available_cores()} cores available"
    ]


def test_convert_workers_are_capped_once(raw_tree: Path, tmp_path: Path, capsys) -> None:
    """convert --workers 10000 on this machine: one warning, a finished output."""
    out = tmp_path / "out"
    assert main(["convert", str(raw_tree), str(out), "--workers", "10000", "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("--workers 10000: using the") == 1
    assert (out / "manifest.json").is_file()


def test_a_missing_source_leaves_no_output_folder(tmp_path: Path, capsys) -> None:
    """convert of a SRC that does not exist: exit 1, one error line, OUT not created."""
    out = tmp_path / "new" / "out"
    assert main(["convert", str(tmp_path / "nothing-here"), str(out), "-q"]) == 1
    assert len(_err_lines(capsys.readouterr().err)) == 1
    assert not out.exists()


def test_a_file_that_is_no_tar_leaves_no_output_folder(tmp_path: Path, capsys) -> None:
    """convert of a .tar that is not a tar: exit 1, one error line naming it, OUT not created."""
    src, out = tmp_path / "train.tar", tmp_path / "out"
    src.write_bytes(b"this is not a tar archive\n" * 3)
    assert main(["convert", str(src), str(out), "-q"]) == 1
    lines = _err_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "train.tar" in lines[0]
    assert not out.exists()


def test_a_failed_convert_into_an_empty_folder_keeps_it_empty(tmp_path: Path, capsys) -> None:
    """OUT that existed (empty) stays, and stays empty: no .mose-shards/ left behind."""
    out = tmp_path / "out"
    out.mkdir()
    assert main(["convert", str(tmp_path / "nothing-here"), str(out), "-q"]) == 1
    assert out.is_dir() and list(out.iterdir()) == []


def test_rerun_into_a_finished_output_with_other_options_says_finished(
    converted: Path, raw_tree: Path, tmp_path: Path, capsys
) -> None:
    """Another --shard-size into a finished output: 'finished', the option with its old and new value."""
    out = tmp_path / "out"
    shutil.copytree(converted, out)
    assert main(["convert", str(raw_tree), str(out), "--shard-size", "5MB", "-q"]) == 2
    err = capsys.readouterr().err
    assert "holds a finished conversion" in err and "unfinished" not in err
    assert "shard_size 150000 -> 5000000" in err and "--overwrite" in err


def test_rerun_from_another_source_names_both(
    converted: Path, raw_tree: Path, tmp_path: Path, capsys
) -> None:
    """Another SRC (with other content) into a finished output: the message names the old and the new."""
    out, other = tmp_path / "out", tmp_path / "other-src"
    shutil.copytree(converted, out)
    shutil.copytree(raw_tree, other)
    video = sorted((other / "train" / "JPEGImages").iterdir())[0]
    (video / "00000.jpg").write_bytes((video / "00001.jpg").read_bytes() + b"\0")
    assert main(["convert", str(other), str(out), "--shard-size", "150000", "-q"]) == 2
    err = capsys.readouterr().err
    assert "holds a finished conversion made with other input" in err
    assert str(raw_tree) in err and str(other) in err


@pytest.mark.parametrize("command", ["info", "verify", "export", "demo", "browse"])
def test_every_command_help_has_examples(command: str, capsys) -> None:
    """`COMMAND --help` ends with an examples: section that uses the command."""
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    examples = out.split("examples:", 1)
    assert len(examples) == 2, out
    assert f"mose-shards {command} " in examples[1]


def test_clip_loader_without_torch_gives_the_install_hint() -> None:
    """With torch unimportable, importing ClipLoader raises MissingDependencyError with the pip hint."""
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"  # `import torch` now fails as if it were not installed
        "try:\n"
        "    from mose_shards.loader import ClipLoader\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.strip()
        == "MissingDependencyError torch is not installed: pip install 'mose-shards[torch]'"
    )


def test_progress_bar_scales_large_counts(monkeypatch) -> None:
    """Frames in the millions show as 8.75M/10.0M with a scaled rate, not 8753330.09frame/s."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    with ProgressBar(disabled=False) as bar:
        bar.update("frames", 8_753_330, 10_000_000)
    text = stream.getvalue()
    assert "10.0M" in text, text
    assert "8753330" not in text and "10000000" not in text
