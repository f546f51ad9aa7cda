"""The saved listing of an archive: members as columns, written and read back unchanged."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mose_shards.archives import listfile
from mose_shards.archives.listfile import Listing, Members, members_bytes, read_members
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
    """Every kind, offset and size (zip codecs too) and every name (one that is not UTF-8 too)
    survives the saved listing, across its sections of names; a damaged one is refused."""
    monkeypatch.setattr(listfile, "_BATCH", 1000)
    members = _members()
    members.names[1500] = b"train/JPEGImages/\xff/00000.jpg".decode("utf-8", "surrogateescape")
    listing = Listing(members, codecs={5: (8, 100, 12345, 30), 2999: (0, 1, 2, 3)}, verified=True)
    saved = members_bytes(listing)
    back = read_members(saved)
    assert back.members == members and back.codecs == listing.codecs and back.verified
    assert read_members(members_bytes(Listing(Members()))).members == Members()
    for damaged in (saved[:-1], saved + b"\0", saved[:10], b"PAR1" + saved[4:]):
        with pytest.raises(ValueError):
            read_members(damaged)
    members.names[7] = "a\0b"
    with pytest.raises(ValueError, match="NUL"):
        members_bytes(listing)
    members.names[7] = "train/JPEGImages/v1/00007.jpg"
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


def test_saving_a_listing_loads_no_arrow() -> None:
    """The parent saves and loads listings while it plans: without pyarrow, which loads pandas when
    it is installed (a quarter of a second on the critical path)."""
    code = (
        "import sys\n"
        "from mose_shards.archives.listfile import Listing, Members, members_bytes, read_members\n"
        "from mose_shards.core.tarscan import TarMember\n"
        "listing = Listing(Members(TarMember(f'v/{i}.jpg', 512 * i, 9, 'file') for i in range(10)))\n"
        "assert read_members(members_bytes(listing)).members == listing.members\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pyarrow', 'pandas')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
