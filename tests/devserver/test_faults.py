"""Fault injection, stop/restart on the same port, and request counters (issue 3)."""

from __future__ import annotations

import threading
import time

import hvac
import hvac.exceptions
import pytest
import requests

from kv2render.devserver import DevServer, Faults
from tests.devserver.helpers import client, raw, read


def test_status_fault_500_and_429_retry_after(srv: DevServer) -> None:
    """KV2-AC-149: status faults answer every request in the flavour's error shape."""
    srv.put("k", {"a": 1})
    srv.faults.status = 500
    r = raw(srv, "GET", "/v1/secret/data/k")
    assert r.status == 500 and r.headers["Content-Type"] == "application/json"
    assert r.json["errors"]
    with pytest.raises(hvac.exceptions.InternalServerError):
        read(client(srv), "k")
    srv.faults.status, srv.faults.retry_after = 429, 7
    r = raw(srv, "GET", "/v1/secret/data/k")
    assert r.status == 429 and r.headers["Retry-After"] == "7"
    if srv.flavor != "ovh":
        assert r.json["errors"] == ['request path "secret/data/k": rate limit quota exceeded']
    with pytest.raises(hvac.exceptions.RateLimitExceeded):
        read(client(srv), "k")
    srv.faults.status = srv.faults.retry_after = None
    assert raw(srv, "GET", "/v1/secret/data/k").status == 200


def test_fail_next_then_clears(srv: DevServer) -> None:
    """KV2-AC-149: fail_next fails that many requests with .status, then clears it."""
    srv.put("k", {"a": 1})
    srv.faults.status, srv.faults.fail_next = 502, 2
    assert [raw(srv, "GET", "/v1/secret/data/k").status for _ in range(3)] == [502, 502, 200]
    assert srv.faults.status is None and srv.faults.fail_next == 0
    srv.faults.fail_next = 1  # status None -> 500
    assert raw(srv, "GET", "/v1/secret/data/k").status == 500
    assert raw(srv, "GET", "/v1/secret/data/k").status == 200


def test_latency() -> None:
    """KV2-AC-149: latency adds delay to each answer and can be cleared."""
    with DevServer() as srv:
        srv.faults.latency = 0.3
        t0 = time.monotonic()
        raw(srv, "GET", "/v1/sys/health", token=None)
        assert time.monotonic() - t0 >= 0.3
        srv.faults.latency = 0
        t0 = time.monotonic()
        raw(srv, "GET", "/v1/sys/health", token=None)
        assert time.monotonic() - t0 < 0.3


def test_drop_closes_without_response(srv: DevServer) -> None:
    """KV2-AC-149: drop closes the connection without an answer; clearing it restores service."""
    srv.put("k", {"a": 1})
    srv.faults.drop = True
    with pytest.raises(requests.exceptions.ConnectionError):
        read(client(srv), "k")
    assert ("GET", "/v1/secret/data/k", 0) in srv.requests
    srv.faults.drop = False
    assert read(client(srv), "k")["data"]["data"] == {"a": 1}


def test_hang_released_by_stop() -> None:
    """KV2-AC-149: hang never answers; a client timeout fires; stop() releases the thread."""
    srv = DevServer().start()
    srv.faults.hang = True
    c = hvac.Client(url=srv.url, token=srv.root_token, timeout=0.3)
    with pytest.raises(requests.exceptions.Timeout):
        read(c, "k")
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 3


def test_stop_and_restart_same_port(srv: DevServer) -> None:
    """KV2-AC-149: stop refuses connections (also pooled keep-alive ones); restart rebinds the
    same port with the same state and tokens."""
    srv.put("k", {"a": 1})
    c = client(srv)
    assert read(c, "k")["data"]["data"] == {"a": 1}  # the session now holds a keep-alive conn
    port, url = srv.port, srv.url
    srv.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        read(c, "k")
    srv.restart()
    assert srv.port == port and srv.url == url
    assert read(c, "k")["data"]["data"] == {"a": 1}


def test_stop_is_idempotent_and_context_manager() -> None:
    """KV2-AC-148: start() returns self; stop() twice is harmless; context manager stops."""
    with DevServer() as srv:
        assert srv.start() is srv
        port = srv.port
    srv.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/v1/sys/health", timeout=2)


def test_counters(srv: DevServer) -> None:
    """KV2-AC-148: per-path, per-method counts of served requests; no tokens recorded."""
    srv.put("a", {"x": 1})
    for _ in range(3):
        raw(srv, "GET", "/v1/secret/data/a")
    raw(srv, "GET", "/v1/secret/data/missing")
    raw(srv, "GET", "/v1/secret/metadata/?list=true")
    assert srv.request_count() == 5
    assert srv.request_count(path_prefix="/v1/secret/data/") == 4
    assert srv.request_count("GET", "/v1/secret/data/a") == 3
    assert srv.request_count("POST") == 0
    assert ("GET", "/v1/secret/data/missing", 404) in srv.requests
    assert ("GET", "/v1/secret/metadata/", 200) in srv.requests  # query never recorded
    assert all(srv.root_token not in p for _, p, _ in srv.requests)
    srv.reset_counters()
    assert srv.request_count() == 0 and srv.requests == []


def test_python_api_put_delete_destroy_tokens() -> None:
    """KV2-AC-148: put/delete/undelete/destroy/delete_metadata and token issue/revoke."""
    with DevServer() as srv:
        assert srv.put("k", {"a": 1}) == 1
        assert srv.put("k", {"a": 2}, cas=1) == 2
        with pytest.raises(Exception, match="check-and-set"):
            srv.put("k", {"a": 3}, cas=0)
        srv.delete("k")
        assert raw(srv, "GET", "/v1/secret/data/k").status == 404
        srv.undelete("k", [2])
        assert srv.read("k") == {"a": 2}
        srv.delete("k", versions=[1])
        srv.destroy("k", [2])
        with pytest.raises(KeyError):
            srv.read("k")
        srv.delete_metadata("k")
        assert raw(srv, "GET", "/v1/secret/metadata/k").status == 404
        tok = srv.create_token(["default"], ttl=30)
        assert 0 < (srv.token_ttl(tok) or 0) <= 30
        srv.revoke_token(tok)
        with pytest.raises(KeyError):
            srv.token_ttl(tok)
        with pytest.raises(KeyError, match="add_mount"):
            srv.put("x", {}, mount="nope")


def test_fixed_root_token_and_repr_hides_it() -> None:
    """KV2-AC-148: root_token can be fixed; reprs never show tokens."""
    sentinel = "hvs.SENTINEL-root-token-123"
    srv = DevServer(root_token=sentinel)
    assert srv.root_token == sentinel
    assert sentinel not in repr(srv)
    tok = srv.state.tokens.lookup(sentinel)
    assert tok is not None and sentinel not in repr(tok)


def test_faults_object_can_be_replaced() -> None:
    """KV2-AC-149: assigning a new Faults object takes effect too."""
    with DevServer() as srv:
        srv.faults = Faults(sealed=True)
        assert raw(srv, "GET", "/v1/secret/data/k").status == 503
        srv.faults = Faults()
        assert raw(srv, "GET", "/v1/secret/data/k").status == 404


def test_concurrent_clients() -> None:
    """KV2-NFR-130: many threads reading and writing at once get consistent answers."""
    with DevServer() as srv:
        srv.put("k", {"n": 0})
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                c = client(srv)
                for j in range(20):
                    c.secrets.kv.v2.create_or_update_secret(f"t{i}", {"j": j})
                    assert read(c, f"t{i}")["data"]["data"] == {"j": j}
            except BaseException as exc:  # surfaced below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert errors == []
        assert srv.request_count("POST") == 160
