"""Scenario 4: hostile and odd KV2 responses from a raw-socket server of the test's own.

Each case runs the real CLI (``--once``, real hvac over a socket) against a server that
answers the token lookup faithfully and the secret read with something hostile. Each must
end in a clear KV2 read error (exit 4), keep the last good file, and never show the
token or a value (KV2-AC-286..290, KV2-INV-281..283, KV2-INV-094).

The module's FAULTS-SUMMARY line counts the cases that ran and how many passed (a module
fixture's finalizer; no case has to run last, KV2-AC-456).
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..integration.cli_helpers import CliResult, run_cli, write_config
from .helpers import (
    DaemonProc,
    RawConnection,
    RawServer,
    Seen,
    kv2_body,
    mode_of,
    record_cases,
    wait_until,
)

TOKEN = "hvs.S3NTINEL-token-hostile-0c1d"
VALUE = "S3NTINEL-value-hostile-9e8f"
OLD = b"old-good-password"
TIMEOUT = 2.0
DATA_PATH = "/v1/secret/data/app/db"

_LOOKUP = json.dumps(
    {"data": {"ttl": 0, "renewable": False, "policies": ["root"], "id": "redacted"}}
).encode()


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """KV2-AC-294 KV2-AC-456: the module's FAULTS-SUMMARY line, written after its last case
    from the outcomes of the cases that ran (xfails count as not survived)."""
    yield
    record_cases(request, "hostile-responses")


def _lookup_or(conn: RawConnection, seen: Seen) -> bool:
    """Answer the token lookup (token_env login); True when the request was that."""
    if "lookup-self" in seen.path:
        conn.respond(body=_LOOKUP)
        return True
    return False


def run_against(server: RawServer, workdir: Path) -> tuple[CliResult, float, Path]:
    dest = workdir / "db-password"
    dest.write_bytes(OLD)
    dest.chmod(0o600)
    cfg = write_config(
        workdir,
        {
            "vault": {
                "address": server.url,
                "timeout": f"{TIMEOUT:g}s",
                "retry": {"num_retries": -1},  # -1: no retries (Vault Agent's spelling)
            },
            "template": [
                {"ref": "vault+kv2:///secret/data/app/db#password", "destination": str(dest)}
            ],
        },
    )
    started = time.monotonic()
    result = run_cli(["--config", str(cfg), "--once"], {"VAULT_TOKEN": TOKEN})
    return result, time.monotonic() - started, dest


def assert_refused(
    result: CliResult,
    dest: Path,
    words: tuple[str, ...] = (),
    codes: tuple[int, ...] = (4,),
) -> None:
    assert result.code in codes, result.text
    assert dest.read_bytes() == OLD and mode_of(dest) == 0o600
    assert TOKEN not in result.text and VALUE not in result.text
    assert "Traceback" not in result.text, result.text
    for word in words:
        assert word in result.text.lower(), result.text


def serve(body: bytes | None = None, **respond: Any) -> Iterator[RawServer]:
    def handler(conn: RawConnection, seen: Seen) -> None:
        if not _lookup_or(conn, seen):
            conn.respond(body=body or b"", **respond)

    server = RawServer(handler).start()
    try:
        yield server
    finally:
        server.stop()


def _nested(depth: int) -> bytes:
    inner = b"[" * depth + b"]" * depth
    return (
        b'{"data": {"data": {"password": "' + VALUE.encode() + b'", "x": ' + inner + b"},"
        b' "metadata": {"version": 1}}}'
    )


def _gzip_bomb(inflated: int) -> bytes:
    """A gzip body that inflates to ``inflated`` bytes of KV2 JSON (built in chunks)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    head = b'{"data": {"data": {"password": "' + VALUE.encode() + b'", "pad": "'
    out = [comp.compress(head)]
    chunk = b"0" * (1 << 20)
    for _ in range(inflated >> 20):
        out.append(comp.compress(chunk))
    out.append(comp.compress(b'"}, "metadata": {"version": 1}}}'))
    out.append(comp.flush())
    return b"".join(out)


# -- bodies ---------------------------------------------------------------------------------


def test_10mb_body_is_refused(workdir: Path) -> None:
    """KV2-AC-286 KV2-INV-282: a 10 MB KV2 body is a BadResponseError; the file is kept."""
    body = kv2_body({"password": VALUE, "pad": "x" * (10 << 20)})
    gen = serve(body)
    server = next(gen)
    try:
        result, _, dest = run_against(server, workdir)
    finally:
        gen.close()
    assert_refused(result, dest, ("mib",))


def test_gzip_bomb_is_refused(workdir: Path) -> None:
    """KV2-AC-286 KV2-INV-282: 64 KB of gzip inflating to 64 MB is refused like a 64 MB body."""
    gen = serve(_gzip_bomb(64 << 20), headers={"Content-Encoding": "gzip"})
    server = next(gen)
    try:
        result, _, dest = run_against(server, workdir)
    finally:
        gen.close()
    assert_refused(result, dest, ("mib",))


@pytest.mark.parametrize(
    "depth",
    [
        65,
        100_000,  # an internal RecursionError (exit 1) until vault.py caught it (4d61bf7)
    ],
)
def test_deeply_nested_json_is_refused(workdir: Path, depth: int) -> None:
    """KV2-AC-286 KV2-INV-282: JSON nested past 64 levels is a BadResponseError."""
    gen = serve(_nested(depth))
    server = next(gen)
    try:
        result, _, dest = run_against(server, workdir)
    finally:
        gen.close()
    assert_refused(result, dest, ("json",))


@pytest.mark.parametrize(
    ("name", "body"),
    [
        (
            "invalid-utf8",
            b'{"data": {"data": {"password": "\xff\xfe\xfd"}, "metadata": {"version": 1}}}',
        ),
        # A \ud800 escape decodes to a lone surrogate UTF-8 cannot write: it crashed the
        # runner (internal error, exit 1); now the store refuses it (4d61bf7) and, behind it,
        # render/prepare.py (_encode) makes any such output a RenderError.
        (
            "lone-surrogate",
            b'{"data": {"data": {"password": "\\ud800"}, "metadata": {"version": 1}}}',
        ),
        ("data-data-list", kv2_body([VALUE])),
        ("data-data-string", kv2_body(VALUE)),
        ("data-data-number", kv2_body(5)),
        ("data-data-null", kv2_body(None)),
        ("data-list", json.dumps({"data": [VALUE]}).encode()),
        ("top-level-list", json.dumps([{"data": {"data": {"password": VALUE}}}]).encode()),
        ("no-metadata", json.dumps({"data": {"data": {"password": VALUE}}}).encode()),
        ("version-string", kv2_body({"password": VALUE}, version="7")),  # type: ignore[arg-type]
        ("version-bool", kv2_body({"password": VALUE}, version=True)),
        ("empty-body", b""),
        ("not-json", b"<html>" + VALUE.encode() + b"</html>"),
        # NaN is not JSON: it reached the template (exit 5) until vault.py refused it (4d61bf7).
        ("nan", b'{"data": {"data": {"password": NaN}, "metadata": {"version": 1}}}'),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_odd_bodies_are_refused(workdir: Path, name: str, body: bytes) -> None:
    """KV2-AC-287 KV2-INV-061: invalid UTF-8, a lone surrogate, NaN, non-object data and other
    odd shapes: exit 4, file kept."""
    gen = serve(body)
    server = next(gen)
    try:
        result, _, dest = run_against(server, workdir)
    finally:
        gen.close()
    assert_refused(result, dest)


def test_truncated_body_is_transient(workdir: Path) -> None:
    """KV2-AC-287: a body shorter than its Content-Length is a transient read error."""

    def handler(conn: RawConnection, seen: Seen) -> None:
        if not _lookup_or(conn, seen):
            conn.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
                b"\r\n" + kv2_body({"password": VALUE})[:40]
            )

    server = RawServer(handler).start()
    try:
        result, _, dest = run_against(server, workdir)
    finally:
        server.stop()
    assert_refused(result, dest)


# -- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status",
    ["301 Moved Permanently", "302 Found", "307 Temporary Redirect", "308 Permanent Redirect"],
)
@pytest.mark.parametrize("target_host", ["other-host", "same-host"])
def test_redirect_is_not_followed(workdir: Path, status: str, target_host: str) -> None:
    """KV2-AC-289 KV2-INV-281: no redirect is followed; the other host never sees the token."""
    # 127.0.0.2 is another address of the loopback interface: another host to the client.
    collector = RawServer(
        lambda c, s: c.respond(body=kv2_body({"password": VALUE})), host="127.0.0.2"
    ).start()

    def handler(conn: RawConnection, seen: Seen) -> None:
        if _lookup_or(conn, seen):
            return
        if target_host == "other-host":
            location = f"{collector.url}{DATA_PATH}"
        else:
            location = "/v1/secret/data/app/elsewhere"
        conn.respond(status, b"", content_type=None, headers={"Location": location})

    server = RawServer(handler).start()
    try:
        result, _, dest = run_against(server, workdir)
    finally:
        server.stop()
        collector.stop()
    tokens_elsewhere = [s for s in collector.seen if s.headers.get("x-vault-token")]
    assert tokens_elsewhere == [] and collector.seen == []
    followed = [s for s in server.seen if "elsewhere" in s.path]
    assert followed == []
    assert_refused(result, dest, ("redirect",))


# -- slow servers ---------------------------------------------------------------------------


def _trickle(conn: RawConnection, data: bytes, every: float, total: float) -> None:
    """Send ``data`` a byte at a time, one every ``every`` seconds, for at most ``total``."""
    end = time.monotonic() + total
    for i in range(len(data)):
        if time.monotonic() > end:
            return
        conn.send(data[i : i + 1])
        time.sleep(every)


@pytest.mark.parametrize("part", ["headers", "body"])
def test_slow_loris_trips_the_deadline(workdir: Path, part: str) -> None:
    """KV2-AC-290 KV2-INV-283: a trickling server is cut off at vault.timeout (transient)."""
    body = kv2_body({"password": VALUE})
    head = (
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        "\r\nX-Pad: " + "p" * 64 + "\r\n\r\n"
    ).encode()

    def handler(conn: RawConnection, seen: Seen) -> None:
        if _lookup_or(conn, seen):
            return
        if part == "headers":
            _trickle(conn, head + body, 0.25, TIMEOUT + 2)
        else:
            conn.send(head)
            _trickle(conn, body, 0.25, TIMEOUT + 2)

    server = RawServer(handler).start()
    try:
        result, elapsed, dest = run_against(server, workdir)
    finally:
        server.stop()
    assert elapsed < TIMEOUT + 1.5, f"the pass took {elapsed:.1f}s with vault.timeout {TIMEOUT}s"
    assert_refused(result, dest, (f"{TIMEOUT:g}s",))


def test_silent_server_trips_the_timeout(workdir: Path) -> None:
    """KV2-AC-290: a server that accepts and says nothing is cut off at vault.timeout."""

    def handler(conn: RawConnection, seen: Seen) -> None:
        if not _lookup_or(conn, seen):
            time.sleep(TIMEOUT + 0.5)

    server = RawServer(handler).start()
    try:
        result, elapsed, dest = run_against(server, workdir)
    finally:
        server.stop()
    assert elapsed < TIMEOUT + 1.5
    assert_refused(result, dest, (f"{TIMEOUT:g}s",))


# -- a version that goes backwards (needs a second read: the daemon) ----------------------


def test_version_going_backwards_is_refused_by_the_daemon(workdir: Path) -> None:
    """KV2-AC-288 KV2-FC-280: latest v5 then v3: refused, v5's file kept, the daemon goes on."""
    reads: list[int] = []

    def handler(conn: RawConnection, seen: Seen) -> None:
        if _lookup_or(conn, seen):
            return
        reads.append(1)
        if len(reads) == 1:
            conn.respond(body=kv2_body({"password": "value-of-v5"}, version=5))
        elif len(reads) < 6:
            conn.respond(body=kv2_body({"password": "value-of-v3"}, version=3))
        else:
            conn.respond(body=kv2_body({"password": "value-of-v6"}, version=6))

    server = RawServer(handler).start()
    dest = workdir / "out" / "db-password"
    dest.parent.mkdir()
    cfg = write_config(
        workdir,
        {
            "vault": {"address": server.url, "timeout": "2s"},
            "template_config": {"static_secret_render_interval": "200ms"},
            "template": [
                {"ref": "vault+kv2:///secret/data/app/db#password", "destination": str(dest)}
            ],
        },
    )
    daemon = DaemonProc(cfg, workdir / "logs", env={"VAULT_TOKEN": TOKEN})
    try:
        wait_until(lambda: "version 3 after version 5" in daemon.log(), 15, "the refusal")
        assert dest.read_bytes() == b"value-of-v5"
        # A later, higher version renders again: the refusal is not sticky.
        wait_until(lambda: dest.read_bytes() == b"value-of-v6", 15, "version 6 rendered")
        log = daemon.log()
    finally:
        daemon.stop()
        server.stop()
    assert b"value-of-v3" not in dest.read_bytes()
    assert "value-of-v3" not in log and TOKEN not in log
