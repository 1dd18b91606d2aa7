"""Transport-level conformance: headers, verbs, decoding, error shapes, keep-alive (§1, §6.2)."""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.parse

import pytest

from kv2render.devserver import DevServer
from tests.devserver.helpers import client, raw, read


def _sock(srv: DevServer) -> socket.socket:
    url = urllib.parse.urlsplit(srv.url)
    s = socket.create_connection((url.hostname or "", url.port or 0), timeout=5)
    return s


def _recv_all(s: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = s.recv(65536)
        except TimeoutError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def test_headers_ignored_and_put_equals_post(srv: DevServer) -> None:
    """KV2-AC-151: X-Vault-Request accepted and ignored; PUT and POST are the same write."""
    h = {"X-Vault-Request": "true"}
    assert raw(srv, "PUT", "/v1/secret/data/k", {"data": {"a": 1}}, headers=h).status == 200
    assert raw(srv, "POST", "/v1/secret/data/k", {"data": {"a": 2}}, headers=h).status == 200
    assert raw(srv, "GET", "/v1/secret/data/k", headers=h).json["data"]["metadata"]["version"] == 2


def test_percent_decoding(srv: DevServer) -> None:
    """KV2-AC-151: hvac quotes path components; the server percent-decodes them (§6.2)."""
    c = client(srv)
    c.secrets.kv.v2.create_or_update_secret("app/my secret@x", {"a": 1})
    assert srv.read("app/my secret@x") == {"a": 1}
    assert raw(srv, "GET", "/v1/secret/data/app/my%20secret%40x").json["data"]["data"] == {"a": 1}
    assert read(c, "app/my secret@x")["data"]["data"] == {"a": 1}


def test_cache_control_and_content_type_everywhere(srv: DevServer) -> None:
    """KV2-AC-137, KV2-INV-131: Content-Type exactly application/json on 200/204/4xx/5xx."""
    srv.put("k", {"a": 1})
    cases = [
        ("GET", "/v1/secret/data/k", None),
        ("DELETE", "/v1/secret/data/k", None),
        ("GET", "/v1/secret/data/k", None),
        ("GET", "/v1/secret/data/missing", None),
        ("POST", "/v1/secret/data/k", b"{"),
        ("BREW", "/v1/secret/data/k", None),
        ("GET", "/v1/nothing-here", None),
        ("GET", "/", None),
    ]
    for method, path, body in cases:
        r = raw(srv, method, path, body)
        assert r.headers["Content-Type"] == "application/json", (method, path, r.status)
        assert r.headers["Cache-Control"] == "no-store"
        if r.status != 204:
            json.loads(r.body)


def test_unknown_verb_and_wrong_method(srv: DevServer) -> None:
    """KV2-AC-150: an unknown verb is 405 with an error body; wrong method on a KV path 405."""
    r = raw(srv, "BREW", "/v1/secret/data/k")
    assert r.status == 405
    if srv.flavor != "ovh":
        assert r.body == b'{"errors":[]}\n'
    r = raw(srv, "GET", "/v1/secret/destroy/k")
    assert r.status == 405 and r.json["errors"]


def test_not_v1_paths(srv: DevServer) -> None:
    """KV2-AC-150: paths outside /v1/ get a JSON 404."""
    r = raw(srv, "GET", "/ui/")
    assert r.status == 404 and "errors" in r.json


def test_malformed_request_line_gets_json_and_close() -> None:
    """KV2-INV-132, KV2-AC-150: garbage on the socket gets a JSON 400 and the connection closes."""
    with DevServer() as srv:
        s = _sock(srv)
        s.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        data = _recv_all(s)
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400")
        assert b"Content-Type: application/json" in head
        assert json.loads(body)["errors"]
        assert b"Traceback" not in data
        # the server still serves
        assert raw(srv, "GET", "/v1/sys/health", token=None).status == 200


def test_bad_header_and_huge_line() -> None:
    """KV2-INV-132: an over-long request line and a bad Content-Length get JSON errors."""
    with DevServer() as srv:
        s = _sock(srv)
        s.sendall(b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n")
        data = _recv_all(s)
        s.close()
        assert data.startswith(b"HTTP/1.1 414") and b'"errors"' in data
        s = _sock(srv)
        s.sendall(b"POST /v1/secret/data/k HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        data = _recv_all(s)
        s.close()
        assert data.startswith(b"HTTP/1.1 ") and b"Traceback" not in data
        assert b'"errors"' in data


def test_chunked_body() -> None:
    """KV2-AC-151: a chunked request body is read like a Content-Length one."""
    with DevServer() as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        body = json.dumps({"data": {"a": 1}}).encode()
        conn.putrequest("POST", "/v1/secret/data/k")
        conn.putheader("X-Vault-Token", srv.root_token)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        conn.send(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        conn.close()
        assert srv.read("k") == {"a": 1}


def test_keep_alive_many_requests_one_connection(srv: DevServer) -> None:
    """KV2-NFR-130: one HTTP/1.1 connection serves many requests, including errors."""
    srv.put("k", {"a": 1})
    url = urllib.parse.urlsplit(srv.url)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=5)
    hdr = (
        {"Authorization": f"Bearer {srv.root_token}"}
        if srv.flavor == "ovh"
        else {"X-Vault-Token": srv.root_token}
    )
    for i in range(50):
        path = "/v1/secret/data/k" if i % 3 else "/v1/secret/data/missing"
        conn.request("GET", url.path + path, headers=hdr)
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (200, 404)
        assert resp.version == 11 and not resp.will_close
    sock = conn.sock
    assert sock is not None
    conn.close()


def test_connection_close_honoured() -> None:
    """KV2-INV-132: Connection: close gets a response and then the socket closes (no hang)."""
    with DevServer() as srv:
        s = _sock(srv)
        s.sendall(b"GET /v1/sys/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = _recv_all(s)
        s.close()
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"}\n")


def test_body_too_large() -> None:
    """KV2-INV-132: a body above 32 MiB is refused with 413 without reading it."""
    with DevServer() as srv:
        s = _sock(srv)
        s.sendall(
            b"POST /v1/secret/data/k HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"
        )
        data = _recv_all(s)
        s.close()
        assert data.startswith(b"HTTP/1.1 413") and b'"errors"' in data


@pytest.mark.parametrize("flavor", ["vault", "openbao"])
def test_non_object_json_and_empty_body(flavor: str) -> None:
    """KV2-AC-150: JSON that is not an object is 400; an empty body is an empty object."""
    with DevServer(flavor=flavor) as srv:
        r = raw(srv, "POST", "/v1/secret/data/k", b'"str"')
        assert r.status == 400
        r = raw(srv, "POST", "/v1/secret/data/k", b"")
        assert (r.status, r.json["errors"]) == (400, ["no data provided"])
        tok = srv.create_token(["default"], ttl=60)
        r = raw(srv, "POST", "/v1/auth/token/revoke-self", b"", token=tok)
        assert r.status == 204


def test_no_nagle_stall_on_keep_alive() -> None:
    """KV2-NFR-130: 300 sequential keep-alive reads finish well under the ~12 s that a
    40 ms Nagle/delayed-ACK stall per request would cost (headers+body in one write)."""
    with DevServer() as srv:
        srv.put("k", {"a": 1})
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        hdr = {"X-Vault-Token": srv.root_token}
        t0 = time.perf_counter()
        for _ in range(300):
            conn.request("GET", "/v1/secret/data/k", headers=hdr)
            resp = conn.getresponse()
            resp.read()
        elapsed = time.perf_counter() - t0
        conn.close()
        assert elapsed < 3.0, f"300 reads took {elapsed:.2f}s"
        assert srv.request_count("GET", "/v1/secret/data/k") == 300


def test_tcp_nodelay_set_on_accepted_sockets() -> None:
    """KV2-NFR-130: the server sets TCP_NODELAY on every accepted connection."""
    with DevServer() as srv:
        seen: list[int] = []
        import kv2render.devserver.httpserver as hs

        original = hs._Handler.setup

        def spy(self: hs._Handler) -> None:
            original(self)
            seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

        hs._Handler.setup = spy  # type: ignore[method-assign]
        try:
            raw(srv, "GET", "/v1/sys/health", token=None)
        finally:
            hs._Handler.setup = original  # type: ignore[method-assign]
        assert seen and seen[0] != 0


def test_head_has_no_body_and_keeps_stream_in_sync() -> None:
    """KV2-INV-132: HEAD gets a bodiless answer; the next request on the connection works."""
    with DevServer() as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        conn.request("HEAD", "/v1/secret/data/k", headers={"X-Vault-Token": srv.root_token})
        resp = conn.getresponse()
        assert resp.status == 405 and resp.read() == b""
        conn.request("GET", "/v1/sys/health")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["sealed"] is False
        conn.close()


def test_ipv6_loopback() -> None:
    """KV2-AC-148: the server binds an IPv6 loopback address when asked."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        srv = DevServer(host="::1").start()
    except OSError:
        pytest.skip("::1 not available")
    try:
        assert srv.url.startswith("http://[::1]:")
        assert raw(srv, "GET", "/v1/sys/health", token=None).status == 200
    finally:
        srv.stop()


def test_broken_request_log_hook_does_not_break_answers() -> None:
    """KV2-INV-132: an on_request hook that raises does not change the answer."""

    def hook(method: str, path: str, status: int) -> None:
        raise BrokenPipeError("stderr closed")

    with DevServer(on_request=hook) as srv:
        assert raw(srv, "GET", "/v1/sys/health", token=None).status == 200
