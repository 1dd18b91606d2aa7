"""Secret hygiene of process-supervisor mode (KV2-INV-001, KV2-INV-477).

In process-supervisor mode the secret values are environment variables of the child:
they must reach the child's environment and nothing else. One real daemon
(``python -m kv2render`` at DEBUG level) runs against the embedded dev server with
sentinel values for the token and for every secret, and goes through every path this mode
has: the first start, a restart on a new version, a render failure (a missing key), a
signal forwarded to the child, the child's exit. Then every text kv2render produced is
scanned: its log, its status file, any file it left, its own argv and the child's argv.
Only the child's environment (which the child writes to a file for this test) may hold
the values, and it must hold them.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kv2render.devserver import DevServer
from tests.integration.cli_helpers import DaemonProcess, write_config
from tests.integration.hygiene_util import Sentinels, report, scan_tree, snapshot

# The child: writes its environment and argv to a new file per start, then waits; on
# SIGUSR1 it records the signal, on SIGTERM it exits 3.
CHILD = r"""
import json, os, signal, sys, time
out = sys.argv[1]
n = len([f for f in os.listdir(out) if f.startswith("start-")])
with open(os.path.join(out, f"start-{n}.json"), "w") as f:
    json.dump({"env": dict(os.environ), "argv": sys.argv, "pid": os.getpid()}, f)
def usr1(*_):
    open(os.path.join(out, f"usr1-{os.getpid()}"), "w").close()
signal.signal(signal.SIGUSR1, usr1)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
while True:
    time.sleep(0.05)
"""


def wait_for(predicate: Callable[[], Any], what: str, proc: DaemonProcess) -> Any:
    deadline = time.monotonic() + 20
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline or proc.poll() is not None:
            pytest.fail(f"waiting for {what} (daemon exit {proc.poll()})\n{proc.log()[-3000:]}")
        time.sleep(0.05)


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[tuple[DevServer, Sentinels]]:
    s = Sentinels()
    srv = DevServer(flavor="vault", root_token=s.make("root_token", "SENTINEL-TOKEN")).start()
    try:
        yield srv, s
    finally:
        srv.stop()


def starts(record: Path) -> list[dict[str, Any]]:
    found = sorted(record.glob("start-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    out = []
    for path in found:
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return out  # being written: the caller polls again
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_secret_values_reach_the_childs_environment_and_nothing_else(
    server: tuple[DevServer, Sentinels], tmp_path: Path
) -> None:
    """KV2-AC-477, KV2-INV-477, KV2-INV-473, KV2-AC-478: sentinels through start, restart,
    render failure, a forwarded signal and the child's exit: only the child's environment
    holds them; kv2render exits with the child's code (3)."""
    srv, s = server
    srv.put("app/db", {"password": s.make("password", "SENTINEL-PW"), "user": "app"})
    srv.put("app/api", {"key": s.make("api_key", "SENTINEL-API")})
    work = tmp_path / "work"
    record = tmp_path / "record"  # the child's own files: allowed to hold the values
    work.mkdir()
    record.mkdir()
    script = work / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    config = write_config(
        work,
        {
            "vault": {"address": srv.url, "retry": {"num_retries": 0}},
            "template_config": {"static_secret_render_interval": "1s"},
            "status_file": str(work / "status.json"),
            "env_template": {
                "DB_PASSWORD": {
                    "contents": '{{ with secret "secret/data/app/db" }}'
                    "{{ .Data.data.password }}{{ end }}"
                },
                "API_KEY": {
                    "contents": '{{ with secret "secret/data/app/api" }}'
                    "{{ .Data.data.key }}{{ end }}"
                },
            },
            "exec": {"command": [sys.executable, str(script), str(record)]},
        },
    )
    before = snapshot(work)
    daemon = DaemonProcess(
        config, tmp_path / "logs", env={"VAULT_TOKEN": s["root_token"]}, log_level="debug"
    )
    try:
        first = wait_for(lambda: starts(record), "the child's first start", daemon)[0]
        assert first["env"]["DB_PASSWORD"] == s["password"]
        assert first["env"]["API_KEY"] == s["api_key"]
        assert "VAULT_TOKEN" not in first["env"]  # KV2-INV-473: the token never
        texts = {"kv2render argv": cmdline(daemon.pid), "child argv": cmdline(first["pid"])}
        # A restart on a new version, with a new sentinel.
        srv.put("app/db", {"password": s.make("password2", "SENTINEL-PW2"), "user": "app"})
        second = wait_for(lambda: starts(record)[1:], "the restart", daemon)[0]
        assert second["env"]["DB_PASSWORD"] == s["password2"]
        texts["restarted child argv"] = cmdline(second["pid"])
        # A render failure (the key is gone): the child keeps running, the error is logged.
        srv.put("app/db", {"user": s.make("user", "SENTINEL-USER")})
        wait_for(lambda: "env_template.DB_PASSWORD" in daemon.log(), "the render error", daemon)
        assert len(starts(record)) == 2
        # A forwarded signal, then SIGTERM: the child exits 3, and so does kv2render.
        daemon.signal(signal.SIGUSR1)
        wait_for(lambda: (record / f"usr1-{second['pid']}").exists(), "SIGUSR1", daemon)
        daemon.signal(signal.SIGTERM)
        code = daemon.proc.wait(timeout=20)
    finally:
        daemon.close()
    assert code == 3, daemon.log()[-3000:]
    log = daemon.log()
    assert "started" in log and "restarting" in log and "forwarded" in log
    texts["daemon log (debug)"] = log
    leaks = scan_tree(s, work, before, allowed=())
    for where, text in texts.items():
        leaks += s.leaks(where, text)
    assert not leaks, report(leaks)
    assert (work / "status.json").exists()
