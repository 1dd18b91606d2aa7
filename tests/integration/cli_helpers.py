"""Helpers for driving the real CLI against the dev server.

``run_cli`` calls ``kv2render.cli.main`` in-process with an explicit
environment (the autouse fixture already scrubbed VAULT_*/BAO_*), capturing
stdout and stderr; ``run_cli_subprocess`` runs ``python -m kv2render`` for the
cases where a process boundary matters.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def write_config(directory: Path, tree: Mapping[str, Any], name: str = "kv2render.yaml") -> Path:
    path = directory / name
    path.write_text(yaml.safe_dump(dict(tree), sort_keys=False), encoding="utf-8")
    return path


def run_cli(
    argv: Sequence[str],
    env: Mapping[str, str] | None = None,
) -> CliResult:
    from kv2render.cli import main

    saved = dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        for name, value in (env or {}).items():
            os.environ[name] = value
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
            for handler in logging.getLogger().handlers:
                handler.flush()
    finally:
        os.environ.clear()
        os.environ.update(saved)
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
    return CliResult(code, out.getvalue(), err.getvalue())


_NOT_INHERITED = ("VAULT_", "BAO_", "KV2RENDER_", "NOTIFY_SOCKET", "WATCHDOG_")


def cli_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a kv2render subprocess gets: this one without any server, token,
    config or service-manager variable, the source tree first on PYTHONPATH, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra or {})
    return env


def run_cli_subprocess(
    argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 60
) -> CliResult:
    proc = subprocess.run(
        [sys.executable, "-m", "kv2render", *argv],
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)


class DaemonProcess:
    """``python -m kv2render --config PATH`` with no --once: the daemon, as a subprocess whose
    output goes to a log file (a pipe nobody reads would fill up and block it)."""

    def __init__(
        self,
        config: Path,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
        log_level: str = "info",
    ) -> None:
        self.config = config
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"daemon-{time.monotonic_ns()}.log"
        self._out = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kv2render", "--config", str(config), "--log-level", log_level],
            env=cli_env(env),
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def poll(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        if not self._out.closed:
            self._out.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._out.close()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return int(self.proc.returncode)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._out.close()
