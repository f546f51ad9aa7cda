"""A loopback TCP proxy in front of an HTTP server (SeaweedFS's S3) that breaks a fixed share of
requests: every Nth matching request gets its connection reset, or a 503 SlowDown answer.

Deterministic in count: with `every=7` exactly one request in seven (among those whose head
contains `match`) fails, whichever connection or thread sent it. A request is taken to start when
the client sends after the server has answered (or first), which is how HTTP/1.1 keep-alive
connections alternate. `delay` adds that many seconds to every request, as benchmarks/latency_proxy.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
KINDS = ("reset", "503")


class FaultyProxy:
    """Listens on 127.0.0.1:<port> and forwards to target_port, failing every `every`-th request."""

    def __init__(self, target_port: int, kind: str = "reset", every: int = 0, match: bytes = b"",
                 delay: float = 0.0) -> None:  # fmt: skip
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        self.target_port, self.kind, self.every, self.match, self.delay = (
            target_port,
            kind,
            every,
            match,
            delay,
        )
        self.requests = 0  # matching requests seen
        self.faults = 0  # of which failed on purpose
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _should_fail(self, head: bytes) -> bool:
        if self.match and self.match.lower() not in head.lower():
            return False
        self.requests += 1  # the event loop's thread only: no lock needed
        fail = self.every > 0 and self.requests % self.every == 0
        self.faults += fail
        return fail

    async def _fail(self, client_w: asyncio.StreamWriter) -> None:
        if self.kind == "503":
            client_w.write(SLOW_DOWN % (len(SLOW_DOWN_BODY), SLOW_DOWN_BODY))
            with contextlib.suppress(ConnectionError):
                await client_w.drain()
            client_w.close()
        else:
            sock = client_w.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
            client_w.transport.abort()

    async def _upstream(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                        server_w: asyncio.StreamWriter, state: dict[str, bool]) -> None:  # fmt: skip
        try:
            while data := await client_r.read(1 << 16):
                if state["new_request"]:
                    state["new_request"] = False
                    if self._should_fail(data):
                        await self._fail(client_w)
                        break
                    if self.delay:
                        await asyncio.sleep(self.delay)
                server_w.write(data)
                await server_w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            server_w.close()

    @staticmethod
    async def _downstream(server_r: asyncio.StreamReader, client_w: asyncio.StreamWriter,
                          state: dict[str, bool]) -> None:  # fmt: skip
        try:
            while data := await server_r.read(1 << 16):
                state["new_request"] = True
                client_w.write(data)
                await client_w.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            client_w.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        state = {"new_request": True}
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(self._upstream(client_r, client_w, server_w, state),
                                 self._downstream(server_r, client_w, state))  # fmt: skip

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    def start(self) -> FaultyProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def faulty_proxy(target_port: int, kind: str = "reset", every: int = 0, match: bytes = b"",
                 delay: float = 0.0) -> Iterator[FaultyProxy]:  # fmt: skip
    """A running FaultyProxy for the duration of a with-block."""
    proxy = FaultyProxy(target_port, kind, every, match, delay).start()
    try:
        yield proxy
    finally:
        proxy.stop()
