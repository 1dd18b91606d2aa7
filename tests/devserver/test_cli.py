"""`kv2render dev-server` as a process: first lines, request log, signals, warnings."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import hvac
import pytest

from kv2render.devserver.cli import main
from tests.devserver.helpers import read

SENTINEL_VALUE = "SENTINEL-secret-value-7f3a"
SENTINEL_TOKEN = "hvs.SENTINEL-root-token-91bc"


class _Lines:
    """stdout lines from a thread, so a test can wait for each with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.rest: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put(line)

    def next(self, timeout: float = 30) -> str:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("dev-server printed nothing in time") from None


def _finish(proc: subprocess.Popen[str]) -> str:
    """Wait for exit; return stderr. Kills the process if it does not stop."""
    try:
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    return err


@contextmanager
def dev_server_process(*args: str) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kv2render.devserver.cli", "--listen", "127.0.0.1:0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = _Lines(proc)
    try:
        printed: dict[str, str] = {}
        first = lines.next()
        second = lines.next()
        for line in (first, second):
            key, _, value = line.strip().partition("=")
            printed[key] = value
        assert first.startswith("VAULT_ADDR=") and second.startswith("VAULT_TOKEN=")
        if "--tls" in args:
            key, _, value = lines.next().strip().partition("=")
            assert key == "VAULT_CACERT"
            printed[key] = value
        yield proc, printed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None and not stream.closed:
                stream.close()


def test_prints_addr_token_and_serves(tmp_path: Path) -> None:
    """KV2-AC-130, KV2-AC-146, KV2-INV-133: first two stdout lines, the token reads secret/,
    one log line per request on stderr without bodies or tokens, SIGTERM exits 0."""
    token_file = tmp_path / "root-token"
    token_file.write_text(SENTINEL_TOKEN + "\n")
    seed = tmp_path / "seed.yaml"
    seed.write_text(f"secrets:\n  secret/app/db:\n    password: {SENTINEL_VALUE}\n")
    with dev_server_process("--seed", str(seed), "--root-token-file", str(token_file)) as (
        proc,
        env,
    ):
        assert env["VAULT_TOKEN"] == SENTINEL_TOKEN
        c = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"])
        assert read(c, "app/db")["data"]["data"]["password"] == SENTINEL_VALUE
        c.secrets.kv.v2.create_or_update_secret("app/new", {"v": SENTINEL_VALUE})
        proc.send_signal(signal.SIGTERM)
        err = _finish(proc)
    assert proc.returncode == 0
    # Log lines in kv2render's text format: "<ts> [INFO] kv2render.devserver: GET /v1/... 200"
    messages = [ln.partition("kv2render.devserver: ")[2] for ln in err.splitlines()]
    lines = [m for m in messages if m.startswith(("GET ", "POST "))]
    assert lines == ["GET /v1/secret/data/app/db 200", "POST /v1/secret/data/app/new 200"]
    assert SENTINEL_VALUE not in err
    assert SENTINEL_TOKEN not in err
    assert "dev/test only" in err


def test_sigint_stops_cleanly() -> None:
    """KV2-AC-130: SIGINT stops the server with exit 0, no traceback."""
    with dev_server_process("--flavor", "openbao") as (proc, env):
        assert env["VAULT_ADDR"].startswith("http://127.0.0.1:")
        proc.send_signal(signal.SIGINT)
        err = _finish(proc)
    assert proc.returncode == 0 and "Traceback" not in err


def test_tls_prints_cacert() -> None:
    """KV2-AC-144: --tls prints VAULT_CACERT with the dev CA path; clients trusting it connect."""
    with dev_server_process("--tls") as (proc, env):
        assert env["VAULT_ADDR"].startswith("https://")
        assert Path(env["VAULT_CACERT"]).is_file()
        c = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"], verify=env["VAULT_CACERT"])
        assert c.auth.token.lookup_self()["data"]["policies"] == ["root"]
        proc.send_signal(signal.SIGTERM)
        _finish(proc)
    assert not Path(env["VAULT_CACERT"]).exists()  # dev keys removed on exit


def test_ovh_flavour_addr_has_base_path() -> None:
    """KV2-AC-143: the printed address for ovh includes /api/<uuid>."""
    with dev_server_process("--flavor", "ovh") as (proc, env):
        assert "/api/" in env["VAULT_ADDR"]
        proc.send_signal(signal.SIGTERM)
        _finish(proc)


def test_non_loopback_warns() -> None:
    """KV2-AC-145, KV2-AC-382, KV2-INV-130: a non-loopback --listen, allowed with
    --allow-remote, prints a warning."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kv2render.devserver.cli",
            "--listen",
            "0.0.0.0:0",
            "--allow-remote",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines = _Lines(proc)
    lines.next()
    proc.send_signal(signal.SIGTERM)
    err = _finish(proc)
    assert proc.stdout is not None
    proc.stdout.close()
    assert "WARNING" in err and "not loopback" in err


def test_invalid_seed_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """KV2-FC-130, KV2-AC-147: an invalid seed exits 2 naming the key path."""
    seed = tmp_path / "seed.yaml"
    seed.write_text(json.dumps({"approle": [{"role_name": "r", "colour": 1}]}))
    assert main(["--listen", "127.0.0.1:0", "--seed", str(seed)]) == 2
    assert "approle[0]" in capsys.readouterr().err


def test_bad_listen_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    """KV2-INV-130: --help says dev/test only; a bad --listen exits 2."""
    assert main(["--listen", "nonsense"]) == 2
    assert "--listen" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    assert "DEVELOPMENT AND TESTS ONLY" in help_text and "in memory" in help_text
