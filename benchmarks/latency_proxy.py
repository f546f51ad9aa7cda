"""A loopback TCP proxy that adds a fixed delay to every request (tc netem is not available here).

A request is taken to start when the client sends after the server has answered (or first), which
is how HTTP/1.1 keep-alive connections (S3) alternate; that chunk is held back by `delay` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, state: dict, upstream: bool,
                delay: float) -> None:  # fmt: skip
    try:
        while data := await reader.read(1 << 16):
            if upstream and state["new_request"]:
                state["new_request"] = False
                state["requests"] += 1
                await asyncio.sleep(delay)
            if not upstream:
                state["new_request"] = True
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()  # the other direction sees EOF and ends too


class LatencyProxy:
    """Listens on 127.0.0.1:<port>, forwards to target_port, delaying each request by `delay` s."""

    def __init__(self, target_port: int, delay: float = 0.02) -> None:
        self.target_port, self.delay = target_port, delay
        self.requests = 0
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        state = {"new_request": True, "requests": 0}
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(_pump(client_r, server_w, state, True, self.delay),
                                 _pump(server_r, client_w, state, False, self.delay))  # fmt: skip
        self.requests += state["requests"]

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

    def start(self) -> LatencyProxy:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@contextmanager
def latency_proxy(target_port: int, delay: float = 0.02) -> Iterator[LatencyProxy]:
    proxy = LatencyProxy(target_port, delay).start()
    try:
        yield proxy
    finally:
        proxy.stop()
