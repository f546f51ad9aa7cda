"""A loopback TCP proxy that adds a fixed delay to every request (tc netem is not available here).

One proxy serves tests and benchmarks: this is tests/faulty_proxy.py's, without faults. A request
is taken to start when the client sends after the server has answered (or first), which is how
HTTP/1.1 keep-alive connections (S3) alternate; that chunk is held back by `delay` seconds.
`proxy.requests` counts the requests it forwarded.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tests.faulty_proxy import FaultyProxy

LatencyProxy = FaultyProxy


@contextmanager
def latency_proxy(target_port: int, delay: float = 0.02) -> Iterator[FaultyProxy]:
    proxy = FaultyProxy(target_port, delay=delay).start()
    try:
        yield proxy
    finally:
        proxy.stop()
