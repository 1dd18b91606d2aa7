"""HvacSecretStore: real hvac over real sockets.

Reads, error mapping and retries run against the embedded dev server. Answers no
KV2 server gives (non-JSON, wrong Content-Type, redirects, scripted 503/429
sequences) come from ``ScriptedServer``, a few lines of http.server owned by this
test: real HTTP on a real socket, nothing of hvac's is mocked.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from kv2render.config import AuthSettings, VaultSettings
from kv2render.config.auth import TokenEnvSettings
from kv2render.config.logins import BearerTokenFileSettings, JwtSettings
from kv2render.errors import (
    AccessDeniedError,
    AuthError,
    BadResponseError,
    SecretDeletedError,
    SecretDestroyedError,
    SecretNotFoundError,
    SecretReadError,
    TransientError,
)
from kv2render.refs import SecretLocation
from kv2render.store.auth import build_authenticator
from kv2render.store.client import HvacSecretStore

if TYPE_CHECKING:
    from kv2render.devserver import DevServer

JSON = "application/json"


# --------------------------------------------------------------------------- scripted server


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str | None = JSON


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


def kv_body(data: Any = None, version: Any = 1, **meta: Any) -> dict[str, Any]:
    metadata = {"created_time": "2026-01-01T00:00:00Z", "deletion_time": "", "destroyed": False}
    metadata.update(meta, version=version)
    return {
        "request_id": "r",
        "data": {"data": data if data is not None else {"k": "v"}, "metadata": metadata},
    }


class ScriptedServer:
    """Answers each request with the next scripted Reply (the last one repeats)."""

    def __init__(self, replies: list[Reply]) -> None:
        self.replies = list(replies)
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.seen.append(Seen(self.command, self.path, dict(self.headers)))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                reply = outer.replies.pop(0) if len(outer.replies) > 1 else outer.replies[0]
                body = reply.body
                raw = (
                    json.dumps(body).encode()
                    if isinstance(body, dict)
                    else (body.encode() if isinstance(body, str) else body)
                )
                self.send_response(reply.status)
                if reply.content_type is not None:
                    self.send_header("Content-Type", reply.content_type)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[ScriptedServer] = []

    def start(*replies: Reply) -> ScriptedServer:
        server = ScriptedServer(list(replies))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def token_store(
    url: str, token: str = "hvs.test", *, retries: int = -1, **kwargs: Any
) -> HvacSecretStore:
    settings = VaultSettings(address=url, num_retries=retries, timeout=5.0)
    auth = build_authenticator(AuthSettings(config=TokenEnvSettings(token), type="token_env"))
    return HvacSecretStore(settings, auth, **kwargs)


LOC = SecretLocation("secret", "app/db")
LOOKUP_OK = Reply(200, {"data": {"ttl": 0, "renewable": False}})  # lookup-self at token_env login


# --------------------------------------------------------------------------- reads (dev server)


def test_read_latest_and_pinned(dev_server: DevServer) -> None:
    """KV2-AC-068: KV2 read of the latest and of a pinned version; data and metadata.version
    returned."""
    dev_server.put("app/db", {"password": "one"})
    dev_server.put("app/db", {"password": "two", "port": 5432})
    with token_store(dev_server.url, dev_server.root_token) as store:
        latest = store.read(LOC)
        pinned = store.read(SecretLocation("secret", "app/db", 1))
    assert (latest.version, dict(latest.data)) == (2, {"password": "two", "port": 5432})
    assert (pinned.version, dict(pinned.data)) == (1, {"password": "one"})
    assert "two" not in repr(latest)
    assert latest.metadata["version"] == 2


def test_missing_deleted_destroyed_are_distinguished(dev_server: DevServer) -> None:
    """KV2-FC-051 KV2-AC-058 KV2-AC-059: 404 with no body, with deletion_time, with
    destroyed=true: three distinct errors."""
    dev_server.put("app/db", {"a": "1"})
    dev_server.put("app/db", {"a": "2"})
    dev_server.put("app/db", {"a": "3"})
    dev_server.delete("app/db", [2])
    dev_server.destroy("app/db", [1])
    with token_store(dev_server.url, dev_server.root_token) as store:
        with pytest.raises(SecretNotFoundError) as missing:
            store.read(SecretLocation("secret", "app/none"))
        with pytest.raises(SecretDeletedError) as deleted:
            store.read(SecretLocation("secret", "app/db", 2))
        with pytest.raises(SecretDestroyedError) as destroyed:
            store.read(SecretLocation("secret", "app/db", 1))
        with pytest.raises(SecretNotFoundError) as no_version:
            store.read(SecretLocation("secret", "app/db", 9))
        assert store.read(LOC).version == 3
    assert type(missing.value) is SecretNotFoundError
    assert "no secret at this path" in str(missing.value)
    assert "secret/app/none" in str(missing.value)
    assert "version 2 is deleted" in str(deleted.value)
    assert "version 1 is destroyed" in str(destroyed.value)
    assert type(no_version.value) is SecretNotFoundError
    assert "no version 9" in str(no_version.value)


def test_403_names_the_policy_path(dev_server: DevServer) -> None:
    """KV2-FC-050 KV2-AC-057: A 403 on a read is AccessDeniedError naming the exact policy grant
    needed."""
    dev_server.put("other/x", {"a": "1"})
    dev_server.add_policy("app-read", {"secret/data/app/*": ["read"]})
    token = dev_server.create_token(["app-read"])
    with token_store(dev_server.url, token) as store:
        with pytest.raises(AccessDeniedError) as info:
            store.read(SecretLocation("secret", "other/x"))
    assert 'grant "read" on "secret/data/other/x"' in str(info.value)
    assert token not in str(info.value)


def test_transient_errors_are_retried_then_succeed(scripted: Any) -> None:
    """KV2-INV-054 KV2-AC-064: 503 sealed, 500 and 429 (Retry-After honoured) are retried with
    backoff."""
    server = scripted(
        LOOKUP_OK,
        Reply(503, {"errors": ["Vault is sealed"]}),
        Reply(500, {"errors": ["internal error"]}),
        Reply(429, {"errors": ["rate limit quota exceeded"]}, headers={"Retry-After": "7"}),
        Reply(200, kv_body({"k": "v"}, 4)),
    )
    delays: list[float] = []
    with token_store(server.url, retries=5, sleep=delays.append) as store:
        assert store.read(LOC).version == 4
    reads = [s for s in server.seen if "/data/" in s.path]
    assert len(reads) == 4
    assert len(delays) == 3
    assert 0.125 <= delays[0] <= 0.25 and 0.25 <= delays[1] <= 0.5
    assert delays[2] == 7.0  # Retry-After is a floor above the 1s backoff


def test_retries_exhausted_raise_transient_error(scripted: Any) -> None:
    """KV2-FC-054 KV2-AC-065: every attempt used up: TransientError naming path and attempts."""
    server = scripted(LOOKUP_OK, Reply(502, {"errors": ["bad gateway"]}))
    delays: list[float] = []
    with token_store(server.url, retries=3, sleep=delays.append) as store:
        with pytest.raises(TransientError) as info:
            store.read(LOC)
    assert "gave up after 4 attempts" in str(info.value)
    assert "secret/app/db" in str(info.value)
    assert len(delays) == 3
    assert len([s for s in server.seen if "/data/" in s.path]) == 4


def test_backoff_is_capped_and_stop_interrupts(scripted: Any) -> None:
    """KV2-INV-054: A set stop event ends the retry wait at once (daemon shutdown)."""
    server = scripted(LOOKUP_OK, Reply(503, {"errors": ["Vault is sealed"]}))
    stop = threading.Event()
    stop.set()
    with token_store(server.url, retries=10, stop_event=stop) as store:
        with pytest.raises(TransientError):
            store.read(LOC)
    # lookup-self at login is refused before sending; no read retried
    assert len([s for s in server.seen if "/data/" in s.path]) == 0


def test_connection_refused_is_transient() -> None:
    """KV2-INV-053: a connection error is a TransientError."""
    with token_store("http://127.0.0.1:9", retries=-1) as store:
        with pytest.raises(TransientError, match="cannot reach"):
            store.read(LOC)


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(200, "<html>hi</html>", content_type="text/html"), "Content-Type is 'text/html'"),
        (Reply(200, "not json at all"), "not valid JSON"),
        (Reply(200, "[1, 2]"), "not a JSON object"),
        (Reply(200, {"data": None}), "no data object"),
        (Reply(200, {"data": {"metadata": {"version": 1}}}), "no data.data"),
        (Reply(200, kv_body(data=["a"])), "data.data is a JSON list"),
        (Reply(200, {"data": {"data": {"k": "v"}}}), "no data.metadata"),
        (Reply(200, kv_body(version="3")), "version is not an integer"),
        (Reply(200, kv_body(version=True)), "version is not an integer"),
        (Reply(204, ""), "answered 204"),
        (Reply(418, {"errors": ["teapot"]}), "unexpected HTTP status 418: teapot"),
    ],
)
def test_bad_responses_name_the_path(scripted: Any, reply: Reply, message: str) -> None:
    """KV2-FC-052 KV2-AC-061: Issue 4 "Bad input": a clear BadResponseError naming the path, never
    a traceback."""
    server = scripted(LOOKUP_OK, reply)
    with token_store(server.url) as store:
        with pytest.raises(BadResponseError) as info:
            store.read(LOC)
    assert message in str(info.value)
    assert str(info.value).startswith("secret/app/db: ")


def test_pinned_version_mismatch_is_bad_response(scripted: Any) -> None:
    """KV2-FC-052: a pinned read answered with another version is a bad response."""
    server = scripted(LOOKUP_OK, Reply(200, kv_body(version=5)))
    with token_store(server.url) as store:
        with pytest.raises(BadResponseError, match="asked for version 3"):
            store.read(SecretLocation("secret", "app/db", 3))


def test_future_deletion_time_on_200_is_not_deleted(scripted: Any) -> None:
    """KV2-FC-051 KV2-AC-060: delete_version_after schedules a deletion_time in the future on a
    live version."""
    body = kv_body({"k": "v"}, 2, deletion_time="2999-01-01T00:00:00Z")
    server = scripted(LOOKUP_OK, Reply(200, body))
    with token_store(server.url) as store:
        assert store.read(LOC).version == 2


def test_content_type_with_charset_is_accepted(scripted: Any) -> None:
    """KV2-FC-052: the media type is checked; a charset parameter is fine."""
    server = scripted(
        LOOKUP_OK,
        Reply(200, kv_body(), content_type="application/json; charset=utf-8"),
    )
    with token_store(server.url) as store:
        assert store.read(LOC).version == 1


def test_redirect_is_not_followed(scripted: Any) -> None:
    """KV2-INV-053: A 3xx is refused: the token is never sent to another place."""
    elsewhere = scripted(Reply(200, kv_body()))
    server = scripted(
        LOOKUP_OK,
        Reply(307, "", headers={"Location": f"{elsewhere.url}/v1/secret/data/app/db"}),
    )
    with token_store(server.url) as store:
        with pytest.raises(BadResponseError, match="redirects are not followed"):
            store.read(LOC)
    assert elsewhere.seen == []


def test_401_names_what_to_check(scripted: Any) -> None:
    """KV2-FC-053 KV2-INV-053: 401 -> AuthError naming the credential."""
    server = scripted(LOOKUP_OK, Reply(401, {"errors": ["unauthorized"]}))
    with token_store(server.url) as store:
        with pytest.raises(AuthError) as info:
            store.read(LOC)
    assert "401 unauthorized" in str(info.value)
    assert "BAO_TOKEN / VAULT_TOKEN" in str(info.value)


def test_non_json_error_body_is_not_echoed(scripted: Any) -> None:
    """KV2-INV-001 KV2-INV-053: Error bodies are never copied into messages; only JSON `errors`
    strings are."""
    server = scripted(
        LOOKUP_OK,
        Reply(400, "<html>body-sentinel-4411</html>", content_type="text/html"),
    )
    with token_store(server.url) as store:
        with pytest.raises(SecretReadError) as info:
            store.read(LOC)
    assert "body-sentinel-4411" not in str(info.value)
    assert "400" in str(info.value)


def test_namespace_header_on_reads_and_login_namespace_on_login_only(
    scripted: Any, tmp_path: Path
) -> None:
    """KV2-INV-192 KV2-AC-196: vault.namespace goes on every request; auto_auth.method.namespace
    on the login only."""
    server = scripted(
        Reply(200, {"auth": {"client_token": "hvs.x", "lease_duration": 0, "renewable": False}}),
        Reply(200, kv_body()),
    )
    settings = VaultSettings(address=server.url, namespace="team-a/", num_retries=-1)
    jwt = tmp_path / "jwt"
    jwt.write_text("a.b.c")
    auth = build_authenticator(
        AuthSettings(type="jwt", namespace="admin/", config=JwtSettings("r", jwt))
    )
    with HvacSecretStore(settings, auth) as store:
        store.read(LOC)
    login, read = server.seen
    assert login.path == "/v1/auth/jwt/login"
    assert login.headers.get("X-Vault-Namespace") == "admin/"
    assert "X-Vault-Token" not in login.headers
    assert read.headers.get("X-Vault-Namespace") == "team-a/"
    assert read.headers.get("X-Vault-Token") == "hvs.x"
    assert read.path == "/v1/secret/data/app/db"


def test_single_attempt_with_retries_disabled(scripted: Any) -> None:
    """KV2-AC-065: num_retries -1 makes exactly one request, and says so."""
    server = scripted(LOOKUP_OK, Reply(500, {"errors": ["boom"]}))
    with token_store(server.url, retries=-1) as store:
        with pytest.raises(TransientError, match=r"gave up after 1 attempt\b"):
            store.read(LOC)
    assert len([s for s in server.seen if "/data/" in s.path]) == 1


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(403, {"errors": ["permission denied"]}), AccessDeniedError),
        (Reply(404, {"errors": []}), SecretNotFoundError),
        (Reply(400, {"errors": ["bad version"]}), SecretReadError),
    ],
)
def test_client_errors_are_not_retried(scripted: Any, reply: Reply, error: type) -> None:
    """KV2-AC-066: 403 (token not re-loginable), 404 and 400: exactly one request each."""
    server = scripted(LOOKUP_OK, reply)
    delays: list[float] = []
    with token_store(server.url, retries=5, sleep=delays.append) as store:
        with pytest.raises(error):
            store.read(LOC)
    assert len([s for s in server.seen if "/data/" in s.path]) == 1
    assert delays == []


def test_backoff_schedule_with_seeded_random(scripted: Any) -> None:
    """KV2-AC-063 / KV2-INV-054: waits in [d/2, d], d = 0.25 s doubling, capped."""
    import random

    server = scripted(LOOKUP_OK, Reply(503, {"errors": ["Vault is sealed"]}))
    delays: list[float] = []
    with token_store(
        server.url, retries=12, sleep=delays.append, rng=random.Random(7), backoff_cap=60.0
    ) as store:
        with pytest.raises(TransientError, match="gave up after 13 attempts"):
            store.read(LOC)
    assert len(delays) == 12
    for n, delay in enumerate(delays):
        d = min(60.0, 0.25 * 2**n)
        assert d / 2 <= delay <= d, (n, delay)


def test_bearer_header_reread_and_no_token_header(scripted: Any, tmp_path: Path) -> None:
    """KV2-AC-055 / KV2-AC-199: Authorization: Bearer from the file, re-read when it changes;
    no X-Vault-Token and no login or lookup-self."""
    server = scripted(Reply(200, kv_body()))
    pat = tmp_path / "pat"
    pat.write_text("first-pat\n")
    settings = VaultSettings(address=server.url + "/api/okms-1", num_retries=-1)
    auth = build_authenticator(
        AuthSettings(type="bearer_token_file", config=BearerTokenFileSettings(pat))
    )
    with HvacSecretStore(settings, auth) as store:
        store.read(LOC)
        pat.write_text("second-pat-rotated\n")
        store.read(LOC)
    first, second = server.seen
    assert first.path == second.path == "/api/okms-1/v1/secret/data/app/db"
    assert first.headers["Authorization"] == "Bearer first-pat"
    assert second.headers["Authorization"] == "Bearer second-pat-rotated"
    assert "X-Vault-Token" not in first.headers and "X-Vault-Token" not in second.headers
