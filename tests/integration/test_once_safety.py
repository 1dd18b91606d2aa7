"""Operator safety of credentials and of --once (issue 14 items 1, 3 and 6).

* text from the HTTP stack is scrubbed before it reaches a message (KV2-INV-350);
* the AppRole secret_id file outlives a failed login or a failed --once run (KV2-INV-352),
  and a removal the filesystem refuses is warned about once (KV2-INV-353);
* --once waits for the server for a bounded, documented time (KV2-INV-354, KV2-INV-355).

Real parts only: the embedded dev server, a closed loopback port (bound to port 0, then
closed) for an unreachable server, and a listening socket that never answers for a silent one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kv2render.config import AuthSettings, Config, VaultSettings
from kv2render.config.auth import TokenEnvSettings
from kv2render.config.logins import AppRoleSettings
from kv2render.devserver import DevServer
from kv2render.errors import AuthError, TransientError
from kv2render.redact import scrub_http
from kv2render.refs import SecretLocation
from kv2render.store.auth import build_authenticator
from kv2render.store.client import HvacSecretStore

from .cli_helpers import cli_env, run_cli, write_config

PW = "vault+kv2:///secret/data/app/db#password"
ROLE_ID = "role-id-5f2c"
SECRET_ID = "secret-id-SENTINEL-7d41e0"


def closed_port() -> int:
    """A loopback port nothing listens on: bound to port 0, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts TCP connections (the kernel's backlog) and never answers a byte."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


# -------------------------------------------------------------------------- scrubbing


def test_scrub_http_on_the_http_stacks_own_texts() -> None:
    """KV2-AC-353 KV2-INV-350: the real texts of requests' InvalidHeader and http.client's
    header check quote the refused value; scrubbed, they are one line without it."""
    import http.client

    import requests

    value = "hvs.SENTINEL-4f1e\nX-Evil: 1"
    with pytest.raises(requests.exceptions.InvalidHeader) as invalid:
        requests.Request("GET", "http://x/", headers={"X-Vault-Token": value}).prepare()
    conn = http.client.HTTPConnection("127.0.0.1", 9)
    conn.putrequest("GET", "/")
    with pytest.raises(ValueError) as refused:
        conn.putheader("Authorization", "Bearer SENTINEL-9a0b\r\nX-Evil: 1")
    texts = [
        str(invalid.value),
        str(refused.value),
        "sent X-Vault-Token: hvs.SENTINEL-77 and Authorization: Bearer SENTINEL-88 then",
        "a server text\nwith a second line and hvs.SENTINEL-4f1e\nX-Evil: 1 echoed",
    ]
    assert "SENTINEL" in texts[0] and "SENTINEL" in texts[1]  # the texts really quote it
    for text in texts:
        clean = scrub_http(text, [value])
        assert "SENTINEL" not in clean, clean
        assert "\n" not in clean and "\r" not in clean, clean
    assert "header value" in scrub_http(texts[0])  # the reason itself is kept


def test_a_refused_header_is_an_auth_error_not_retried(dev_server: DevServer) -> None:
    """KV2-AC-353 KV2-INV-351: a header the HTTP layer refuses (here a namespace holding a line
    break, which no credential check covers) is an AuthError (exit 3), sent to no server,
    retried never, its text free of the value."""
    settings = VaultSettings(
        address=dev_server.url, namespace="team-SENTINEL\nX-Evil: 1", num_retries=12
    )
    auth = build_authenticator(AuthSettings(type="token_env", config=TokenEnvSettings("hvs.ok")))
    started = time.monotonic()
    with HvacSecretStore(settings, auth) as store, pytest.raises(AuthError) as err:
        store.login()
    assert time.monotonic() - started < 2
    assert err.value.exit_code == 3
    assert "SENTINEL" not in str(err.value) and "\n" not in str(err.value)
    assert dev_server.request_count() == 0


@pytest.mark.parametrize(
    ("text", "header", "words"),
    [
        ("hvs.SENTINEL\nX-Evil: 1", True, "a line break"),
        ("hvs.SENTINEL\r", True, "a line break"),
        ("hvs.SENTINEL\0", True, "a NUL character"),
        ("hvs.SENTINEL\x1b[0m", True, "a control character"),
        ("hvs.SENTINEL\x85", True, "a control character"),
        ("hvs.SENTINEL other", True, "a space or tab"),
        ("Bearer hvs.SENTINEL", True, "kv2render adds 'Bearer '"),
        ("hvs.SENTINEL\tx", True, "a space or tab"),
        ("hvs.SENTINEL\u00e9", True, "outside printable ASCII"),
        ("hvs.SENTINEL\udcff", True, "outside printable ASCII"),  # undecodable env bytes
        ("\ufeffSENTINEL", False, "a byte-order mark"),
        ("SENTINEL\tx", False, "a control character"),
        ("SENTINEL\udcff", False, "not UTF-8"),
    ],
)
def test_credential_check_names_the_problem_never_the_value(
    text: str, header: bool, words: str
) -> None:
    """KV2-AC-350 KV2-AC-351 KV2-INV-351 KV2-FC-350: each kind of bad character gets its own
    words, exit 3, and the message holds no part of the value."""
    from kv2render.store.credentials import check_credential

    with pytest.raises(AuthError) as err:
        check_credential(text, source="token file /x", where="here", header=header)
    assert words in str(err.value) and "token file /x" in str(err.value)
    assert "SENTINEL" not in str(err.value) and err.value.exit_code == 3
    # What a header or a body may carry is accepted as it is.
    assert check_credential("hvs.AbC-_.~+/=", source="s", where="w", header=True)
    assert check_credential("r\u00f4le-\u00e9t\u00e9 id", source="s", where="w", header=False)


# -------------------------------------------------------------------------- AppRole secret_id


@pytest.fixture
def approle(dev_server: DevServer, workdir: Path) -> dict[str, Any]:
    dev_server.put("app/db", {"password": "pw-1"})
    dev_server.add_policy("app", {"secret/data/app/*": ["read"]})
    dev_server.add_approle("web", ROLE_ID, SECRET_ID, ["app"], token_ttl=600)
    role = workdir / "creds" / "role_id"
    role.parent.mkdir(mode=0o700)
    role.write_text(ROLE_ID + "\n")
    sid = workdir / "creds" / "secret_id"
    sid.write_text(SECRET_ID + "\n")
    return {"type": "approle", "config": {"role_id_file_path": str(role),
                                          "secret_id_file_path": str(sid)}}  # fmt: skip


def _once(workdir: Path, address: str, method: dict[str, Any], dest: Path) -> Any:
    tree = {
        "vault": {"address": address},
        "auto_auth": {"method": method},
        "template": [{"ref": PW, "destination": str(dest)}],
    }
    cfg = write_config(workdir, tree)
    return run_cli(["--config", str(cfg), "--once", "--timeout", "2s"])


def test_secret_id_file_outlives_failed_once_runs(
    dev_server: DevServer, workdir: Path, approle: dict[str, Any]
) -> None:
    """KV2-AC-354 KV2-INV-352 KV2-FC-351: unreachable server (4) and refused login (3) keep the
    secret_id file; a login followed by a failed write (6) keeps it too, and the same run once
    fixed exits 0 and removes it; the run after that exits 3 saying why the file is gone."""
    sid = Path(approle["config"]["secret_id_file_path"])
    dest = workdir / "out" / "pw"  # its folder does not exist yet: the write fails

    unreachable = _once(workdir, f"http://127.0.0.1:{closed_port()}", approle, dest)
    assert unreachable.code == 4, unreachable.err[-1500:]
    assert sid.read_text().strip() == SECRET_ID

    wrong = {**approle, "config": {**approle["config"]}}
    bad = workdir / "creds" / "bad_secret_id"
    bad.write_text("not-the-secret-id")
    wrong["config"]["secret_id_file_path"] = str(bad)
    refused = _once(workdir, dev_server.url, wrong, dest)
    assert refused.code == 3, refused.err[-1500:]
    assert bad.exists()

    write_failed = _once(workdir, dev_server.url, approle, dest)
    assert write_failed.code == 6, write_failed.err[-1500:]
    assert "login ok" in write_failed.err
    assert sid.read_text().strip() == SECRET_ID, "removed although the run failed"

    dest.parent.mkdir(mode=0o700)
    fixed = _once(workdir, dev_server.url, approle, dest)
    assert fixed.code == 0, fixed.err[-1500:]
    assert dest.read_text() == "pw-1"
    assert not sid.exists(), "kept although the run succeeded"
    assert f"removed secret_id file {sid}" in fixed.err

    again = _once(workdir, dev_server.url, approle, dest)
    assert again.code == 3, again.err[-1500:]
    assert "remove_secret_id_file_after_reading" in again.err
    assert "provide a new secret_id" in again.err
    for result in (unreachable, refused, write_failed, fixed, again):
        assert SECRET_ID not in result.text


@contextlib.contextmanager
def _unremovable(path: Path) -> Iterator[None]:
    """Make ``path`` impossible to unlink: the immutable flag as root, a read-only folder
    otherwise (root ignores folder permissions)."""
    if os.geteuid() == 0:
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(path)], check=False).returncode:
            pytest.skip("chattr +i is not available here")
        try:
            yield
        finally:
            subprocess.run([chattr, "-i", str(path)], check=False)
    else:
        path.parent.chmod(0o500)
        try:
            yield
        finally:
            path.parent.chmod(0o700)


def test_daemon_store_removes_after_login_and_warns_once(
    dev_server: DevServer, approle: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-355 KV2-INV-352 KV2-INV-353: in daemon mode the file goes right after the first
    successful login; when the filesystem refuses the removal, three logins succeed and
    exactly one warning says so."""
    caplog.set_level(logging.DEBUG, logger="kv2render")
    config = {k: Path(v) for k, v in approle["config"].items()}
    sid = config["secret_id_file_path"]
    settings = VaultSettings(address=dev_server.url, num_retries=-1)
    auth = AuthSettings(type="approle", mount_path="auth/approle", config=AppRoleSettings(**config))
    with HvacSecretStore(settings, build_authenticator(auth)) as store:
        store.login()
        assert not sid.exists()

    sid.write_text(SECRET_ID)
    with HvacSecretStore(settings, build_authenticator(auth)) as store:
        with _unremovable(sid):
            for _ in range(3):
                store.login()
        assert store.read(SecretLocation("secret", "app/db")).data["password"] == "pw-1"
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "remove" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert str(sid) in warnings[0].getMessage()
    assert dev_server.request_count("POST", "/v1/auth/approle/login") == 4
    assert SECRET_ID not in caplog.text


# -------------------------------------------------------------------------- the --once deadline


def _unreachable_config(workdir: Path, **top: Any) -> Path:
    tree = {
        "vault": {"address": f"http://127.0.0.1:{closed_port()}"},
        "template": [{"ref": PW, "destination": str(workdir / "pw")}],
        **top,
    }
    return write_config(workdir, tree)


@pytest.mark.parametrize("where", ["flag", "file"])
def test_once_deadline_against_a_closed_port(workdir: Path, where: str) -> None:
    """KV2-AC-356 KV2-INV-354 KV2-INV-355 KV2-FC-354: --timeout 3s (or once_timeout: 3s) ends
    --once against a closed port in under 5 s with exit 4; every retry line says how long is
    left; the last error names the deadline and the fix."""
    if where == "flag":
        cfg = _unreachable_config(workdir)
        argv = ["--config", str(cfg), "--once", "--timeout", "3s"]
    else:
        cfg = _unreachable_config(workdir, once_timeout="3s")
        argv = ["--config", str(cfg), "--once"]
    started = time.monotonic()
    result = run_cli(argv, {"VAULT_TOKEN": "hvs.ok"})
    elapsed = time.monotonic() - started
    assert result.code == 4, result.err[-2000:]
    assert 2.0 < elapsed < 5.0, elapsed
    retries = [line for line in result.err.splitlines() if "; retry " in line]
    assert len(retries) >= 3, result.err[-2000:]
    assert all("s left of --timeout 3s" in line for line in retries), retries
    assert "Connection refused" in retries[0]
    assert "--timeout 3s ran out after" in result.err
    assert "raise --timeout (once_timeout)" in result.err


def test_default_deadline_is_60s_on_a_scripted_clock() -> None:
    """KV2-AC-357 KV2-INV-354: with the default once_timeout (60 s) and default retries, the
    store gives up against a closed port by the deadline, its last attempt within 2 s of it."""
    now = [1000.0]
    attempts: list[float] = []

    def sleep(seconds: float) -> None:
        now[0] += seconds

    settings = VaultSettings(address=f"http://127.0.0.1:{closed_port()}")
    auth = build_authenticator(AuthSettings(type="token_env", config=TokenEnvSettings("hvs.ok")))
    store = HvacSecretStore(settings, auth, clock=lambda: now[0], sleep=sleep, rng=random.Random(7))
    original = store.send

    def counting(*args: Any, **kwargs: Any) -> Any:
        attempts.append(now[0] - 1000.0)
        return original(*args, **kwargs)

    store.send = counting  # type: ignore[method-assign]
    assert Config.once_timeout == 60.0
    store.set_deadline(Config.once_timeout, "--timeout 60s")
    with store, pytest.raises(TransientError) as err:
        store.login()
    assert "--timeout 60s ran out" in str(err.value)
    assert attempts[-1] <= 60.0 and attempts[-1] >= 58.0, attempts
    assert now[0] - 1000.0 <= 60.0
    assert len(attempts) <= 1 + settings.num_retries


def test_a_server_still_starting_is_waited_for(workdir: Path) -> None:
    """KV2-AC-357 KV2-INV-354: the server starts listening 2 s after --once --timeout 20s
    began; --once waits for it and renders (exit 0)."""
    port = closed_port()
    dest = workdir / "pw"
    tree = {
        "vault": {"address": f"http://127.0.0.1:{port}"},
        "template": [{"ref": PW, "destination": str(dest)}],
    }
    cfg = write_config(workdir, tree)
    proc = subprocess.Popen(
        [sys.executable, "-m", "kv2render", "--config", str(cfg), "--once", "--timeout", "20s"],
        env=cli_env({"VAULT_TOKEN": "root-token"}),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)
        with DevServer(port=port, root_token="root-token") as srv:
            srv.put("app/db", {"password": "late"})
            _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "left of --timeout 20s" in err
    assert dest.read_text() == "late"


def test_a_silent_server_cannot_outlast_the_deadline(workdir: Path, silent_server: str) -> None:
    """KV2-AC-358 KV2-INV-354: vault.timeout 30s, --timeout 2s, a server that never answers:
    exit 4 in under 4 s (each exchange is cut to the time left)."""
    tree = {
        "vault": {"address": silent_server, "timeout": "30s"},
        "template": [{"ref": PW, "destination": str(workdir / "pw")}],
    }
    cfg = write_config(workdir, tree)
    started = time.monotonic()
    result = run_cli(["--config", str(cfg), "--once", "--timeout", "2s"], {"VAULT_TOKEN": "x.y"})
    elapsed = time.monotonic() - started
    assert result.code == 4, result.err[-2000:]
    assert elapsed < 4.0, elapsed
    assert "--timeout 2s ran out" in result.err


def test_a_retry_after_past_the_deadline_ends_the_run_at_once(dev_server: DevServer) -> None:
    """KV2-INV-354 KV2-FC-354: a 429 whose Retry-After (120 s) lies past the deadline (5 s) is
    not waited on: one attempt, then the deadline error."""
    dev_server.faults.status = 429
    dev_server.faults.retry_after = 120
    settings = VaultSettings(address=dev_server.url)
    auth = build_authenticator(AuthSettings(type="token_env", config=TokenEnvSettings("hvs.ok")))
    started = time.monotonic()
    with HvacSecretStore(settings, auth) as store, pytest.raises(TransientError) as err:
        store.set_deadline(5.0, "--timeout 5s")
        store.login()
    assert time.monotonic() - started < 2
    assert "--timeout 5s ran out after 1 attempt" in str(err.value)
    assert dev_server.request_count() == 1
