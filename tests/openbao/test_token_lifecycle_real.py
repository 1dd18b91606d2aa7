"""The daemon's token lifecycle against tokens the real OpenBao server issues.

``python -m kv2render --config C`` runs as a subprocess (debug logs) with a 1 s
``static_secret_render_interval`` against ``bao server -dev``. The server hands out short-lived
tokens (a few seconds) of every kind it has: renewable up to a max TTL, periodic (renewable
for ever), batch (never renewable); tokens are revoked under the daemon's feet, credential files
rotate, a secret_id is used up. Whatever happens, the daemon logs in again when it must, keeps
the rendered file (never emptied or removed), renders each new version, and never writes the
secret value or a credential to its log (KV2-INV-001, KV2-INV-162, KV2-INV-164).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_helpers import DaemonProcess
from tests.openbao.authkit import (
    SENTINEL_VALUE,
    JwtSigner,
    assert_no_leak,
    assert_secret_file,
    count_lines,
    once_config,
    private_file,
    seed_secret,
    wait_until,
)
from tests.realbao import BaoServer, unique

pytestmark = pytest.mark.openbao

LOGIN_OK = "login ok:"


@pytest.fixture
def start_daemon(workdir: Path) -> Iterator[Callable[[Path], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(config: Path) -> DaemonProcess:
        daemon = DaemonProcess(config, workdir / "logs", log_level="debug")
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


def daemon_config(
    workdir: Path, server: BaoServer, path: str, method: dict[str, Any], **auto_auth: Any
) -> tuple[Path, Path]:
    """A daemon config: 1 s poll, fast login backoff, a status file; (config, destination)."""
    method = {**method, "min_backoff": "500ms", "max_backoff": "1s", **auto_auth}
    extra = {
        "template_config": {"static_secret_render_interval": "1s"},
        "status_file": str(workdir / "status.json"),
    }
    return once_config(workdir, server, path, method, extra=extra)


def new_value(server: BaoServer, path: str, tag: str) -> str:
    value = f"{SENTINEL_VALUE}-{tag}"
    server.kv_put(path, {"password": value, "username": "app"})
    return value


def wait_content(daemon: DaemonProcess, dest: Path, expected: str, timeout: float) -> None:
    def ok() -> bool:
        if daemon.poll() is not None:
            pytest.fail(f"daemon exited ({daemon.poll()})\n{daemon.log()[-3000:]}")
        return dest.exists() and dest.read_bytes() == expected.encode()

    try:
        wait_until(ok, timeout, f"{dest} to hold the expected value")
    except pytest.fail.Exception:
        pytest.fail(f"{dest} never held the expected value\n{daemon.log()[-4000:]}")


def watch_file(daemon: DaemonProcess, dest: Path, seconds: float) -> list[bytes]:
    """Sample the destination every 50 ms for ``seconds``: every content it had (it must
    never vanish, and each sample must be a whole value)."""
    seen: list[bytes] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert daemon.poll() is None, daemon.log()[-3000:]
        data = dest.read_bytes()  # FileNotFoundError here = a lost file
        if not seen or seen[-1] != data:
            seen.append(data)
        time.sleep(0.05)
    return seen


def approle_role(server: BaoServer, policy: str, mount: str, **token: Any) -> tuple[str, str]:
    server.enable_auth("approle", mount)
    name = unique("role")
    server.api("POST", f"auth/{mount}/role/{name}", {"token_policies": [policy], **token})
    role_id = server.api("GET", f"auth/{mount}/role/{name}/role-id")["data"]["role_id"]
    return name, str(role_id)


def secret_id_for(server: BaoServer, mount: str, name: str, **params: Any) -> str:
    out = server.api("POST", f"auth/{mount}/role/{name}/secret-id", params)
    return str(out["data"]["secret_id"])


def approle_method(
    workdir: Path, mount: str, role_id: str, secret_id: str, *, remove: bool = True
) -> dict[str, Any]:
    return {
        "type": "approle",
        "mount_path": f"auth/{mount}",
        "config": {
            "role_id_file_path": str(private_file(workdir / "role_id", role_id)),
            "secret_id_file_path": str(private_file(workdir / "secret_id", secret_id)),
            "remove_secret_id_file_after_reading": remove,
        },
    }


def accessors_of(server: BaoServer, mount: str) -> list[str]:
    """The accessors of the live tokens issued by ``auth/<mount>/login``."""
    keys = server.api("LIST", "auth/token/accessors")["data"]["keys"]
    found = []
    for accessor in keys:
        try:
            data = server.api("POST", "auth/token/lookup-accessor", {"accessor": accessor})["data"]
        except Exception:  # revoked meanwhile by another test
            continue
        if data.get("path") == f"auth/{mount}/login":
            found.append(accessor)
    return found


# --------------------------------------------------------------------------- short TTLs


@pytest.mark.parametrize(
    "kind",
    ["renewable-max-ttl", "max-ttl-equals-ttl", "periodic", "batch"],
)
def test_short_lived_tokens_keep_the_daemon_rendering(
    bao_server: BaoServer,
    workdir: Path,
    start_daemon: Callable[[Path], DaemonProcess],
    kind: str,
) -> None:
    """KV2-AC-169 KV2-AC-171 KV2-AC-305: with tokens of a few seconds from the real server
    the daemon renews what can be renewed (renew-self), logs in again when renewal stops
    extending the token (max TTL reached) or the token cannot be renewed (batch), and keeps
    rendering: the file is never lost, each new version lands, and no read is refused."""
    tokens: dict[str, dict[str, Any]] = {
        "renewable-max-ttl": {"token_ttl": "3s", "token_max_ttl": "7s"},
        "max-ttl-equals-ttl": {"token_ttl": "3s", "token_max_ttl": "3s"},
        "periodic": {"token_period": "4s"},
        "batch": {"token_ttl": "3s", "token_type": "batch"},
    }
    path, policy = seed_secret(bao_server, "life")
    mount = unique("approle")
    name, role_id = approle_role(bao_server, policy, mount, **tokens[kind])
    secret_id = secret_id_for(bao_server, mount, name)
    method = approle_method(workdir, mount, role_id, secret_id)
    config, dest = daemon_config(workdir, bao_server, path, method)
    daemon = start_daemon(config)
    wait_content(daemon, dest, SENTINEL_VALUE, 15)

    seen = watch_file(daemon, dest, 5.0)
    value = new_value(bao_server, path, "v2")
    wait_content(daemon, dest, value, 5)
    seen += watch_file(daemon, dest, 4.0)
    log = daemon.log()
    assert daemon.stop() == 0, log[-3000:]

    assert set(seen) <= {SENTINEL_VALUE.encode(), value.encode()}, "a partial or empty file"
    assert_secret_file(dest, value)
    logins = count_lines(log, LOGIN_OK)
    renewals = count_lines(log, "token renewed")
    if kind == "periodic":  # renewable for ever: one login, renewals only
        assert logins == 1 and renewals >= 2, log[-3000:]
    elif kind == "batch":  # never renewable: a new login before each expiry
        assert renewals == 0 and logins >= 3, log[-3000:]
        assert "cannot be extended; logging in again" in log
    else:  # renewals until the max TTL caps them, then a new login
        assert renewals >= 1 and logins >= 2, log[-3000:]
        assert "no longer extends its lifetime; logging in again" in log
    for bad in ("permission denied", "[ERROR]", "[CRITICAL]", "login failed"):
        assert bad not in log, log[-3000:]
    assert_no_leak(log, role_id, secret_id)


# --------------------------------------------------------------------------- revocation


def test_token_revoked_while_the_daemon_runs(
    bao_server: BaoServer, workdir: Path, start_daemon: Callable[[Path], DaemonProcess]
) -> None:
    """KV2-AC-170 KV2-AC-306: root revokes the daemon's token (revoke-accessor); the next
    read's 403 leads to one fresh login (the secret_id kept in memory after its file was
    removed), and rendering goes on with the file intact throughout."""
    path, policy = seed_secret(bao_server, "life")
    mount = unique("approle")
    name, role_id = approle_role(bao_server, policy, mount, token_ttl="1h")
    secret_id = secret_id_for(bao_server, mount, name)
    method = approle_method(workdir, mount, role_id, secret_id, remove=True)
    config, dest = daemon_config(workdir, bao_server, path, method)
    daemon = start_daemon(config)
    wait_content(daemon, dest, SENTINEL_VALUE, 15)
    assert not (workdir / "secret_id").exists()  # removed after the (successful) login

    accessors = accessors_of(bao_server, mount)
    assert len(accessors) == 1
    bao_server.api("POST", "auth/token/revoke-accessor", {"accessor": accessors[0]})
    wait_until(lambda: count_lines(daemon.log(), LOGIN_OK) >= 2, 10, "a fresh login")
    value = new_value(bao_server, path, "after-revoke")
    wait_content(daemon, dest, value, 5)
    seen = watch_file(daemon, dest, 2.0)
    log = daemon.log()
    assert daemon.stop() == 0

    assert seen == [value.encode()]
    assert count_lines(log, LOGIN_OK) == 2, log[-3000:]
    assert "access denied; logging in again once before giving up" in log
    assert len(accessors_of(bao_server, mount)) == 1  # the new token; the old one is gone
    assert_no_leak(log, role_id, secret_id)


def test_token_file_revoked_then_replaced(
    bao_server: BaoServer, workdir: Path, start_daemon: Callable[[Path], DaemonProcess]
) -> None:
    """KV2-AC-173 KV2-AC-306: a token_file's token is revoked; while the file still holds it,
    reads fail and the file on disk stays as it was; the operator writes a new token into the
    file and the daemon logs in with it and renders the next version."""
    path, policy = seed_secret(bao_server, "life")
    old = bao_server.create_token(policies=[policy], ttl="1h")
    token_file = private_file(workdir / "token", old)
    method = {"type": "token_file", "config": {"token_file_path": str(token_file)}}
    config, dest = daemon_config(workdir, bao_server, path, method)
    daemon = start_daemon(config)
    wait_content(daemon, dest, SENTINEL_VALUE, 15)

    bao_server.revoke_token(old)
    value = new_value(bao_server, path, "v2")
    seen = watch_file(daemon, dest, 3.0)  # denied: nothing to render with, file kept
    assert seen == [SENTINEL_VALUE.encode()]
    assert "permission denied" in daemon.log()

    new = bao_server.create_token(policies=[policy], ttl="1h")
    tmp = token_file.with_name("token.new")
    private_file(tmp, new)
    tmp.replace(token_file)
    wait_content(daemon, dest, value, 10)
    log = daemon.log()
    assert daemon.stop() == 0
    assert_secret_file(dest, value)
    assert_no_leak(log, old, new)


# --------------------------------------------------------------------------- credentials


def test_used_up_secret_id_then_a_new_one(
    bao_server: BaoServer, workdir: Path, start_daemon: Callable[[Path], DaemonProcess]
) -> None:
    """KV2-AC-307 KV2-AC-173: a secret_id with num_uses=1 and a batch token of 3 s: the
    re-login before expiry is refused (exit-free: the daemon backs off and says so in the log
    and the status file), the file stays as it was; a new secret_id file dropped in place
    is used at the next attempt and rendering resumes."""
    path, policy = seed_secret(bao_server, "life")
    mount = unique("approle")
    name, role_id = approle_role(bao_server, policy, mount, token_ttl="3s", token_type="batch")
    first = secret_id_for(bao_server, mount, name, num_uses=1)
    method = approle_method(workdir, mount, role_id, first, remove=True)
    config, dest = daemon_config(workdir, bao_server, path, method)
    daemon = start_daemon(config)
    wait_content(daemon, dest, SENTINEL_VALUE, 15)

    wait_until(lambda: "login failed" in daemon.log(), 10, "the refused re-login")
    value = new_value(bao_server, path, "v2")
    seen = watch_file(daemon, dest, 2.0)
    assert seen == [SENTINEL_VALUE.encode()]
    status = json.loads((workdir / "status.json").read_text())
    assert status["state"] == "login-failed"
    assert "auth/" + mount + "/login" in daemon.log()

    second = secret_id_for(bao_server, mount, name)
    tmp = workdir / "secret_id.new"
    private_file(tmp, second)
    tmp.replace(workdir / "secret_id")
    wait_content(daemon, dest, value, 10)
    log = daemon.log()
    assert daemon.stop() == 0
    assert_secret_file(dest, value)
    assert "invalid role or secret ID" in log
    assert_no_leak(log, role_id, first, second)


def test_rotated_jwt_file_is_used_at_the_next_login(
    bao_server: BaoServer, workdir: Path, start_daemon: Callable[[Path], DaemonProcess]
) -> None:
    """KV2-AC-173 KV2-AC-305: batch tokens of 2 s from jwt auth force a login every ~1.7 s;
    the first JWT expires after 4 s, so only a JWT re-read from its file at each login
    (a rotated projected token) keeps the logins going."""
    signer = JwtSigner()
    mount = bao_server.enable_auth("jwt", unique("jwt"))
    bao_server.api("POST", f"auth/{mount}/config", {"jwt_validation_pubkeys": [signer.public_pem]})
    path, policy = seed_secret(bao_server, "life")
    role = unique("jwtrole")
    bao_server.api(
        "POST",
        f"auth/{mount}/role/{role}",
        {
            "role_type": "jwt",
            "bound_audiences": ["kv2render-test"],
            "user_claim": "sub",
            "token_policies": [policy],
            "token_ttl": "2s",
            "token_type": "batch",
            # OpenBao accepts a JWT past its exp by expiration_leeway (150 s) plus
            # clock_skew_leeway (60 s) by default; 1 s each here (measured), so that only a
            # JWT re-read from the rotated file can log in after the first one's 4 s.
            "expiration_leeway": 1,
            "clock_skew_leeway": 1,
        },
    )
    claims = {"sub": "app", "aud": "kv2render-test"}
    jwts = [signer.sign(claims, lifetime=4)]
    jwt_file = private_file(workdir / "jwt", jwts[0])
    method = {
        "type": "jwt",
        "mount_path": f"auth/{mount}",
        "config": {"role": role, "path": str(jwt_file)},
    }
    config, dest = daemon_config(workdir, bao_server, path, method)
    daemon = start_daemon(config)
    wait_content(daemon, dest, SENTINEL_VALUE, 15)
    for _ in range(3):  # rotate every 2 s, as the kubelet does (far more often, here)
        time.sleep(2.0)
        jwts.append(signer.sign(claims, lifetime=4))
        tmp = workdir / "jwt.new"
        private_file(tmp, jwts[-1])
        tmp.replace(jwt_file)
    value = new_value(bao_server, path, "v2")
    wait_content(daemon, dest, value, 5)
    log = daemon.log()
    assert daemon.stop() == 0
    refused = bao_server.api(
        "POST", f"auth/{mount}/login", {"role": role, "jwt": jwts[0]}, token="", ok=(400,)
    )
    assert "expired" in json.dumps(refused)  # the first JWT alone could not have done it
    assert count_lines(log, LOGIN_OK) >= 4, log[-3000:]
    assert "login failed" not in log and "[ERROR]" not in log, log[-3000:]
    assert_no_leak(log, *jwts)


def test_exit_on_err_stops_the_daemon_on_a_refused_login(
    bao_server: BaoServer, workdir: Path, start_daemon: Callable[[Path], DaemonProcess]
) -> None:
    """KV2-FC-165 KV2-AC-062: with auto_auth.method.exit_on_err the daemon exits 3 on the real
    server's first refusal (a wrong secret_id), as Vault Agent does, naming the login path."""
    path, policy = seed_secret(bao_server, "life")
    mount = unique("approle")
    _name, role_id = approle_role(bao_server, policy, mount)
    wrong = "S3NTINEL-wrong-secret-id-11111111"
    method = approle_method(workdir, mount, role_id, wrong, remove=False)
    config, dest = daemon_config(workdir, bao_server, path, method, exit_on_err=True)
    daemon = start_daemon(config)
    try:
        wait_until(lambda: daemon.poll() is not None, 15, "the daemon to exit")
    except pytest.fail.Exception:
        pytest.fail(f"the daemon did not exit\n{daemon.log()[-4000:]}")
    log = daemon.log()
    assert daemon.poll() == 3, log[-3000:]
    assert f"auth/{mount}/login" in log and "invalid role or secret ID" in log
    assert count_lines(log, "login failed") == 1
    assert not dest.exists()
    assert_no_leak(log, role_id, wrong)
