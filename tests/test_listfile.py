"""The saved listing of an archive: members as columns, written and read back unchanged."""

from __future__ import annotations

import io

import pyarrow.parquet as pq
import pytest

from mose_shards.conversion import listfile
from mose_shards.conversion.listfile import Listing, Members, members_bytes, read_members
from mose_shards.core import tarscan


def _members() -> Members:
    kinds = (tarscan.FILE, tarscan.DIR, tarscan.LINK, tarscan.OTHER)
    return Members(
        tarscan.TarMember(
            f"train/JPEGImages/v{i % 3}/{i:05d}.jpg", 512 * (2 * i + 1), i * 7 + 1, kinds[i % 4]
        )
        for i in range(3000)
    )


def test_members_round_trip_through_the_saved_listing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kind, offset and size (zip codecs too) survives the Parquet file, across row groups."""
    monkeypatch.setattr(listfile, "_BATCH", 1000)
    members = _members()
    listing = Listing(members, codecs={5: (8, 100, 12345, 30), 2999: (0, 1, 2, 3)}, verified=True)
    saved = pq.read_table(io.BytesIO(members_bytes(listing)))
    assert pq.ParquetFile(io.BytesIO(members_bytes(listing))).num_row_groups == 3
    back = read_members(saved)
    assert back.members == members and back.codecs == listing.codecs and back.verified
    assert (
        list(back.members)[7]
        == members[7]
        == tarscan.TarMember("train/JPEGImages/v1/00007.jpg", 512 * 15, 50, tarscan.OTHER)
    )


def test_members_slice_extend_and_release_like_a_list() -> None:
    """Slices (with steps), += and negative indexes behave as on a list; a released name is gone."""
    members = _members()
    as_list = list(members)
    assert list(members[10:20]) == as_list[10:20] and list(members[::-7]) == as_list[::-7]
    joined = members[:100]
    joined += members[100:]
    assert joined == members and members[-1] == as_list[-1]
    assert members.release(3) == as_list[3].name and members.names[3] is None
