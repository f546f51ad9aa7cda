"""Sources as they ship: .tar.gz, .tgz, split parts, the Hub folder, .zip; checksums; bad archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import shutil
import struct
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from mose_shards import archives
from mose_shards.archives import gzcheckpoints
from mose_shards.archives import listing as archive_listing
from mose_shards.cli import main
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.core import tarscan
from mose_shards.core.errors import ConfigError, LayoutError
from mose_shards.synth import SynthSpec, generate
from tests.conftest import SMALL_SHARD
from tests.helpers import davis_tree, table, tar_bytes, tree_bytes


def make_tar(root: Path, names: list[str], dest: Path) -> Path:
    """A tar of root/<name> for each name, in sorted order (tar's own member order)."""
    with tarfile.open(dest, "w") as archive:
        for name in names:
            archive.add(root / name, arcname=name)
    return dest


def cut(data: bytes, dest: Path, stem: str, count: int, numeric: bool = False) -> list[Path]:
    """`data` cut into `count` parts named like split(1): stem.aa, stem.ab, ... or stem.001, ..."""
    size = -(-len(data) // count)
    paths = []
    for i in range(count):
        suffix = f"{i + 1:03d}" if numeric else "a" + chr(ord("a") + i)
        path = dest / f"{stem}.{suffix}"
        path.write_bytes(data[i * size : (i + 1) * size])
        paths.append(path)
    return paths


def write_sums(folder: Path) -> None:
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted(folder.iterdir())]
    (folder / "SHA256SUMS").write_text("\n".join(lines) + "\n")


def hub(raw: Path, dest: Path) -> Path:
    """The Hugging Face layout: train.tar.gz.aa..ac, valid.tar.gz and SHA256SUMS."""
    dest.mkdir(parents=True)
    train = gzip.compress(make_tar(raw, ["train"], dest / "t.tar").read_bytes(), mtime=0)
    (dest / "t.tar").unlink()
    cut(train, dest, "train.tar.gz", 3)
    (dest / "valid.tar.gz").write_bytes(gzip.compress(make_tar(raw, ["valid"], dest / "v.tar").read_bytes()))
    (dest / "v.tar").unlink()
    write_sums(dest)
    return dest


def _tgz(raw: Path, dest: Path) -> Path:
    dest.mkdir()
    data = gzip.compress(make_tar(raw, ["train", "valid"], dest / "x.tar").read_bytes())
    (dest / "x.tar").unlink()
    (dest / "mose.tgz").write_bytes(data)
    return dest / "mose.tgz"


def _numeric_parts(raw: Path, dest: Path) -> Path:
    dest.mkdir()
    for split in ("train", "valid"):
        data = make_tar(raw, [split], dest / "x.tar").read_bytes()
        cut(data, dest, f"{split}.tar", 2, numeric=True)
    (dest / "x.tar").unlink()
    return dest


def _zip(raw: Path, dest: Path, prefix: str = "") -> Path:
    """A zip of the tree: JPEGs stored, PNGs and JSON deflated (as zip tools do by extension)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w") as archive:
        for path in sorted(raw.rglob("*")):
            method = zipfile.ZIP_STORED if path.suffix == ".jpg" else zipfile.ZIP_DEFLATED
            archive.write(path, f"{prefix}{path.relative_to(raw)}", compress_type=method)
    return dest


def _split_zips(raw: Path, dest: Path) -> Path:
    for split in ("train", "valid"):
        _zip(raw / split, dest / f"{split}.zip")
    return dest


def _parts_by_name(raw: Path, dest: Path) -> Path:
    """SRC names train.tar.gz where only its parts exist (and valid comes as its own archive)."""
    return hub(raw, dest) / "train.tar.gz"


FORMS: dict[str, Callable[[Path, Path], Path]] = {
    "hub": hub,
    "tgz": _tgz,
    "tar-numeric-parts": _numeric_parts,
    "zip": lambda raw, dest: _zip(raw, dest / "mose.zip"),
    "zip-per-split": _split_zips,
}


def _without_source(files: dict[str, bytes]) -> dict[str, object]:
    """The files, with the manifest parsed and its `source` (the SRC given) left out."""
    out: dict[str, object] = dict(files)
    doc = json.loads(files["manifest.json"])
    doc.pop("source")
    out["manifest.json"] = doc
    return out


def _expected(converted: Path, splits: tuple[str, ...] = ("train", "valid")) -> dict[str, bytes]:
    want = tree_bytes(converted)
    del want["manifest.json"]
    return {k: v for k, v in want.items() if k.rsplit("/", 1)[-1].split("-")[0] in splits}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_converts_like_the_extracted_folder(
    form: str, raw_tree: Path, converted: Path, tmp_path: Path
) -> None:
    """Each shipped form gives shards and tables byte-identical to converting the extracted tree."""
    source = FORMS[form](raw_tree, tmp_path / "src")
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(source), output=str(out), shard_size=SMALL_SHARD))
    assert _without_source(tree_bytes(out)) == _without_source(tree_bytes(converted))


def test_parts_named_by_their_archive(raw_tree: Path, converted: Path, tmp_path: Path) -> None:
    """SRC may name train.tar.gz when only train.tar.gz.aa.. exist: the parts are that archive."""
    source = _parts_by_name(raw_tree, tmp_path / "src")
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(source), output=str(out), shard_size=SMALL_SHARD))
    got = tree_bytes(out)
    got.pop("manifest.json")
    assert got == _expected(converted, ("train",))


def test_meta_split_json_beside_the_archives(tmp_path: Path) -> None:
    """MOSEv2's meta_<split>.json beside the archives gives the categories meta.json gives."""
    raw = generate(tmp_path / "raw", spec=SynthSpec(videos=2, frames=3, size=(64, 48), categories=True))
    folder_out = tmp_path / "folder-out"
    convert(ConvertConfig(source=str(raw), output=str(folder_out)))
    shipped = tmp_path / "shipped"
    for split in ("train", "valid"):
        shutil.move(raw / split / "meta.json", tmp_path / f"meta_{split}.json")
    hub(raw, shipped)
    for split in ("train", "valid"):
        shutil.move(tmp_path / f"meta_{split}.json", shipped / f"meta_{split}.json")
    out = tmp_path / "out"
    convert(ConvertConfig(source=str(shipped), output=str(out)))
    objects = table(out, "objects")
    assert objects == table(folder_out, "objects")
    assert all(row["category"] for row in objects)


def _convert_cli(source: Path, out: Path, *extra: str) -> int:
    return main(["convert", str(source), str(out), "-q", *extra])


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mose-shards: error")]
    assert len(lines) == 1, lines
    return lines[0]


def _nothing_committed(out: Path) -> None:
    assert not (out / "manifest.json").exists()
    assert not any((out / "shards").rglob("*.tar")) if (out / "shards").exists() else True


def _missing_middle(src: Path) -> str:
    (src / "train.tar.gz.ab").unlink()
    return "train.tar.gz.ab: missing part"


def _truncated_last(src: Path) -> str:
    last = src / "train.tar.gz.ac"
    last.write_bytes(last.read_bytes()[:-100])
    write_sums(src)
    return "train.tar.gz.ac: truncated"


def _not_gzip(src: Path) -> str:
    (src / "valid.tar.gz").write_bytes(b"this is not gzip at all" * 10)
    write_sums(src)
    return "valid.tar.gz: not gzip data"


def _bad_sum(src: Path) -> str:
    sums = (src / "SHA256SUMS").read_text().replace(hashlib.sha256(b"").hexdigest(), "")
    digest = hashlib.sha256((src / "valid.tar.gz").read_bytes()).hexdigest()
    (src / "SHA256SUMS").write_text(sums.replace(digest, "0" * 64))
    return "valid.tar.gz: sha256 mismatch"


def _corrupt_middle(src: Path) -> str:
    middle = src / "train.tar.gz.ab"
    data = bytearray(middle.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + 64):
        data[i] ^= 0x5A
    middle.write_bytes(bytes(data))
    return "train.tar.gz.ab: sha256 mismatch"


def _last_listed_but_missing(src: Path) -> str:
    (src / "train.tar.gz.ac").unlink()
    return "train.tar.gz.ac: listed in the checksums but missing"


BROKEN = {
    "missing-middle-part": _missing_middle,
    "truncated-last-part": _truncated_last,
    "not-gzip": _not_gzip,
    "checksum-mismatch": _bad_sum,
    "corrupted-middle-part": _corrupt_middle,
    "missing-last-part": _last_listed_but_missing,
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_archives_are_refused_by_name(
    case: str, raw_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A broken shipped source stops with one line naming the part at fault; nothing is committed."""
    src = hub(raw_tree, tmp_path / "src")
    expected = BROKEN[case](src)
    out = tmp_path / "out"
    assert _convert_cli(src, out) == 1
    assert expected in _one_error_line(capsys)
    _nothing_committed(out)


def test_corrupted_middle_part_without_checksums_is_refused(
    raw_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without checksums, gzip itself refuses a damaged middle part; the line names the archive."""
    src = hub(raw_tree, tmp_path / "src")
    _corrupt_middle(src)
    out = tmp_path / "out"
    assert _convert_cli(src, out, "--no-verify-source") == 1
    assert "train.tar.gz" in _one_error_line(capsys)
    _nothing_committed(out)


def test_no_verify_source_skips_the_checksums(raw_tree: Path, converted: Path, tmp_path: Path) -> None:
    """--no-verify-source converts intact archives even when the checksum file disagrees."""
    src = hub(raw_tree, tmp_path / "src")
    _bad_sum(src)
    out = tmp_path / "out"
    assert _convert_cli(src, out, "--no-verify-source", "--shard-size", str(SMALL_SHARD)) == 0
    got = tree_bytes(out)
    got.pop("manifest.json")
    assert got == _expected(converted)


def test_zip_member_escaping_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A zip member whose path would escape the archive stops the run, naming the member."""
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("train/JPEGImages/v/00000.jpg", b"x")
        archive.writestr("../evil.jpg", b"x")
    assert _convert_cli(bad, tmp_path / "out") == 1
    assert "bad.zip:../evil.jpg: member path escapes the archive" in _one_error_line(capsys)


def test_listing_and_index_are_saved_and_reused(
    raw_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The archive listing and gzip seek index land under OUT/.mose-shards/; a rerun reads neither
    archive again to plan, and a changed part is never taken for the old one."""
    src = hub(raw_tree, tmp_path / "src")
    out = tmp_path / "out"
    config = ConvertConfig(source=str(src), output=str(out), shard_size=SMALL_SHARD)
    convert(config)
    saved = sorted(p.name for p in (out / ".mose-shards" / "sources").iterdir())
    assert [n.rsplit(".", 1)[1] for n in saved] == ["gzidx", "members", "gzidx", "members"]
    first = tree_bytes(out)
    (out / "manifest.json").unlink()
    shutil.rmtree(out / "shards" / "train")  # as if killed: the rerun must rebuild from the index

    def no_scan(*args: object, **kwargs: object) -> None:
        raise AssertionError("the archive was listed again")

    monkeypatch.setattr(archive_listing, "scan", no_scan)
    archive_listing._INDEXES.clear()  # the workers' view: the index comes from OUT, not from memory
    convert(config)
    assert tree_bytes(out) == first
    monkeypatch.undo()
    part = src / "train.tar.gz.ac"
    part.write_bytes(part.read_bytes())  # same bytes, new mtime: another archive as far as we know
    write_sums(src)
    with pytest.raises(ConfigError, match="source changed"):
        convert(config)


def test_plain_tar_listing_is_saved_and_reused(
    raw_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plain .tar is listed once: the rerun plans from the listing saved under OUT/.mose-shards/."""
    tar = make_tar(raw_tree, ["train", "valid"], tmp_path / "mose.tar")
    out = tmp_path / "out"
    config = ConvertConfig(source=str(tar), output=str(out), shard_size=SMALL_SHARD)
    first = convert(config)
    assert list((out / ".mose-shards" / "sources").glob("*.members"))
    monkeypatch.setattr(archive_listing, "scan", lambda *a, **k: pytest.fail("the tar was listed again"))
    again = convert(config)
    assert again.manifest == first.manifest


def _members(data: bytes) -> list[tuple[str, int, int, str]]:
    return [tuple(m)[:4] for m in tarscan.scan(io.BytesIO(data), "x.tar", size=len(data))]  # type: ignore[misc]


@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_scanner_agrees_with_tarfile(fmt: int) -> None:
    """Names (long, non-ASCII, ustar prefix), offsets and sizes are tarfile's, in every tar format."""
    buffer = io.BytesIO()
    names = ["a/" + "long-name/" * 12 + "00000.jpg", "b/ünïcode/00001.png", "c/00002.jpg"]
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for i, name in enumerate(names):
            info = tarfile.TarInfo(name)
            info.size = 1000 * i + 1
            archive.addfile(info, io.BytesIO(b"x" * info.size))
        folder = tarfile.TarInfo("d")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
    data = buffer.getvalue()
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        want = [(m.name, m.offset_data, m.size, "dir" if m.isdir() else "file") for m in archive]
    assert _members(data) == want


def test_tar_scanner_refuses_a_damaged_header_mid_archive() -> None:
    """A header with a bad checksum after the first is an error naming its offset (tarfile stops
    listing there without a word)."""
    data = bytearray(tar_bytes({f"v/{i:05d}.jpg": b"y" * 10 for i in range(3)}))
    data[1024 + 5] ^= 0x01  # the second header
    with pytest.raises(LayoutError, match="damaged tar header at byte 1024"):
        _members(bytes(data))


def _upload(folder: Path, url: str, options: dict[str, object]) -> None:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **options)
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.pipe_file(f"{root}/{path.relative_to(folder)}", path.read_bytes())


def _remote_tree(url: str, options: dict[str, object]) -> dict[str, bytes]:
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, **options)
    files = fs.find(root)
    return {
        f[len(root) + 1 :]: fs.cat_file(f)
        for f in sorted(files)
        if not f[len(root) + 1 :].startswith((".mose-shards", "manifest.json"))
    }


@pytest.mark.s3
@pytest.mark.slow
def test_every_form_on_s3(s3_server, raw_tree: Path, converted: Path, tmp_path: Path) -> None:
    """Every shipped form, read from SeaweedFS, converts like the local folder; the Hub layout also
    to S3 with two worker processes, which load the gzip seek index from the S3 output."""
    opts = s3_server.storage_options()
    want = _without_source(tree_bytes(converted))
    for form, build in sorted(FORMS.items()):
        source = build(raw_tree, tmp_path / f"{form}-src")
        folder = source if source.is_dir() else source.parent
        _upload(folder, s3_server.url(f"shipped/{form}"), opts)
        url = s3_server.url(f"shipped/{form}") + ("" if source.is_dir() else f"/{source.name}")
        out = tmp_path / f"{form}-out"
        convert(ConvertConfig(source=url, output=str(out), shard_size=SMALL_SHARD, storage_options=opts))
        assert _without_source(tree_bytes(out)) == want, form
    remote_out = s3_server.url("shipped-out/hub")
    convert(ConvertConfig(source=s3_server.url("shipped/hub"), output=remote_out, shard_size=SMALL_SHARD,
                          storage_options=opts, workers=2))  # fmt: skip
    want.pop("manifest.json")
    assert _remote_tree(remote_out, opts) == want


@pytest.mark.s3
def test_real_samples_shipped_on_s3(s3_server, real_data: Path, tmp_path: Path) -> None:
    """The real samples as .tar.gz parts with SHA256SUMS on SeaweedFS convert like their folder."""
    opts = s3_server.storage_options()
    folder_out = tmp_path / "folder-out"
    convert(ConvertConfig(source=str(real_data), output=str(folder_out), on_error="skip"))
    shipped = tmp_path / "hub"
    shipped.mkdir()
    cut(
        gzip.compress(make_tar(real_data, ["valid"], tmp_path / "v.tar").read_bytes()),
        shipped,
        "valid.tar.gz",
        3,
    )
    write_sums(shipped)
    _upload(shipped, s3_server.url("real-hub"), opts)
    out = tmp_path / "out"
    result = convert(
        ConvertConfig(
            source=s3_server.url("real-hub"), output=str(out), on_error="skip", storage_options=opts
        )
    )
    assert [s["video_id"] for s in result.manifest["splits"]["valid"]["skipped"]] == ["judo"]
    got, want = tree_bytes(out), tree_bytes(folder_out)
    got.pop("manifest.json")  # the skipped video's reason names the file where each run found it
    want.pop("manifest.json")
    assert got == want


def test_real_samples_in_every_form(real_data: Path, tmp_path: Path) -> None:
    """The real DAVIS-style samples, shipped as parts of a .tar.gz, a .tgz and a .zip, convert like
    the folder (its known defect skipped alike)."""
    folder_out = tmp_path / "folder-out"
    convert(ConvertConfig(source=str(real_data), output=str(folder_out), on_error="skip"))
    want = tree_bytes(folder_out)
    want.pop("manifest.json")
    shipped = tmp_path / "shipped"
    (shipped / "hub").mkdir(parents=True)  # the samples have a valid split only
    data = gzip.compress(make_tar(real_data, ["valid"], tmp_path / "v.tar").read_bytes())
    cut(data, shipped / "hub", "valid.tar.gz", 3)
    write_sums(shipped / "hub")
    zipped = _zip(real_data / "valid", shipped / "z" / "valid.zip")
    sources = [shipped / "hub", _tgz_of(real_data, shipped / "one.tgz"), zipped]
    for source in sources:
        out = tmp_path / f"out-{source.name}"
        result = convert(ConvertConfig(source=str(source), output=str(out), on_error="skip"))
        assert result.skipped == 1  # judo's 853x480 mask, named like in the folder conversion
        got = tree_bytes(out)
        got.pop("manifest.json")
        assert got == want, source


def _tgz_of(raw: Path, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(gzip.compress(make_tar(raw, ["valid"], dest.with_suffix(".tmp")).read_bytes()))
    dest.with_suffix(".tmp").unlink()
    return dest


@pytest.mark.slow
def test_kill_9_mid_run_then_rerun_is_identical(tmp_path: Path) -> None:
    """kill -9 of `convert` on the Hub layout once a shard is done; the rerun plans from the saved
    listing and index and ends byte-identical to converting the extracted folder."""
    import os
    import signal
    import subprocess
    import sys

    from tests.test_resume import SPEC, _kill_group, _wait_for_first_done_marker

    raw = generate(tmp_path / "raw", spec=SPEC)
    clean = tmp_path / "clean"
    assert main(["convert", str(raw), str(clean), "--shard-size", "1", "--workers", "1", "-q"]) == 0
    src = hub(raw, tmp_path / "hub")
    out = tmp_path / "out"
    command = [
        sys.executable,
        "-m",
        "mose_shards.cli",
        "convert",
        str(src),
        str(out),
        "--shard-size",
        "1",
        "-q",
    ]
    proc = subprocess.Popen([*command, "--workers", "2"], start_new_session=True)
    try:
        _wait_for_first_done_marker(proc, out / ".mose-shards" / "done")
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    finally:
        _kill_group(proc)
    assert not (out / "manifest.json").exists()
    assert len(list((out / ".mose-shards" / "sources").glob("*.gzidx"))) == 2
    rerun = subprocess.run([*command, "--workers", "1", "-v"], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stderr.count("listing reused") == 2  # neither archive is read again to plan
    assert _without_source(tree_bytes(out)) == _without_source(tree_bytes(clean))


def _ship_as(raw: Path, names: list[str], dest: Path) -> None:
    """Lay out `raw` (split folders) under the file names a pipeline says its dataset ships with."""
    dest.mkdir(parents=True)
    if any(n.startswith("meta_") for n in names):  # categories beside the archives, not inside them
        stripped = dest.parent / f"{dest.name}-tree"
        shutil.copytree(raw, stripped)
        for name in names:
            if name.startswith("meta_"):
                split = name.removeprefix("meta_").removesuffix(".json")
                shutil.move(stripped / split / "meta.json", dest / name)
        raw = stripped
    parted: dict[str, int] = {}
    for name in names:
        stem, _, suffix = name.rpartition(".")
        if suffix in ("aa", "ab", "ac", "ad"):
            parted[stem] = parted.get(stem, 0) + 1
    for name in names:
        split = name.split(".")[0]
        if name.startswith("meta_"):
            continue
        if name.endswith(".zip"):
            _zip(raw / split, dest / name, prefix=f"{split}/")
        elif name.endswith((".tar", ".tar.gz")) or name.rpartition(".")[0] in parted:
            data = make_tar(raw, [split], dest / "x.tar").read_bytes()
            (dest / "x.tar").unlink()
            archive = name if name.endswith((".tar", ".tar.gz")) else name.rpartition(".")[0]
            data = gzip.compress(data) if archive.endswith(".gz") else data
            if archive in parted:
                if not (dest / f"{archive}.aa").exists():
                    cut(data, dest, archive, parted[archive])
            else:
                (dest / name).write_bytes(data)
    if "SHA256SUMS" in names:
        write_sums(dest)


@pytest.mark.parametrize("pipeline", ["mose-v1", "mose-v2", "youtube-vos"])
def test_pipelines_read_their_shipped_forms(pipeline: str, tmp_path: Path) -> None:
    """Each dataset pipeline names the files its dataset ships as; that folder, as is, converts like
    the extracted tree (categories from meta_<split>.json included)."""
    from mose_shards.conversion.config import from_pipeline, load_pipeline

    source = load_pipeline(pipeline)["source"]
    forms = [source["shipped"], *([source["also"]] if "also" in source else [])]
    splits = sorted({n.split(".")[0] for n in source["shipped"] if not n.startswith(("meta_", "SHA"))})
    raw = generate(tmp_path / "raw", spec=SynthSpec(videos=2, frames=3, size=(64, 48), splits=tuple(splits),
                                                    categories=True))  # fmt: skip
    folder_out = tmp_path / "folder-out"
    convert(from_pipeline(pipeline, str(raw), str(folder_out)))
    want = _without_source(tree_bytes(folder_out))
    for number, names in enumerate(forms):
        shipped = tmp_path / f"shipped-{number}"
        _ship_as(raw, names, shipped)
        out = tmp_path / f"out-{number}"
        convert(from_pipeline(pipeline, str(shipped), str(out)))
        assert _without_source(tree_bytes(out)) == want, names


def test_gzip_index_over_many_seek_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A .tar.gz in three parts spanning many seek points, listed by two decoder threads while its
    parts are hashed: every member read back through the saved index, in reverse order and in
    another process's view (index loaded from OUT), is the tar's bytes."""
    import random

    from mose_shards.archives import find_sums
    from mose_shards.conversion.reader import SourceReader
    from mose_shards.conversion.sources import Blob
    from mose_shards.core.storage import Store

    rng = random.Random(0)
    files = {f"v/{i:05d}.jpg": rng.randbytes(rng.randrange(50_000, 600_000)) for i in range(30)}
    src = tmp_path / "src"
    src.mkdir()
    cut(gzip.compress(tar_bytes(files), compresslevel=1), src, "x.tar.gz", 3)
    write_sums(src)
    monkeypatch.setattr(archive_listing, "_MIN_CHUNK", 1 << 20)  # ~9 MB compressed: ~9 seek points
    store = Store(str(tmp_path / "out"))
    local = Store(str(src))
    found = archives.group_parts({p.name: local.fs.info(str(p)) for p in src.iterdir()}, str(src), str(src))
    sums = find_sums(local.fs, str(src), str(src), found[0].names)
    listing = archives.load_or_scan(local.fs, found[0], store, sums, threads=2)
    assert listing.verified and len(listing.members) == len(files)
    assert listing.index is not None and listing.index[:5] == b"GZIDX"  # indexed_gzip's format
    assert struct.unpack_from("<I", listing.index, 31)[0] >= 6  # seek points (header: 7+8+8+4+4 bytes)
    archive_listing._INDEXES.clear()
    blobs = [Blob(str(src), m.size, m.offset, m.name, archive=found[0]) for m in listing.members]
    with SourceReader(str(src), cache=store) as reader:
        got = reader.read_many(blobs[::-1])
    assert got == [files[m.name] for m in listing.members][::-1]


def test_davis_zip_as_shipped(tmp_path: Path) -> None:
    """DAVIS ships as one zip holding DAVIS/JPEGImages/480p/... and DAVIS/ImageSets/2017/*.txt: read
    in place with --pipeline davis-2017, it converts like the unzipped folder."""
    from mose_shards.conversion.config import from_pipeline

    davis, _ = davis_tree(tmp_path)
    folder_out = tmp_path / "folder-out"
    convert(from_pipeline("davis-2017", str(davis), str(folder_out)))
    shipped = _zip(davis, tmp_path / "dl" / "DAVIS-2017-trainval-480p.zip", prefix="DAVIS/")
    out = tmp_path / "out"
    convert(from_pipeline("davis-2017", str(shipped), str(out)))
    assert _without_source(tree_bytes(out)) == _without_source(tree_bytes(folder_out))
    assert sorted(json.loads((out / "manifest.json").read_text())["splits"]) == ["train", "val"]


def test_sums_made_one_folder_up_still_check_the_parts(tmp_path: Path) -> None:
    """A SHA256SUMS naming 'MOSEv2/train.tar.gz.aa' (made from the folder above) checks the parts."""
    from mose_shards.archives import find_sums
    from mose_shards.core.storage import Store

    (tmp_path / "train.tar.gz.aa").write_bytes(b"a")
    digest = hashlib.sha256(b"a").hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{digest}  MOSEv2/train.tar.gz.aa\n{'0' * 64} *./other.bin\n")
    local = Store(str(tmp_path))
    assert find_sums(local.fs, str(tmp_path), str(tmp_path), ["train.tar.gz.aa"]) == {
        "train.tar.gz.aa": digest,
        "other.bin": "0" * 64,
    }


def test_listing_reports_how_far_each_archive_is_read(raw_tree: Path, tmp_path: Path) -> None:
    """Listing an archive is one pass over it (minutes for MOSEv2's 85 GB): convert's progress
    hears, per archive, the compressed bytes read so far, rising to the archive's size; a rerun
    that reuses the saved listings reads (and reports) nothing; a plain tar reports too."""
    src = hub(raw_tree, tmp_path / "src")
    events: list[tuple[str, int, int]] = []

    def listed(event: str, done: int, total: int) -> None:
        if event.startswith("list:"):
            events.append((event, done, total))

    config = ConvertConfig(source=str(src), output=str(tmp_path / "out"), shard_size=SMALL_SHARD)
    convert(config, progress=listed)
    sizes = {"train.tar.gz": sum(p.stat().st_size for p in src.glob("train.tar.gz.*")),
             "valid.tar.gz": (src / "valid.tar.gz").stat().st_size}  # fmt: skip
    assert {e for e, _, _ in events} == {f"list:{name}" for name in sizes}
    for name, size in sizes.items():
        steps = [(done, total) for e, done, total in events if e == f"list:{name}"]
        assert {total for _, total in steps} == {size}
        assert [done for done, _ in steps] == sorted(done for done, _ in steps) and steps[-1][0] == size
    events.clear()
    (tmp_path / "out" / "manifest.json").unlink()
    convert(config, progress=listed)
    assert events == []  # planned from the saved listings
    tar = make_tar(raw_tree, ["train"], tmp_path / "train.tar")
    convert(ConvertConfig(source=str(tar), output=str(tmp_path / "out-tar"), shard_size=SMALL_SHARD),
            progress=listed)  # fmt: skip
    assert events[-1] == ("list:train.tar", tar.stat().st_size, tar.stat().st_size)


def _shuffled_tgz(raw: Path, split: str, dest: Path, seed: int) -> None:
    """split.tar.gz of raw/split with its videos in no id order (as tar writes a folder: in the order
    the file system lists it), frames before masks."""
    rng = random.Random(seed)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for kind in ("JPEGImages", "Annotations"):
            videos = sorted((raw / split / kind).iterdir())
            rng.shuffle(videos)
            for video in videos:
                for path in sorted(video.iterdir()):
                    archive.add(path, arcname=f"{split}/{kind}/{video.name}/{path.name}")
    (dest / f"{split}.tar.gz").write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


@pytest.mark.parametrize("workers", [1, 2])
def test_videos_out_of_order_over_many_seek_points(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """A .tar.gz whose videos are in no id order, over many seek points: each shard's videos are
    read from all over the stream (stretches decoded only as far as the shard needs), and the
    output is byte-identical to converting the folder."""
    spec = SynthSpec(videos=12, frames=6, size=(320, 240), seed=11)
    raw = generate(tmp_path / "raw", spec=spec)
    src = tmp_path / "src"
    src.mkdir()
    for seed, split in enumerate(("train", "valid")):
        _shuffled_tgz(raw, split, src, seed)
    monkeypatch.setenv(gzcheckpoints.TEST_HOOKS, json.dumps({"spacing": 64 << 10}))
    folder_out, out = tmp_path / "folder-out", tmp_path / "out"
    convert(ConvertConfig(source=str(raw), output=str(folder_out), shard_size=400_000))
    convert(ConvertConfig(source=str(src), output=str(out), shard_size=400_000, workers=workers))
    assert len(list((out / "shards").rglob("*.tar"))) >= 3
    assert _without_source(tree_bytes(out)) == _without_source(tree_bytes(folder_out))
