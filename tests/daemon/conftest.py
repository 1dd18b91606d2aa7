"""Helpers for running the real daemon (``python -m kv2render``) against the dev server.

The daemon runs as a subprocess with ``PYTHONPATH`` pointing at this source tree; the
dev server runs in the test process, so tests flip its faults and read its request
counters directly. Every wait is a poll with a deadline (``wait_for``), never a fixed
sleep standing in for synchronisation.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from kv2render.devserver import DevServer
from tests.integration.cli_helpers import DaemonProcess

INTERVAL = 1.0  # static_secret_render_interval for every daemon test
SENTINEL_SECRET = "S3NTINEL-secret-value-4b1d"
SENTINEL_SECRET_ID = "S3NTINEL-secret-id-9c2e"


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, *, proc: Daemon | None = None
) -> Any:
    """Poll ``predicate`` every 50 ms until truthy; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"daemon exited ({proc.poll()}) while waiting for {what}\n{proc.log()}")
        if time.monotonic() >= deadline:
            extra = f"\n--- daemon log ---\n{proc.log()[-4000:]}" if proc is not None else ""
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what}{extra}")
        time.sleep(0.05)


def read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None


class Daemon(DaemonProcess):
    """One ``kv2render --config PATH`` process at debug level; logs beside the workdir's files
    (not in workdir itself: the daemon watches the config's directory)."""

    def __init__(
        self,
        config: Path,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        log_level: str = "debug",
    ) -> None:
        super().__init__(config, workdir / "logs", env, log_level)

    def terminate(self, timeout: float = 5.0) -> tuple[int, float]:
        """SIGTERM; (exit code, seconds it took)."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"daemon did not stop within {timeout}s of SIGTERM\n{self.log()[-3000:]}")
        return code, time.monotonic() - started


def setup_approle(
    srv: DevServer,
    workdir: Path,
    *,
    token_ttl: float | None = None,
    renewable: bool = True,
) -> dict[str, Any]:
    """An approle whose token may read secret/data/app/*; returns the auto_auth block."""
    srv.add_policy("app", {"secret/data/app/*": ["read"]})
    srv.add_approle(
        "app", "role-app", SENTINEL_SECRET_ID, policies=["app"], token_ttl=token_ttl,
        renewable=renewable,
    )  # fmt: skip
    role_id = workdir / "role_id"
    secret_id = workdir / "secret_id"
    role_id.write_text("role-app\n")
    secret_id.write_text(SENTINEL_SECRET_ID + "\n")
    role_id.chmod(0o600)
    secret_id.chmod(0o600)
    return {
        "method": {
            "type": "approle",
            "config": {
                "role_id_file_path": str(role_id),
                "secret_id_file_path": str(secret_id),
            },
        }
    }


def make_config(
    srv: DevServer,
    workdir: Path,
    templates: list[dict[str, Any]],
    *,
    auto_auth: dict[str, Any] | None = None,
    num_retries: int = 1,
    interval: str = "1s",
    **top: Any,
) -> dict[str, Any]:
    tree: dict[str, Any] = {
        "vault": {"address": srv.url, "retry": {"num_retries": num_retries}, "timeout": "2s"},
        "auto_auth": auto_auth or setup_approle(srv, workdir),
        "template_config": {"static_secret_render_interval": interval},
        "status_file": str(workdir / "status.json"),
        "template": templates,
    }
    tree.update(top)
    return tree


def write_yaml(path: Path, tree: Mapping[str, Any]) -> Path:
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(yaml.safe_dump(dict(tree), sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)  # the daemon watches this file: never show it half-written
    return path


def reads(srv: DevServer, path: str) -> int:
    return srv.request_count("GET", f"/v1/secret/data/{path}")


def logins(srv: DevServer) -> int:
    return srv.request_count("POST", "/v1/auth/approle/login")


def command_count(log: Path) -> int:
    text = read_text(log)
    return 0 if text is None else len(text.splitlines())


@pytest.fixture
def start_daemon(workdir: Path) -> Iterator[Callable[..., Daemon]]:
    started: list[Daemon] = []

    def start(
        tree: Mapping[str, Any], env: Mapping[str, str] | None = None, log_level: str = "debug"
    ) -> Daemon:
        config = write_yaml(workdir / "kv2render.yaml", tree)
        daemon = Daemon(config, workdir, env, log_level)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.close()


@pytest.fixture
def notify_socket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, socket.socket]]:
    """A systemd-style AF_UNIX datagram socket (short path: sun_path is 108 bytes)."""
    directory = Path(tempfile_dir())
    path = directory / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    try:
        yield str(path), sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)
        directory.rmdir()


def tempfile_dir() -> str:
    import tempfile

    return tempfile.mkdtemp(prefix="kv2n-", dir="/tmp")
