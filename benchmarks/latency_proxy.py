"""A loopback TCP proxy that adds a fixed delay to every request (tc netem is not available here).

A request is taken to start when the client sends after the server has answered (or first), which
is how HTTP/1.1 keep-alive connections (S3) alternate; its first bytes are held back by `delay`
seconds. `proxy.requests` counts the requests it forwarded.

Bytes move with splice(2) through a pipe, in the kernel, by two threads per connection: the proxy
shares the benchmark machine's cores with the readers it measures, and a user-space copy (asyncio,
64 KiB reads) cost ~3 ms of CPU per 3.5 MB response, a tenth of a 240-pixel clip's decode, which
is the emulated network's cost, not the reader's. (tests/faulty_proxy.py, which breaks requests on
purpose, keeps its asyncio loop.)
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

PIPE_BYTES = 1 << 20  # bytes a splice moves at once (the pipe's capacity, Linux's default maximum)


class LatencyProxy:
    """Listens on 127.0.0.1:<port> and forwards to target_port, each request `delay` seconds late."""

    def __init__(self, target_port: int, delay: float = 0.02) -> None:
        self.target_port, self.delay = target_port, delay
        self.requests = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._open: set[socket.socket] = set()

    def start(self) -> LatencyProxy:
        threading.Thread(target=self._accept, daemon=True, name="latency-proxy").start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            threading.Thread(target=self._connection, args=(client,), daemon=True).start()

    def _connection(self, client: socket.socket) -> None:
        """One client connection and its own connection to the server, until both sides end."""
        with client, socket.create_connection(("127.0.0.1", self.target_port)) as server:
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open |= {client, server}
            answered = threading.Event()
            answered.set()  # the client's first bytes start a request
            up = threading.Thread(target=self._pump, args=(client, server, True, answered), daemon=True)
            up.start()
            self._pump(server, client, False, answered)
            up.join()
            with self._lock:
                self._open -= {client, server}

    def _pump(self, src: socket.socket, dst: socket.socket, up: bool, answered: threading.Event) -> None:
        """Move src's bytes to dst until src ends; upstream, a request's first bytes wait `delay`."""
        read_end, write_end = os.pipe()
        fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        try:
            while (n := os.splice(src.fileno(), write_end, PIPE_BYTES)) > 0:
                if up and answered.is_set():  # the client sends after an answer: a new request
                    answered.clear()
                    with self._lock:
                        self.requests += 1
                    time.sleep(self.delay)
                elif not up:
                    answered.set()
                while n:
                    n -= os.splice(read_end, dst.fileno(), n)
        except OSError:  # a side reset or closed by stop()
            pass
        finally:
            os.close(read_end)
            os.close(write_end)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


@contextmanager
def latency_proxy(target_port: int, delay: float = 0.02) -> Iterator[LatencyProxy]:
    proxy = LatencyProxy(target_port, delay).start()
    try:
        yield proxy
    finally:
        proxy.stop()
