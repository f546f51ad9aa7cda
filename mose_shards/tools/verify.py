"""Check an output against its manifest: every shard's size, sha256 and samples; tables vs shards.

Each shard is read once, as a stream: the bytes feed the sha256 and a tar header parser together, so
verifying an output on object storage costs one sequential GET per file. Every problem is one line
naming the file; nothing stops at the first one.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..core import manifest as manifest_mod
from ..core.errors import LayoutError, OutputError
from ..core.layout import MEMBERS
from ..core.schema import TABLES
from ..core.storage import StorageOptions, Store
from ..core.tables import read_part
from ..core.tarfmt import MemberIndex, index_members, tiles

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (shards checked, total)


@dataclass
class VerifyReport:
    """What was checked, and one line per problem (empty when the output is sound)."""

    url: str
    shards: int = 0
    samples: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    url: str,
    storage_options: StorageOptions | None = None,
    *,
    workers: int = 1,
    progress: Progress | None = None,
) -> VerifyReport:
    """Check every shard and table part listed in the manifest at `url`, `workers` shards at a time
    (in spawned processes); the problems come out in manifest order whatever `workers` is."""
    store, doc = manifest_mod.read(url, storage_options)
    report = VerifyReport(store.url)
    jobs = [
        _Job(store.url, store.storage_options, shard, {t: split["tables"][t][i] for t in TABLES})
        for split in doc["splits"].values()
        for i, shard in enumerate(split["shards"])
    ]
    pool = None
    if workers > 1 and len(jobs) > 1 and not store.in_process:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context)
    try:
        results = pool.map(_check_job, jobs) if pool else map(_check_job, jobs)
        for done, (problems, samples) in enumerate(results, start=1):
            report.problems += problems
            report.samples += samples
            report.shards += 1
            if progress:
                progress(done, len(jobs))
    finally:
        if pool:
            pool.shutdown(wait=True, cancel_futures=True)
    return report


@dataclass(frozen=True)
class _Job:
    """One shard to check, picklable for a worker process."""

    url: str
    options: dict[str, Any]
    shard: dict[str, Any]
    tables: dict[str, str]


def _check_job(job: _Job) -> tuple[list[str], int]:
    """(problems, samples) of one shard and its table parts."""
    store = Store(job.url, job.options)
    report = VerifyReport(store.url)
    if not _fast_check(store, job.shard, job.tables, report):
        index = _check_shard(store, job.shard, report)
        if index is not None:
            _check_tables(store, job.shard, job.tables, index, report)
    return report.problems, report.samples


def _fast_check(store: Store, shard: dict[str, Any], tables: dict[str, str], report: VerifyReport) -> bool:
    """The shard in one read, its sha256, and its members against the frames table (tarfmt.tiles);
    False, with nothing reported, when anything differs: then the member-by-member check names it."""
    path = shard["path"]
    try:
        data = store.read(path)
        if len(data) != shard["bytes"] or hashlib.sha256(data).hexdigest() != shard["sha256"]:
            return False
        frames = read_part(store, tables["frames"])
    except OutputError:
        return False
    if not tiles(data, frames, path):
        return False
    del data
    parts = {table: _read_part(store, rel, report) for table, rel in tables.items() if table != "frames"}
    videos = parts["videos"]
    if videos is not None and videos.num_rows != shard["videos"]:
        where = store.url_of(tables["videos"])
        report.problems.append(f"{where}: {videos.num_rows} rows, the manifest says {shard['videos']} videos")
    report.samples += frames.num_rows
    if frames.num_rows != shard["samples"]:
        report.problems.append(
            f"{store.url_of(path)}: {frames.num_rows} samples, the manifest says {shard['samples']}"
        )
    return True


def _check_shard(store: Store, shard: dict[str, Any], report: VerifyReport) -> MemberIndex | None:
    """Size, sha256 and sample count of one shard; its member index when it is sound."""
    path = shard["path"]
    where = store.url_of(path)
    if not store.exists(path):
        report.problems.append(f"{where}: missing")
        return None
    size = store.size(path)
    if size != shard["bytes"]:
        kind = "truncated" if size < shard["bytes"] else "longer than expected"
        report.problems.append(f"{where}: {kind}: {size} bytes, the manifest says {shard['bytes']}")
        return None
    try:
        digest, index = _hash_and_index(store, path)
    except LayoutError as exc:  # names the shard and what is wrong with it
        report.problems.append(str(exc))
        return None
    except OSError as exc:
        report.problems.append(f"{where}: not readable ({exc})")
        return None
    if digest != shard["sha256"]:
        report.problems.append(
            f"{where}: damaged: sha256 {digest[:12]}…, the manifest says {shard['sha256'][:12]}…"
        )
        return None
    samples = _count_samples(index, where, report)
    report.samples += samples
    if samples != shard["samples"]:
        report.problems.append(f"{where}: {samples} samples, the manifest says {shard['samples']}")
    return index


class _HashingReader:
    """A read-only stream that hashes every byte read through it."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.raw.read(size)
        self.digest.update(data)
        return data


def _hash_and_index(store: Store, path: str) -> tuple[str, MemberIndex]:
    with store.open(path, "rb") as raw:
        reader = _HashingReader(raw)
        index = index_members(reader, store.url_of(path))  # reads every byte: the hash sees them all
    return reader.digest.hexdigest(), index


def _count_samples(index: MemberIndex, where: str, report: VerifyReport) -> int:
    keys: dict[str, set[str]] = {}
    for key, ext in index:
        keys.setdefault(key, set()).add(ext)
    for key, exts in sorted(keys.items()):
        if exts != set(MEMBERS):
            report.problems.append(
                f"{where}: sample {key} has members {sorted(exts)}, expected {list(MEMBERS)}"
            )
    return len(keys)


def _check_tables(
    store: Store, shard: dict[str, Any], tables: dict[str, str], index: MemberIndex, report: VerifyReport
) -> None:
    """Each table part is readable; the frames rows match the shard's members one for one."""
    parts = {table: _read_part(store, rel, report) for table, rel in tables.items()}
    frames, videos = parts["frames"], parts["videos"]
    if videos is not None and videos.num_rows != shard["videos"]:
        where = store.url_of(tables["videos"])
        report.problems.append(f"{where}: {videos.num_rows} rows, the manifest says {shard['videos']} videos")
    if frames is not None:
        _check_frames(store.url_of(tables["frames"]), frames.to_pylist(), index, shard["path"], report)


def _read_part(store: Store, rel: str, report: VerifyReport) -> pa.Table | None:
    where = store.url_of(rel)
    if not store.exists(rel):
        report.problems.append(f"{where}: missing")
        return None
    try:
        table: pa.Table = read_part(store, rel)
    except OutputError as exc:
        report.problems.append(str(exc))
        return None
    return table


def _check_frames(
    where: str, rows: list[dict[str, Any]], index: MemberIndex, shard: str, report: VerifyReport
) -> None:
    keys = {key for key, _ in index}
    if len(rows) != len(keys):
        report.problems.append(f"{where}: {len(rows)} rows, the shard {shard} has {len(keys)} samples")
    wrong = 0
    for row in rows:
        for ext in MEMBERS:
            if (
                index.get((row["key"], ext)) != (row[f"{ext}_offset"], row[f"{ext}_size"])
                or row["shard"] != shard
            ):
                wrong += 1
                if wrong == 1:
                    report.problems.append(
                        f"{where}: row {row['key']} .{ext} does not match the member at its offset in {shard}"
                    )
    if wrong > 1:
        report.problems.append(f"{where}: {wrong} member references in all do not match {shard}")
