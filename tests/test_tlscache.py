"""S3 clients of a process, and its forked workers, share one TLS context (core/tlscache.py)."""

from __future__ import annotations

import multiprocessing
import pickle
import ssl
from typing import Any

import pytest

from mose_shards.core.storage import Store, _fsspec_options
from tests.s3server import S3Server

pytestmark = pytest.mark.s3
tlscache = pytest.importorskip("mose_shards.core.tlscache")


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """CA bundle loads (the ~20 ms of building a verifying context), counted; no context cached."""
    calls: list[str] = []
    original = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        calls.append(str(args[:1]))
        original(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    monkeypatch.setattr(tlscache.SharedTLSSession, "contexts", {})
    return calls


def _store(server: S3Server) -> Store:
    store = Store(server.url("tls"), server.storage_options())  # skip_instance_cache: a new client
    store.write("probe.txt", b"ok")
    return store


def test_the_s3_clients_of_a_process_build_one_tls_context(s3_server: S3Server, loads: list[str]) -> None:
    """Two clients (two Stores, no instance cache), each with its own HTTP session, load the CA
    bundle once between them."""
    assert tlscache.SUPPORTED
    first, second = _store(s3_server), _store(s3_server)
    assert first.fs is not second.fs
    assert first.read("probe.txt") == second.read("probe.txt") == b"ok"
    assert len(loads) == 1


def _child(url: str, options: dict[str, Any], loads: list[str], out: Any) -> None:
    before = len(loads)  # the parent's counter, copied by the fork (fork passes args unpickled)
    data = Store(url, options).read("probe.txt")
    out.send((data, len(loads) - before))


def test_a_forked_worker_reuses_its_parents_tls_context(s3_server: S3Server, loads: list[str]) -> None:
    """A DataLoader-style forked child makes its own client, but its first request loads no CA
    bundle: the parent's context came with the fork."""
    parent = _store(s3_server)
    assert parent.read("probe.txt") == b"ok" and len(loads) == 1
    ctx = multiprocessing.get_context("fork")
    ours, theirs = ctx.Pipe()
    options = s3_server.storage_options()
    child = ctx.Process(target=_child, args=(s3_server.url("tls"), options, loads, theirs))
    child.start()
    assert ours.poll(60), "the forked child did not answer"
    data, loaded = ours.recv()
    child.join(30)
    assert (data, loaded, child.exitcode) == (b"ok", 0, 0)


def test_options_kept_by_a_store_are_the_users(s3_server: S3Server) -> None:
    """The session class goes to fsspec only: a Store's own options stay plain (picklable, JSON-able),
    a user's own http_session_cls is kept, and other protocols pass unchanged."""
    store = Store(s3_server.url("tls"), s3_server.storage_options())
    assert "config_kwargs" not in store.storage_options
    assert store.fs.config_kwargs["http_session_cls"] is tlscache.SharedTLSSession
    assert pickle.loads(pickle.dumps(tlscache.SharedTLSSession)) is tlscache.SharedTLSSession
    mine = {"config_kwargs": {"http_session_cls": object, "retries": {"max_attempts": 2}}}
    assert _fsspec_options("s3://b/x", mine) == mine
    assert _fsspec_options("gs://b/x", {"token": "anon"}) == {"token": "anon"}
    assert _fsspec_options("s3://b/x", {"config_kwargs": {"read_timeout": 5}}) == {
        "config_kwargs": {"read_timeout": 5, "http_session_cls": tlscache.SharedTLSSession}
    }
