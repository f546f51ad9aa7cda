"""Builders of hostile archives for the tests: hand-made tar headers, pax records, zips, and members
that inflate to 2 GiB from a few KB (deflate blocks of zeros repeated), all small on disk."""

from __future__ import annotations

import functools
import struct
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

BLOCK = 512
GIB = 1 << 30


def header(name: str, size: int | bytes, flag: bytes = b"0") -> bytes:
    """One ustar header; `size` as a number (octal) or the raw 12-byte field (base-256, garbage)."""
    block = bytearray(BLOCK)
    block[0 : len(name)] = name.encode()
    block[100:108] = b"0000644\0"
    block[108:116] = block[116:124] = b"0000000\0"
    block[124:136] = size if isinstance(size, bytes) else b"%011o\0" % size
    block[136:148] = b"00000000000\0"
    block[156:157] = flag
    block[257:265] = b"ustar\x0000"
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def record(key: str, value: str) -> bytes:
    """A pax record `length key=value\\n` whose length counts its own digits."""
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax(records: bytes) -> bytes:
    return header("PaxHeaders/x", len(records), b"x") + padded(records)


def negative_size(value: int) -> bytes:
    """A GNU base-256 size field holding a negative number (two's complement of 11 bytes)."""
    return b"\xff" + (value % (1 << 88)).to_bytes(11, "big")


def tar_body(files: list[tuple[str, bytes]]) -> bytes:
    """The members of a ustar archive, without its end-of-archive marker."""
    out = []
    for name, data in files:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        out.append(info.tobuf(tarfile.USTAR_FORMAT) + padded(data))
    return b"".join(out)


END = bytes(2 * BLOCK)


@functools.cache
def _zero_mib() -> bytes:
    """Raw deflate blocks of 1 MiB of zeros, fully flushed: they refer to nothing before them, so
    repeating them n times inflates to n MiB of zeros (~1 KB each)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    return packer.compress(bytes(1 << 20)) + packer.flush(zlib.Z_FULL_FLUSH)


def zeros_deflate(size: int) -> bytes:
    """Raw deflate data (a whole stream) that inflates to `size` zero bytes (whole MiB)."""
    return _zero_mib() * (size >> 20) + b"\x03\x00"  # then an empty final block


def gzip_of(parts: list[bytes | int]) -> bytes:
    """A gzip file whose content is the byte strings given, with runs of zeros for the ints (whole
    MiB, streamed as repeated deflate blocks: a 2 GiB run costs ~2 MB and no memory)."""
    deflated, crc, size = [], 0, 0
    for part in parts:
        if isinstance(part, int):
            deflated.append(_zero_mib() * (part >> 20))
            mib = bytes(1 << 20)
            for _ in range(part >> 20):
                crc = zlib.crc32(mib, crc)
            size += part
        else:
            packer = zlib.compressobj(6, zlib.DEFLATED, -15)
            deflated.append(packer.compress(part) + packer.flush(zlib.Z_FULL_FLUSH))
            crc, size = zlib.crc32(part, crc), size + len(part)
    head = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return head + b"".join(deflated) + b"\x03\x00" + struct.pack("<II", crc, size % (1 << 32))


@dataclass
class ZipEntry:
    name: str
    data: bytes  # as stored (deflated already when method is 8)
    size: int  # what the directory says it inflates to
    method: int = 0
    crc: int = 0
    offset: int | None = None  # the local header offset the directory gives (None: the real one)


def zip_of(entries: list[ZipEntry]) -> bytes:
    """A zip written by hand, so that the directory can say what a writer would never say."""
    body, central = b"", b""
    for e in entries:
        name = e.name.encode()
        at = len(body)
        body += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, e.method, 0, 0, e.crc, len(e.data),
                            e.size & 0xFFFFFFFF, len(name), 0) + name + e.data  # fmt: skip
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, e.method, 0, 0, e.crc,
                               len(e.data), e.size & 0xFFFFFFFF, len(name), 0, 0, 0, 0, 0,
                               at if e.offset is None else e.offset) + name  # fmt: skip
    end = struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), len(body), 0
    )
    return body + central + end


def stored(name: str, data: bytes) -> ZipEntry:
    return ZipEntry(name, data, len(data), 0, zlib.crc32(data))


# Runs the CLI in a child and prints the child's peak RSS (itself and any worker it started), in KiB.
_CHILD = (
    "import resource, sys\n"
    "from mose_shards.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "rss = max(resource.getrusage(w).ru_maxrss for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))\n"
    "print(f'maxrss_kib={rss}')\n"
    "sys.exit(code)\n"
)


@dataclass
class Run:
    code: int
    err: str
    peak: int  # bytes


def run_cli(*argv: str, timeout: float = 120) -> Run:
    """`mose-shards ARGV` in a child process; a hang fails the test at `timeout` (seconds)."""
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, timeout=timeout
    )
    peak = [int(line.split("=")[1]) for line in proc.stdout.splitlines() if line.startswith("maxrss_kib=")]
    assert peak, proc.stdout + proc.stderr
    return Run(proc.returncode, proc.stderr, peak[-1] * 1024)


def tree_files(root: Path) -> list[tuple[str, bytes]]:
    """Every file below `root` as (path relative to root's parent, bytes), sorted."""
    return [(str(p.relative_to(root.parent)), p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()]
