"""The daemon survives: outages, token expiry and revocation, signals, service managers.

Real CLI subprocess -> real hvac -> dev server over a socket (issue 5 "Done when").
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kv2render.devserver import DevServer
from tests.daemon.conftest import (
    INTERVAL,
    SENTINEL_SECRET,
    Daemon,
    logins,
    make_config,
    read_text,
    reads,
    setup_approle,
    wait_for,
)
from tests.integration.cli_helpers import REPO


def _pw_config(srv: DevServer, workdir: Path, **kw: Any) -> dict[str, Any]:
    return make_config(
        srv,
        workdir,
        [
            {
                "ref": "vault+kv2:///secret/app/db#password",
                "destination": str(workdir / "out" / "pw"),
                "create_dest_dirs": True,
            }
        ],
        **kw,
    )


def _started(
    srv: DevServer, workdir: Path, start_daemon: Callable[..., Daemon], **kw: Any
) -> tuple[Daemon, Path]:
    srv.put("app/db", {"password": "one"})
    out = workdir / "out" / "pw"
    daemon = start_daemon(_pw_config(srv, workdir, **kw))
    wait_for(lambda: read_text(out) == "one", 15, "first render", proc=daemon)
    return daemon, out


def _status(workdir: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(read_text(workdir / "status.json") or "{}")
    return doc


def _alive_for(daemon: Daemon, seconds: float) -> None:
    """Watch the process for ``seconds`` (the outage itself); it must not exit."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert daemon.poll() is None, daemon.log()[-3000:]
        time.sleep(0.1)


# -- outages ------------------------------------------------------------------------------------


def test_server_stopped_and_restarted(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-166, KV2-INV-162: connection refused -> process and file stay; rendering resumes."""
    daemon, out = _started(dev_server, workdir, start_daemon)
    dev_server.stop()
    _alive_for(daemon, 2.5)
    wait_for(lambda: "connection" in daemon.log().lower(), 5, "outage logged", proc=daemon)
    assert read_text(out) == "one"
    dev_server.put("app/db", {"password": "two"})  # written while the socket is closed
    dev_server.restart()
    wait_for(lambda: read_text(out) == "two", 10, "recovery after restart", proc=daemon)
    assert daemon.terminate()[0] == 0


@pytest.mark.parametrize(
    ("fault", "expect"),
    [({"sealed": True}, "503"), ({"status": 429, "retry_after": 1}, "429")],
    ids=["503-sealed", "429-retry-after"],
)
def test_503_and_429_back_off_and_recover(
    dev_server: DevServer,
    workdir: Path,
    start_daemon: Callable[..., Daemon],
    fault: dict[str, Any],
    expect: str,
) -> None:
    """KV2-AC-167, KV2-INV-162: 503 sealed, 429 + Retry-After: alive, file intact, recovery."""
    daemon, out = _started(dev_server, workdir, start_daemon)
    for name, value in fault.items():
        setattr(dev_server.faults, name, value)
    wait_for(lambda: expect in daemon.log(), 5, f"{expect} seen", proc=daemon)
    _alive_for(daemon, 1.5)
    assert read_text(out) == "one"
    wait_for(
        lambda: expect in (_status(workdir)["templates"][0]["last_error"] or ""),
        5,
        "error in the status file",
        proc=daemon,
    )
    for name in fault:
        setattr(dev_server.faults, name, type(dev_server.faults)().__dict__[name])
    dev_server.put("app/db", {"password": "two"})
    wait_for(lambda: read_text(out) == "two", 10, "recovery", proc=daemon)
    assert daemon.terminate()[0] == 0


def test_exit_on_retry_failure_exits_nonzero(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-168, KV2-FC-161: exit_on_retry_failure -> non-zero exit once retries run out."""
    daemon, out = _started(
        dev_server,
        workdir,
        start_daemon,
        num_retries=1,
    )
    daemon.close()  # replace it with an exit_on_retry_failure one
    tree = _pw_config(dev_server, workdir, num_retries=1)
    tree["template_config"]["exit_on_retry_failure"] = True
    daemon = start_daemon(tree)
    wait_for(lambda: "ready" in daemon.log(), 15, "ready", proc=daemon)
    dev_server.faults.status = 500
    try:
        code = daemon.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("daemon did not exit after retries ran out\n" + daemon.log()[-3000:])
    assert code == 4
    assert read_text(out) == "one"


# -- tokens -------------------------------------------------------------------------------------


def test_short_ttl_non_renewable_token_relogs_in(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-169, KV2-INV-164: a non-renewable 3 s token is replaced before it expires."""
    auth = setup_approle(dev_server, workdir, token_ttl=3, renewable=False)
    daemon, out = _started(dev_server, workdir, start_daemon, auto_auth=auth)
    wait_for(lambda: logins(dev_server) >= 3, 10, "two re-logins", proc=daemon)
    assert dev_server.request_count("POST", "/v1/auth/token/renew-self") == 0
    dev_server.put("app/db", {"password": "two"})
    wait_for(lambda: read_text(out) == "two", 5, "render with the new token", proc=daemon)
    denied = [r for r in dev_server.requests if r[1].startswith("/v1/secret/") and r[2] == 403]
    assert denied == []  # re-logged in before expiry, not after a failure
    assert daemon.terminate()[0] == 0


def test_revoked_token_relogs_in_and_rendering_continues(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-170, KV2-INV-164: a revoked token -> 403 -> one fresh login -> rendering continues."""
    daemon, out = _started(dev_server, workdir, start_daemon)
    assert logins(dev_server) == 1
    with dev_server.state.lock:
        issued = [t for t, tok in dev_server.state.tokens.tokens.items() if "approle" in tok.path]
    assert issued
    for token in issued:
        dev_server.revoke_token(token)
    dev_server.put("app/db", {"password": "two"})
    wait_for(
        lambda: read_text(out) == "two", INTERVAL * 1.1 + 3, "render after revocation", proc=daemon
    )
    assert logins(dev_server) == 2
    assert daemon.terminate()[0] == 0


def test_renewable_token_is_renewed_not_replaced(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-171, KV2-INV-164: a renewable token is renewed at ~2/3 TTL; no new login."""
    auth = setup_approle(dev_server, workdir, token_ttl=3, renewable=True)
    daemon, out = _started(dev_server, workdir, start_daemon, auto_auth=auth)
    renewals = lambda: dev_server.request_count("POST", "/v1/auth/token/renew-self")  # noqa: E731
    wait_for(lambda: renewals() >= 2, 8, "two renewals", proc=daemon)
    assert logins(dev_server) == 1
    dev_server.put("app/db", {"password": "two"})
    wait_for(lambda: read_text(out) == "two", 5, "render with the renewed token", proc=daemon)
    assert daemon.terminate()[0] == 0


# -- signals, systemd, status -------------------------------------------------------------------


def test_sigterm_exits_zero_within_five_seconds_even_while_a_request_hangs(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-176, KV2-NFR-160: SIGTERM -> exit 0 in < 5 s, also while the server never answers."""
    daemon, _ = _started(dev_server, workdir, start_daemon)
    before = reads(dev_server, "app/db")
    dev_server.faults.hang = True
    # A hung request is never counted; the poll after ``before`` must be in flight once a
    # full jittered interval has passed with no new count.
    _alive_for(daemon, INTERVAL * 1.1 + 0.5)
    assert reads(dev_server, "app/db") == before
    code, took = daemon.terminate(timeout=5.0)
    assert code == 0 and took < 5.0


def test_sigint_while_the_server_is_down_exits_zero(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-176, KV2-NFR-160: SIGINT during an outage (backoff waits) exits 0 within 5 s."""
    daemon, _ = _started(dev_server, workdir, start_daemon)
    dev_server.stop()
    wait_for(lambda: "connection" in daemon.log().lower(), 5, "outage noticed", proc=daemon)
    started = time.monotonic()
    daemon.signal(signal.SIGINT)
    assert daemon.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 5.0


def test_sighup_reloads(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-175: SIGHUP reloads the config."""
    daemon, _ = _started(dev_server, workdir, start_daemon)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "config reloaded" in daemon.log(), 5, "reload logged", proc=daemon)
    assert daemon.poll() is None
    assert daemon.terminate()[0] == 0


def test_systemd_notify_ready_watchdog_and_stopping(
    dev_server: DevServer,
    workdir: Path,
    start_daemon: Callable[..., Daemon],
    notify_socket: tuple[str, socket.socket],
) -> None:
    """KV2-AC-177: READY=1 after the first complete render, STATUS=, WATCHDOG=1, STOPPING=1."""
    path, sock = notify_socket
    dev_server.put("app/db", {"password": "one"})
    out = workdir / "out" / "pw"
    daemon = start_daemon(
        _pw_config(dev_server, workdir), env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    )
    messages: list[str] = []

    def received(token: str, count: int = 1) -> bool:
        try:
            messages.extend(sock.recv(4096).decode().splitlines())
        except TimeoutError:
            pass
        return messages.count(token) >= count

    wait_for(lambda: received("READY=1"), 15, "READY=1", proc=daemon)
    assert read_text(out) == "one"  # READY only once the file is there
    assert any(m.startswith("STATUS=") for m in messages)
    messages.clear()
    wait_for(lambda: received("WATCHDOG=1", 2), 3, "watchdog pings", proc=daemon)
    daemon.signal(signal.SIGTERM)
    wait_for(lambda: received("STOPPING=1"), 5, "STOPPING=1")
    assert daemon.proc.wait(timeout=5) == 0


def test_status_file_and_status_command(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """KV2-AC-178, KV2-AC-181, KV2-INV-166: the status file holds metadata only;
    `kv2render status` prints it."""
    dev_server.put("app/db", {"password": SENTINEL_SECRET})
    out = workdir / "out" / "pw"
    daemon = start_daemon(_pw_config(dev_server, workdir))
    wait_for(lambda: read_text(out) == SENTINEL_SECRET, 15, "first render", proc=daemon)
    status_path = workdir / "status.json"
    wait_for(
        lambda: '"ready": true' in (read_text(status_path) or ""), 5, "status ready", proc=daemon
    )
    raw = read_text(status_path) or ""
    assert SENTINEL_SECRET not in raw
    doc = json.loads(raw)
    entry = doc["templates"][0]
    assert entry["destination"] == str(out)
    assert entry["secrets"][0]["path"] == "app/db" and entry["secrets"][0]["version"] == 1
    assert entry["last_error"] is None and entry["last_render"]
    assert status_path.stat().st_mode & 0o777 == 0o600
    shown = subprocess.run(
        [sys.executable, "-m", "kv2render", "status", "--config", str(daemon.config)],
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert str(out) in shown.stdout and SENTINEL_SECRET not in shown.stdout
    assert daemon.terminate()[0] == 0
    assert SENTINEL_SECRET not in daemon.log()


def test_second_instance_warns_about_the_first(
    dev_server: DevServer, workdir: Path, start_daemon: Callable[..., Daemon]
) -> None:
    """Issue 10 item 7 (no rule yet): a second instance warns, using the lock file."""
    first, _ = _started(dev_server, workdir, start_daemon)
    second = Daemon(first.config, workdir)
    try:
        wait_for(lambda: "another kv2render" in second.log(), 10, "warning", proc=second)
        assert f"pid {first.proc.pid}" in second.log()
    finally:
        second.close()
    assert first.terminate()[0] == 0
