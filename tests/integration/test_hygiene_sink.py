"""The token sink is the one place kv2render writes a token (KV2-INV-490, KV2-INV-001):
the tokens it wrote there appear nowhere else: not in the logs at trace level (text and
JSON), the status file, `kv2render status`, a command's environment or argv, nor in any
other file, for --once and for the daemon across a re-login.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kv2render.devserver import DevServer

from .cli_helpers import cli_env, run_cli, run_cli_subprocess, write_config
from .hygiene_util import Sentinels, report, scan_tree, snapshot

PW = "vault+kv2:///secret/data/app/db#password"


def _wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _world(srv: DevServer, s: Sentinels, wd: Path) -> dict[str, Any]:
    srv.put("app/db", {"password": s["password"]})
    srv.add_policy("app-read", {"secret/data/app/*": ["read"]})
    srv.add_approle("web", s["role_id"], s["secret_id"], ["app-read"], token_ttl=300)
    creds = wd / "creds"
    creds.mkdir(mode=0o700)
    (creds / "role").write_text(s["role_id"])
    (creds / "sid").write_text(s["secret_id"])
    (wd / "out").mkdir(mode=0o700)
    return {
        "vault": {"address": srv.url},
        "auto_auth": {
            "method": {
                "type": "approle",
                "config": {
                    "role_id_file_path": str(creds / "role"),
                    "secret_id_file_path": str(creds / "sid"),
                    "remove_secret_id_file_after_reading": False,
                },
            },
            "sink": [{"type": "file", "config": {"path": str(wd / "out" / "token")}}],
        },
        "template": [
            {
                "ref": PW,
                "destination": str(wd / "out" / "pw"),
                # the command's environment and argv are scanned (a file under wd)
                "command": f'env > {wd}/envdump; echo "$0 $*" >> {wd}/envdump',
            }
        ],
    }


def _sentinels() -> Sentinels:
    s = Sentinels()
    s.make("password", "SENTINEL-SECRET-pw")
    s.make("role_id", "SENTINEL-ROLEID")
    s.make("secret_id", "SENTINEL-SECRETID")
    return s


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_once_with_a_sink_leaks_the_token_nowhere_else(tmp_path: Path, fmt: str) -> None:
    """KV2-AC-497, KV2-INV-001: --once at trace level: the token is in the sink only."""
    s = _sentinels()
    with DevServer() as srv:
        tree = _world(srv, s, tmp_path)
        cfg = write_config(tmp_path, tree)
        before = snapshot(tmp_path)
        result = run_cli(
            ["--config", str(cfg), "--once", "--log-level", "trace", "--log-format", fmt]
        )
        request_log = "\n".join(f"{m} {p} {st}" for m, p, st in srv.requests)
    assert result.code == 0, result.text
    token = (tmp_path / "out" / "token").read_text()
    s.derive("sink_token", token)
    leaks = s.leaks("stdout", result.out) + s.leaks("stderr", result.err)
    leaks += s.leaks("dev server request log", request_log)
    leaks += scan_tree(s, tmp_path, before, [tmp_path / "out" / "token", tmp_path / "out" / "pw"])
    assert (tmp_path / "envdump").read_text().strip()
    assert not leaks, report(leaks)


def test_daemon_with_a_sink_leaks_no_token_across_a_relogin(tmp_path: Path) -> None:
    """KV2-AC-497, KV2-AC-494, KV2-INV-001: the daemon at trace level writes the sink,
    rewrites it after a re-login (its token revoked), and neither token appears in its
    output, the status file, `kv2render status`, the command's environment or other files."""
    s = _sentinels()
    with DevServer() as srv:
        tree = _world(srv, s, tmp_path)
        status = tmp_path / "state" / "status.json"
        status.parent.mkdir(mode=0o700)
        tree["status_file"] = str(status)
        tree["template_config"] = {"static_secret_render_interval": "1s"}
        cfg = write_config(tmp_path, tree)
        sink = tmp_path / "out" / "token"
        before = snapshot(tmp_path)
        proc = subprocess.Popen(
            [sys.executable, "-m", "kv2render", "--config", str(cfg), "--log-level", "trace"],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        try:
            _wait_for(lambda: sink.exists() and status.exists(), 15, "the first sink write")
            first = sink.read_text()
            srv.revoke_token(first)
            srv.put("app/db", {"password": s["password"] + "-2"})  # a read after the revoke
            _wait_for(lambda: sink.read_text() != first, 15, "the sink after a re-login")
            second = sink.read_text()
            status_text = status.read_text()
            shown = run_cli_subprocess(["status", "--config", str(cfg)])
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    s.derive("first_token", first)
    s.derive("second_token", second)
    s.derive("password_2", s["password"] + "-2")
    leaks = s.leaks("daemon stdout", out) + s.leaks("daemon stderr", err)
    leaks += s.leaks("status file", status_text) + s.leaks(
        "status file (stopped)", status.read_text()
    )
    leaks += s.leaks("kv2render status", shown.out + shown.err)
    leaks += scan_tree(s, tmp_path, before, [sink, tmp_path / "out" / "pw"])
    assert "token written to sink" in err
    assert not leaks, report(leaks)
