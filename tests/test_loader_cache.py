"""The shard cache: keyed by content (sha256), one download across processes, big shards streamed."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from pathlib import Path

import pytest

from mose_shards import ClipDataset
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.core.errors import OutputError
from mose_shards.loader import ShardCache
from mose_shards.loader.index import Shard
from mose_shards.synth import SynthSpec, generate


def items(url: str, **kwargs: object) -> list[tuple[object, ...]]:
    ds = ClipDataset(url, clip_length=3, seed=1, **kwargs)  # type: ignore[arg-type]
    return [(i["video_id"], tuple(i["frame_indices"]), i["images"][0].tobytes()) for i in ds]


def cached_files(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if not p.name.startswith(".")}


def test_a_reconversion_to_the_same_url_is_never_served_stale(
    converted: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Cache by sha256: after another conversion replaces the output, reads give the new bytes."""
    out, cache = tmp_path / "out", tmp_path / "cache"
    shutil.copytree(converted, out)
    first = items(str(out), cache_dir=cache)
    assert first == items(str(converted))
    before = cached_files(cache)
    assert before and all(len(name) == len("0" * 64 + ".tar") for name in before)
    other = generate(
        tmp_path_factory.mktemp("other"), spec=SynthSpec(videos=4, frames=8, size=(160, 120), seed=8)
    )
    shutil.rmtree(out)
    convert(ConvertConfig(source=str(other), output=str(out), shard_size=150_000))
    fresh = items(str(out))
    assert fresh != first
    assert items(str(out), cache_dir=cache) == fresh
    assert cached_files(cache) - before  # new content, new names


def test_a_shard_above_the_limit_is_streamed_not_cached(converted: Path, tmp_path: Path) -> None:
    """With a limit below every shard's size, items are unchanged and nothing is cached."""
    assert items(str(converted), cache_dir=tmp_path, cache_limit=1000) == items(str(converted))
    assert cached_files(tmp_path) == set()


def test_a_download_that_does_not_match_the_manifest_is_refused(tmp_path: Path) -> None:
    """A cached copy must hash to the manifest's sha256; otherwise OutputError and no file."""
    cache = ShardCache(tmp_path, "1MB")
    shard = Shard("shards/x.tar", 4, "0" * 64)
    with pytest.raises(OutputError, match="shards/x.tar: downloaded bytes have sha256"):
        cache.get(shard, lambda s, start, size: b"abcd"[start : start + size])
    assert cached_files(tmp_path) == set()


def _get(directory: str, shard: Shard, source: str, log: str) -> str:
    """In another process: the cached path of `shard`, logging every chunk it downloads itself."""

    def read(s: Shard, start: int, size: int) -> bytes:
        with open(log, "a") as fh:
            fh.write(f"{os.getpid()} {start}\n")
        with open(source, "rb") as fh:
            fh.seek(start)
            return fh.read(size)

    return str(ShardCache(directory).get(shard, read))


def _blocked_flock_waiters(lock: Path) -> int:
    inode = os.stat(lock).st_ino
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(
        1 for line in lines if "->" in line and "FLOCK" in line and line.split()[-3].endswith(f":{inode}")
    )


@pytest.mark.skipif(not Path("/proc/locks").exists(), reason="needs /proc/locks (Linux)")
def test_concurrent_processes_download_a_shard_once(converted: Path, tmp_path: Path) -> None:
    """Two processes waiting for the lock while a third downloads: they reuse its copy, no download."""
    import hashlib

    source = next((converted / "shards").rglob("*.tar"))
    data = source.read_bytes()
    shard = Shard("shards/s.tar", len(data), hashlib.sha256(data).hexdigest())
    cache, log = ShardCache(tmp_path / "c"), tmp_path / "reads.log"
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        with cache._locked(shard):  # this process downloads; the pool's processes wait for it
            results = [
                pool.apply_async(_get, (str(cache.directory), shard, str(source), str(log))) for _ in range(2)
            ]
            deadline = time.monotonic() + 60
            lock = cache.directory / f".{shard.sha256}.lock"
            while _blocked_flock_waiters(lock) < 2:  # both blocked on the lock: the race is set up
                assert time.monotonic() < deadline, "the other processes never reached the lock"
                time.sleep(0.05)
            cache._download(shard, lambda s, start, size: data[start : start + size], cache.name(shard))
        paths = {r.get(60) for r in results}
    assert paths == {str(cache.name(shard))}
    assert not log.exists()  # neither waiting process downloaded anything
    assert cache.name(shard).read_bytes() == data
