"""A real two-node Ray cluster on loopback for tests: `ray start --head` plus one `ray start --address`.

Each node runs `ray start --block` in its own session (process group) with its own --temp-dir and
explicit free ports, so parallel runs and other users' Rays never clash. A node is stopped by killing
its process group and then any process still naming its temp dir (never `ray stop`, which would stop
every Ray on the machine).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tests.s3server import free_ports

START_TIMEOUT = 120.0
# Token authentication would need a token shared by the nodes and the driver; loopback needs none.
# A dead node is noticed after about a second (the default takes about 15 s).
ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled",
       "RAY_health_check_period_ms": "300", "RAY_health_check_failure_threshold": "3",
       "RAY_health_check_initial_delay_ms": "0"}  # fmt: skip
NODE_PORTS = ("node_manager", "object_manager", "agent_http", "agent_grpc", "runtime_env", "metrics")
WORKER_PORTS = 8


@dataclass
class Node:
    process: subprocess.Popen[bytes]
    temp_dir: Path
    log: Path

    def kill(self) -> None:
        """SIGKILL the node: its process group, then any straggler still using its temp dir."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)
        for pid in _pids_naming(str(self.temp_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class Cluster:
    address: str
    head: Node
    workers: list[Node] = field(default_factory=list)


def ray_binary() -> str | None:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else None


def _pids_naming(text: str) -> list[int]:
    """Processes whose command line names `text` (this node's temp dir): ours, by construction."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return [pid for pid in found if pid != os.getpid()]


def _node_args(temp_dir: Path, cpus: int) -> list[str]:
    names = NODE_PORTS + tuple(f"w{i}" for i in range(WORKER_PORTS))
    ports = free_ports(names)
    workers = ",".join(str(ports[f"w{i}"]) for i in range(WORKER_PORTS))
    return [
        "--block", "--node-ip-address=127.0.0.1", f"--num-cpus={cpus}", f"--temp-dir={temp_dir}",
        "--disable-usage-stats", "--object-store-memory=80000000",
        f"--node-manager-port={ports['node_manager']}", f"--object-manager-port={ports['object_manager']}",
        f"--dashboard-agent-listen-port={ports['agent_http']}",
        f"--dashboard-agent-grpc-port={ports['agent_grpc']}",
        f"--runtime-env-agent-port={ports['runtime_env']}", f"--metrics-export-port={ports['metrics']}",
        f"--worker-port-list={workers}",
    ]  # fmt: skip


def _start(args: list[str], temp_dir: Path) -> Node:
    temp_dir.mkdir(parents=True, exist_ok=True)
    log = temp_dir.with_suffix(".log")
    with open(log, "wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ENV}, start_new_session=True
        )
    return Node(process, temp_dir, log)


def _wait(node: Node, ready: object, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():  # type: ignore[operator]
        if node.process.poll() is not None:
            raise RuntimeError(f"{what} exited: {node.log.read_text(errors='replace')[-1500:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {START_TIMEOUT:.0f}s")
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(timeout=0.25)  # paces the poll and notices an early exit


def _port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def _worker_registered(log: Path) -> bool:
    return "Ray runtime started" in log.read_text(errors="replace")


@contextlib.contextmanager
def running(cpus_per_node: int = 1) -> Iterator[Cluster]:
    """A head node and one worker node on 127.0.0.1, each with `cpus_per_node` CPUs; always stopped.

    The temp dirs sit in a short folder of /tmp: Ray's unix sockets live there (107-byte limit)."""
    ray = ray_binary()
    if ray is None:
        raise RuntimeError("the `ray` command is missing: pip install 'mose-shards[ray]'")
    gcs = free_ports(("gcs",))["gcs"]
    nodes: list[Node] = []
    root = Path(tempfile.mkdtemp(prefix="mose-ray-"))
    try:
        head = _start([ray, "start", "--head", f"--port={gcs}", "--include-dashboard=false",
                       *_node_args(root / "head", cpus_per_node)], root / "head")  # fmt: skip
        nodes.append(head)
        _wait(head, lambda: _port_open(gcs) and _worker_registered(head.log), "the Ray head node")
        address = f"127.0.0.1:{gcs}"
        worker = _start([ray, "start", f"--address={address}", *_node_args(root / "worker", cpus_per_node)],
                        root / "worker")  # fmt: skip
        nodes.append(worker)
        _wait(worker, lambda: _worker_registered(worker.log), "the Ray worker node")
        yield Cluster(address, head, [worker])
    finally:
        for node in reversed(nodes):
            node.kill()
        shutil.rmtree(root, ignore_errors=True)
