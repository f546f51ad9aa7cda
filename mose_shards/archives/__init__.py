"""The archive readers: a source's `.tar`, `.tar.gz`/`.tgz` and `.zip`, whole or in split parts.

The pipeline (conversion) uses only the names below: find the archives of a source and check the
parts named by the checksums; list an archive's members (`load_or_scan`, saved under the output for
the next run); read members by range (`MemberReader`). How a member is found inside (a tar header, a
zip's central directory, the gzip seek index and its checkpoints) stays in here. Imports only core.

Modules, bottom up: parts (split parts as one file, checksums), listfile (a listing as columns and
its saved file), gzindex (gzip seek points), gzseek (a .tar.gz read by offset), zipsource (a zip's
directory and members), archive (what an archive is, finding them), gzcheckpoints and gzlist (listing a
.tar.gz in one resumable pass), listing (listing any archive, saved and reused), members (reading).
"""

from __future__ import annotations

from .archive import Archive, archive_at, group_parts, missing_listed
from .listfile import KIND_CODES, Listing
from .listing import load_or_scan
from .members import Member, MemberReader
from .parts import find_sums

__all__ = [
    "KIND_CODES",
    "Archive",
    "Listing",
    "Member",
    "MemberReader",
    "archive_at",
    "find_sums",
    "group_parts",
    "load_or_scan",
    "missing_listed",
]
