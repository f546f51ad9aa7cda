"""A `.zip` source read in place: the central directory lists the members, each is read by range.

Listing reads only the central directory at the end of the file (no member data). A member is read
as its local header plus its data in one ranged read (the local header's extra field may differ in
length from the central one, so the read takes a margin and a second read covers a larger field),
then inflated when deflated and checked against the CRC-32 the directory records.
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core import tarscan
from ..core.errors import DataError, LayoutError
from .listfile import Listing, Members

if TYPE_CHECKING:
    from .archive import Archive

STORED, DEFLATED = 0, 8
_LOCAL = struct.Struct("<4sHHHHHIIIHH")  # the 30-byte local file header
MARGIN = 256  # extra bytes read past the expected local header, for a longer local extra field
_SYMLINK = 0o120000


def scan_zip(raw: Any, archive: Archive) -> Listing:
    """Members from the central directory; a path that would escape, a link or an unsupported
    compression is refused naming the member."""
    try:
        with zipfile.ZipFile(raw) as zf:
            infos = zf.infolist()
    except (
        zipfile.BadZipFile,
        OSError,
        EOFError,
        ValueError,
        IndexError,
        struct.error,
        NotImplementedError,
    ) as exc:
        # a damaged directory makes zipfile raise any of these (ValueError: bad offsets, names)
        raise LayoutError(
            f"{archive.url}: not a readable zip archive ({exc or type(exc).__name__})"
        ) from None
    total = sum(archive.sizes)
    members = Members()
    codecs: dict[int, tuple[int, int, int, int]] = {}
    for info in infos:
        where = f"{archive.url}:{info.filename}"
        name = info.filename
        if not name:  # zipfile's is_dir() would fail on it
            raise LayoutError(f"{archive.url}: damaged zip directory (a member with an empty name)")
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
            raise LayoutError(f"{where}: member path escapes the archive")
        if (info.external_attr >> 16) & 0o170000 == _SYMLINK:
            raise LayoutError(f"{where}: links are not allowed in a source archive")
        if info.is_dir():
            members.append(tarscan.TarMember(name.rstrip("/"), info.header_offset, 0, tarscan.DIR))
            continue
        if info.flag_bits & 0x1:
            raise LayoutError(f"{where}: encrypted members cannot be read")
        if info.compress_type not in (STORED, DEFLATED):
            method = info.compress_type
            raise LayoutError(f"{where}: compression method {method} is not supported (stored or deflate)")
        header = _LOCAL.size + len(info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437"))
        _check_extent(info, header, total, where)
        codecs[len(members)] = (info.compress_type, info.compress_size, info.CRC, header + len(info.extra))
        members.append(tarscan.TarMember(name, info.header_offset, info.file_size, tarscan.FILE))
    return Listing(members, codecs)


def _check_extent(info: zipfile.ZipInfo, header: int, total: int, where: str) -> None:
    """The member's local header and data lie inside the file, and its compressed size is one that
    its size can have (deflate adds at most 5 bytes per 16 KiB stored block): else the directory is
    damaged or hostile, and reading by it would read outside the member or without bound."""
    start, packed, size = info.header_offset, info.compress_size, info.file_size
    if start < 0 or packed < 0 or size < 0 or start + header + packed > total:
        raise LayoutError(f"{where}: damaged zip directory (member at byte {start}, {packed} bytes, "
                          f"outside the {total}-byte file)")  # fmt: skip
    if packed > size + size // 16384 * 5 + 1024:
        raise LayoutError(f"{where}: damaged zip directory ({packed} compressed bytes for {size} bytes)")


def span(offset: int, codec: tuple[int, int, int, int]) -> tuple[int, int]:
    """The byte range to read for a member: its local header (expected length plus a margin) and data."""
    _method, packed, _crc, header = codec
    return offset, offset + header + packed + MARGIN


def decode(
    chunk: bytes, offset: int, size: int, codec: tuple[int, int, int, int], where: str,
    read_at: Callable[[int, int], bytes],
) -> bytes:  # fmt: skip
    """The member's bytes from `chunk` (read at `offset` by `span`); `read_at` fetches more if needed."""
    method, packed, crc, _header = codec
    if len(chunk) < _LOCAL.size or chunk[:4] != b"PK\x03\x04":
        raise DataError(where, "damaged zip member (no local header where the directory points)")
    fields = _LOCAL.unpack_from(chunk)
    start = _LOCAL.size + fields[9] + fields[10]
    data = chunk[start : start + packed]
    if len(data) < packed:
        data = read_at(offset + start, packed)
    if method == DEFLATED:
        inflater = zlib.decompressobj(-15)
        try:  # never more than the directory gives, plus one byte to tell a member that inflates further
            data = inflater.decompress(data, size + 1)
        except zlib.error as exc:
            raise DataError(where, f"damaged zip member ({exc})") from None
        if len(data) > size:
            raise DataError(
                where, f"damaged zip member (inflates to more than the {size} bytes the zip directory gives)"
            )
    if len(data) != size or zlib.crc32(data) != crc:
        raise DataError(where, "damaged zip member (size or CRC-32 differs from the zip directory)")
    return data
