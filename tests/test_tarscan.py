"""The tar member parser: runs of plain headers checked together, anything unusual member by member."""

from __future__ import annotations

import io
import tarfile

import pytest

from mose_shards.core import tarscan
from mose_shards.core.errors import LayoutError


def _archive(names: list[str], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as archive:
        for i, name in enumerate(names):
            if name.endswith("/"):
                info = tarfile.TarInfo(name.rstrip("/"))
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
                continue
            data = bytes([i % 251]) * (i * 37 % 1500)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _expected(data: bytes) -> list[tuple[str, int, int, str]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return [
            (m.name, m.offset_data, m.size, tarscan.DIR if m.isdir() else tarscan.FILE)
            for m in archive.getmembers()
        ]


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_scan_lists_what_tarfile_lists_runs_and_oddities_mixed(
    fmt: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plain runs (checked at once) around a long name, a ustar prefix and folders: tarfile's members."""
    names = [f"train/JPEGImages/v{i // 50}/{i:05d}.jpg" for i in range(300)]
    names[60] = "train/JPEGImages/v1/"
    names[120] = "train/" + "p" * 120 + "/00120.jpg"  # a prefix (ustar) or a long-name record
    data = _archive(names, fmt)
    used = []
    plain_run = tarscan._plain_run
    monkeypatch.setattr(tarscan, "_plain_run", lambda *a: used.append(len(r := plain_run(*a))) or r)
    got = [
        (m.name, m.offset, m.size, m.kind) for m in tarscan.scan(io.BytesIO(data), "t.tar", size=len(data))
    ]
    assert got == _expected(data)
    assert max(used) >= tarscan._RUN_MIN  # runs were taken together, not only member by member


def test_a_damaged_header_inside_a_run_is_named_by_its_offset() -> None:
    """A bad checksum in the middle of a plain run: the per-member path names its byte offset."""
    data = bytearray(_archive([f"train/JPEGImages/v/{i:05d}.jpg" for i in range(200)]))
    offset = _expected(bytes(data))[100][1] - tarscan.BLOCK
    data[offset + 10] ^= 0x01  # a name byte: the stored checksum no longer matches
    with pytest.raises(LayoutError, match=f"damaged tar header at byte {offset} "):
        list(tarscan.scan(io.BytesIO(bytes(data)), "t.tar", size=len(data)))


def test_a_run_cut_short_is_a_truncated_archive() -> None:
    """A tar cut inside a run's last member: named as truncated, not listed short."""
    data = _archive([f"train/JPEGImages/v/{i:05d}.jpg" for i in range(200)])
    last = _expected(data)[-1]
    cut = data[: last[1] + last[2] - 1]
    with pytest.raises(LayoutError, match="truncated tar archive"):
        list(tarscan.scan(io.BytesIO(cut), "t.tar", size=len(cut)))
