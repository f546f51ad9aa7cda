"""One TLS context per process for every S3 client, inherited by forked DataLoader workers.

aiobotocore builds a new SSL context for each client's HTTP session, loading the whole CA bundle,
even for an http:// endpoint: ~20 ms of CPU on the first request of every client. A DataLoader
worker makes its own client (clients cannot cross a fork), so every worker of every epoch paid it
before its first clip, a round trip's worth at 20 ms. `SharedTLSSession` is aiobotocore's own
`AIOHTTPSession` (chosen through `AioConfig(http_session_cls=...)`, aiobotocore's documented
switch) whose contexts are kept per process and per verification setting: the first client builds
them, the other clients and every forked worker reuse them. A proxy's contexts are built as before.

This module imports aiobotocore: `storage.py` imports it only for s3:// stores (s3fs imports
aiobotocore anyway), and only where the user did not choose an `http_session_cls` (`SUPPORTED`
says whether this aiobotocore takes one and builds its contexts where this class expects).
"""

from __future__ import annotations

import inspect
import os
import threading
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession

SUPPORTED = "http_session_cls" in inspect.signature(AioConfig.__init__).parameters and callable(
    getattr(AIOHTTPSession, "_build_ssl_contexts", None)
)
_lock = threading.Lock()


def _reset_lock() -> None:  # a lock a parent's thread held at the fork would stay held in the child
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock)


class SharedTLSSession(AIOHTTPSession):
    """AIOHTTPSession whose SSL contexts (without a proxy) are built once per process."""

    contexts: dict[tuple[Any, ...], Any] = {}

    def _build_ssl_contexts(self, proxy_url: Any, *args: Any, **kwargs: Any) -> Any:
        if proxy_url or args or kwargs:  # a proxy's context depends on the proxy's own settings
            return super()._build_ssl_contexts(proxy_url, *args, **kwargs)
        key = (self._verify, self._cert_file, self._key_file)
        with _lock:  # built in a thread (asyncio.to_thread), maybe by several clients at once
            made = self.contexts.get(key)
            if made is None:
                made = self.contexts[key] = super()._build_ssl_contexts(proxy_url)
        return made
