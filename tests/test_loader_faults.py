"""The loader on flaky and damaged storage: SeaweedFS behind a proxy that resets or 503s every Nth
ranged GET, a truncated shard, a member whose bytes differ from the frames table's sha256."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from mose_shards import ClipDataset
from mose_shards.conversion.config import ConvertConfig
from mose_shards.conversion.orchestrate import convert
from mose_shards.core.errors import OutputError
from mose_shards.core.storage import Store
from mose_shards.synth import SynthSpec, generate
from tests.faulty_proxy import faulty_proxy
from tests.s3server import S3Server

NO_BOTO_RETRIES = {"config_kwargs": {"retries": {"total_max_attempts": 1}}}


@pytest.fixture
def no_client_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """s3fs (a class attribute) and botocore (a storage option) retry nothing: only ours remain."""
    import s3fs

    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)


def fingerprint(items: Any) -> list[tuple[Any, ...]]:
    """What an epoch yielded, pixels included."""
    out = []
    for i in items:
        pixels = hashlib.sha256(
            b"".join(a.tobytes() for a in i["images"] + [m for m in i["masks"] if m is not None])
        )
        out.append((i["video_id"], i["clip"], tuple(i["frame_indices"]), i["padding"], pixels.hexdigest()))
    return out


@pytest.fixture(scope="module")
def s3_many(s3_server: S3Server, tmp_path_factory: pytest.TempPathFactory) -> str:
    """16 small train videos on S3 in several shards: a read (GET) per video or two."""
    spec = SynthSpec(videos=16, frames=6, size=(64, 48), seed=11, splits=("train",))
    raw = generate(tmp_path_factory.mktemp("raw16"), spec=spec)
    url = s3_server.url("many")
    convert(ConvertConfig(source=str(raw), output=url, shard_size=60_000,
                          storage_options=s3_server.storage_options()))  # fmt: skip
    return url


@pytest.mark.s3
@pytest.mark.parametrize(("kind", "match"), [("reset", b"range:"), ("503", b"range:"), ("503", b"")])
def test_epoch_survives_resets_and_slow_downs(
    s3_many: str, s3_server: S3Server, kind: str, match: bytes, no_client_retries: None
) -> None:
    """Every 5th ranged GET (or every 5th request of any kind, the manifest's and the tables' included)
    fails, s3fs's and botocore's own retries off: the same items as without faults."""
    options = {"clip_length": 3, "clips_per_video": 2, "seed": 1, "read_backoff": 0.01}
    expected = fingerprint(ClipDataset(s3_many, storage_options=s3_server.storage_options(), **options))
    with faulty_proxy(s3_server.ports["s3"], kind=kind, every=5, match=match) as proxy:
        opts = {**s3_server.storage_options(), "endpoint_url": proxy.endpoint(), **NO_BOTO_RETRIES}
        ds = ClipDataset(s3_many, storage_options=opts, **options)
        at_construction = proxy.faults
        got = fingerprint(ds)
    assert proxy.faults - at_construction >= 2  # faults during the epoch happened, and were absorbed
    assert at_construction >= (2 if not match else 0)  # with every request: the manifest and tables too
    assert got == expected


@pytest.mark.s3
def test_permanent_failure_names_shard_and_range(
    s3_many: str, s3_server: S3Server, no_client_retries: None
) -> None:
    """With one attempt, the first failed GET raises one OutputError naming the shard URL and byte range."""
    with faulty_proxy(s3_server.ports["s3"], kind="503", every=1, match=b"range:") as proxy:
        opts = {**s3_server.storage_options(), "endpoint_url": proxy.endpoint(), **NO_BOTO_RETRIES}
        ds = ClipDataset(s3_many, clip_length=3, storage_options=opts, read_attempts=2, read_backoff=0.01,
                         prefetch=1)  # fmt: skip
        message = (
            r"s3://test/many/shards/train/train-\d+\.tar bytes \[\d+, \d+\): read failed after 2 attempts"
        )
        with pytest.raises(OutputError, match=message):
            list(ds)
    assert proxy.faults == 2  # one read, two attempts, then nothing more


@pytest.mark.s3
def test_truncated_shard_on_s3_is_named(s3_converted: str, s3_server: S3Server) -> None:
    """A shard cut short on S3 fails at once, naming the shard and what was wanted."""
    opts = s3_server.storage_options()
    store = Store(s3_converted, opts)
    copy = Store(s3_server.url("truncated"), opts)
    for rel in store.fs.find(store.root):
        rel = rel[len(store.root) + 1 :]
        data = store.read(rel)
        copy.write(rel, data[: len(data) // 2] if rel.endswith(".tar") else data)
    ds = ClipDataset(copy.url, clip_length=None, storage_options=opts, read_backoff=0.01)
    with pytest.raises(
        OutputError, match=r"truncated/shards/.*\.tar: truncated, wanted \d+ bytes at offset \d+"
    ):
        list(ds)


def test_verify_names_the_sample_whose_bytes_differ(converted: Path, tmp_path: Path) -> None:
    """verify=True: a JPEG member changed in place (same size) raises naming its sample key."""
    out = tmp_path / "out"
    shutil.copytree(converted, out)
    probe = ClipDataset(str(out), split="valid", clip_length=None, shuffle=False, verify=True)
    video = probe.videos[0]
    jpg_offset = int(video.members[0, 0])
    shard = out / video.shard.path
    data = bytearray(shard.read_bytes())
    table = data.index(b"\xff\xdb", jpg_offset)  # the first quantization table
    data[table + 5] = data[table + 5] % 200 + 1  # another step size: decodes, to other pixels
    shard.write_bytes(bytes(data))
    key = str(video.keys[0]) if video.keys is not None else ""
    assert key.startswith(video.video_id)
    with pytest.raises(OutputError, match=f"sample {key}: the .jpg member does not match"):
        list(ClipDataset(str(out), split="valid", clip_length=None, shuffle=False, verify=True))
    unchecked = list(ClipDataset(str(out), split="valid", clip_length=None, shuffle=False))
    assert len(unchecked) == 4  # without verify the change goes unnoticed


def test_retries_back_off_then_give_up_naming_the_range() -> None:
    """Transient errors are retried with growing, jittered waits; the last one raises naming `where`."""
    from mose_shards.loader.retry import RetryPolicy, retried

    calls, waits = [], []

    def flaky() -> bytes:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError("reset by peer")
        return b"ok"

    policy = RetryPolicy(attempts=3, timeout=None, backoff=1.0, max_backoff=1.5)
    assert retried(flaky, policy, "s3://b/x.tar bytes [0, 10)", sleep=waits.append) == b"ok"
    assert len(calls) == 3 and 0 <= waits[0] <= 1.0 and 0 <= waits[1] <= 1.5
    with pytest.raises(
        OutputError, match=r"s3://b/x.tar bytes \[0, 10\): read failed after 3 attempts: Timeout"
    ):
        retried(lambda: (_ for _ in ()).throw(TimeoutError("slow")), policy, "s3://b/x.tar bytes [0, 10)",
                sleep=waits.append)  # fmt: skip
    calls.clear()

    def missing() -> bytes:
        calls.append(1)
        raise FileNotFoundError("no such key")

    with pytest.raises(OutputError, match="FileNotFoundError"):
        retried(missing, policy, "s3://b/x.tar bytes [0, 10)", sleep=waits.append)
    assert len(calls) == 1  # permanent: not retried


def test_an_attempt_that_hangs_is_abandoned_after_the_timeout() -> None:
    """read_timeout bounds each attempt: a read that never answers is given up and retried."""
    import threading

    from mose_shards.loader.retry import RetryPolicy, retried

    release, calls = threading.Event(), []

    def hangs_once() -> bytes:
        calls.append(1)
        if len(calls) == 1:
            release.wait(30)  # the first attempt blocks until the test ends
        return b"second"

    try:
        assert (
            retried(hangs_once, RetryPolicy(attempts=2, timeout=0.2, backoff=0), "x", sleep=lambda s: None)
            == b"second"
        )
    finally:
        release.set()
    assert len(calls) == 2
