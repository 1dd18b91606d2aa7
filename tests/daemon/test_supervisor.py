"""The process supervisor (kv2render/daemon/supervisor.py) with real child processes.

Each test drives :class:`Supervisor` the way the daemon loop does (``after_pass`` with the
pass's secrets) and runs a real ``sh`` or Python child that records what it saw in a file:
its environment, the signals it got, when it started. Waits are polls with a deadline.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kv2render.config.supervise import EnvTemplateSpec, ExecSpec
from kv2render.daemon.supervisor import Supervisor, child_environment, exit_status
from kv2render.errors import AccessDeniedError
from kv2render.model import SecretVersion
from kv2render.refs import SecretLocation

SENTINEL = "S3NTINEL-env-value-7f3a"
DB = '{{ with secret "secret/data/app/db" }}{{ .Data.data.password }}{{ end }}'
API = '{{ with secret "secret/data/app/api" }}{{ .Data.data.key }}{{ end }}'

# A child that records its start (pid and DB_PASSWORD's length, never the value) and each
# signal in $LOG, exits 5 on SIGTERM and 0 on SIGUSR1, and otherwise runs until stopped.
RECORDER = r"""
echo "start $$ ${#DB_PASSWORD}" >> "$LOG"
trap 'echo "TERM $$" >> "$LOG"; exit 5' TERM
trap 'echo "USR1 $$" >> "$LOG"; exit 0' USR1
trap 'echo "HUP $$" >> "$LOG"' HUP
while :; do sleep 0.05; done
"""


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


class Run:
    """One supervisor, its child's record file and the exit codes it reported."""

    def __init__(
        self,
        tmp_path: Path,
        command: list[str],
        envs: dict[str, str],
        *,
        restart: str = "always",
        stop_signal: int = signal.SIGTERM,
        kill_timeout: float = 5.0,
        base: dict[str, str] | None = None,
        error_on_missing_key: bool = True,
    ) -> None:
        self.log = tmp_path / "child.log"
        self.exits: list[int] = []
        self.exited = threading.Event()
        spec = ExecSpec(
            command=tuple(command),
            restart_on_secret_changes=restart,  # type: ignore[arg-type]
            restart_stop_signal=int(stop_signal),
        )
        templates = [
            EnvTemplateSpec(name=name, contents=body, error_on_missing_key=error_on_missing_key)
            for name, body in envs.items()
        ]
        environ = {"PATH": os.environ["PATH"], "LOG": str(self.log)}
        environ.update(base or {})
        self.sup = Supervisor(
            spec,
            templates,
            base_env=environ,
            on_exit=self._exited,
            kill_timeout=kill_timeout,
        )
        self.versions: dict[str, int] = {}

    def _exited(self, code: int) -> None:
        self.exits.append(code)
        self.exited.set()

    def secrets(self, **data: dict[str, Any]) -> dict[SecretLocation, SecretVersion]:
        """SecretVersions for the paths named (``db=...``, ``api=...``), version bumped."""
        out: dict[SecretLocation, SecretVersion] = {}
        for loc in self.sup.locations:
            name = loc.path.rsplit("/", 1)[-1]
            if name in data:
                self.versions[name] = self.versions.get(name, 0) + 1
                out[loc] = SecretVersion(loc, self.versions[name], data[name])
        return out

    def starts(self) -> list[str]:
        return [line for line in lines(self.log) if line.startswith("start ")]

    def close(self) -> None:
        self.sup.close()


@pytest.fixture
def runs() -> Any:
    made: list[Run] = []
    yield made
    for run in made:
        run.close()


def sh(script: str) -> list[str]:
    return ["/bin/sh", "-c", script]


def test_the_child_starts_only_after_every_env_template_rendered(
    tmp_path: Path, runs: list[Run]
) -> None:
    """KV2-AC-470, KV2-INV-471: no child while one variable's secret is missing or failed."""
    run = Run(tmp_path, sh(RECORDER), {"DB_PASSWORD": DB, "API_KEY": API})
    runs.append(run)
    db_only = run.secrets(db={"password": SENTINEL})
    api_loc = next(loc for loc in run.sup.locations if loc.path.endswith("api"))
    run.sup.after_pass(
        db_only, {api_loc: AccessDeniedError("permission denied", where=str(api_loc))}
    )
    run.sup.after_pass(db_only, {})  # not read at all yet
    time.sleep(0.2)
    assert run.sup.pid is None and run.starts() == []
    both = {**db_only, **run.secrets(api={"key": "k"})}
    run.sup.after_pass(both, {})
    wait_for(run.starts, "the child's start")
    assert run.starts() == [f"start {run.sup.pid} {len(SENTINEL)}"]


def test_child_environment_drops_credentials_and_adds_the_variables(
    tmp_path: Path, runs: list[Run]
) -> None:
    """KV2-AC-470, KV2-INV-473: the child sees kv2render's environment minus VAULT_*, BAO_*,
    KV2RENDER_* and token-like names, plus the rendered variables; the token never."""
    dump = tmp_path / "env.json"
    base = {
        "VAULT_TOKEN": "hvs.tok",
        "VAULT_ADDR": "https://v:8200",
        "BAO_TOKEN": "b.tok",
        "BAO_NAMESPACE": "ns",
        "KV2RENDER_LOG": "x",
        "GITHUB_TOKEN": "ghp",
        "TOKEN": "t",
        "CONSUL_HTTP_TOKEN": "c",
        "TOKENIZERS_PARALLELISM": "false",
        "KEEP_ME": "1",
    }
    code = f"import json, os; json.dump(dict(os.environ), open({str(dump)!r}, 'w'))"
    run = Run(tmp_path, [sys.executable, "-c", code], {"DB_PASSWORD": DB}, base=base)
    runs.append(run)
    run.sup.after_pass(run.secrets(db={"password": SENTINEL}), {})
    assert run.exited.wait(10)
    env = json.loads(dump.read_text(encoding="utf-8"))
    assert env["DB_PASSWORD"] == SENTINEL
    assert env["KEEP_ME"] == "1" and env["TOKENIZERS_PARALLELISM"] == "false"
    dropped = [name for name in base if name in env]
    assert dropped == ["TOKENIZERS_PARALLELISM", "KEEP_ME"]
    assert run.exits == [0] and run.sup.exit_code == 0
    # The pure function agrees, and a rendered variable wins over an inherited one.
    assert child_environment({"A": "old", "VAULT_X": "y"}, {"A": "new"}) == {"A": "new"}


def test_a_changed_secret_restarts_the_child_with_the_stop_signal(
    tmp_path: Path, runs: list[Run]
) -> None:
    """KV2-AC-471, KV2-INV-474: "always" stops the child with restart_stop_signal and starts
    it again with the new value; its exit on purpose does not end kv2render."""
    run = Run(tmp_path, sh(RECORDER), {"DB_PASSWORD": DB}, stop_signal=signal.SIGUSR1)
    runs.append(run)
    run.sup.after_pass(run.secrets(db={"password": "v1"}), {})
    wait_for(run.starts, "the first start")
    first = run.sup.pid
    run.sup.after_pass(run.secrets(db={"password": "value-two"}), {})
    wait_for(lambda: len(run.starts()) == 2, "the restart")
    assert lines(run.log) == [f"start {first} 2", f"USR1 {first}", f"start {run.sup.pid} 9"]
    assert run.sup.starts == 2 and run.exits == [] and run.sup.exit_code is None


def test_a_new_version_with_the_same_values_does_not_restart(
    tmp_path: Path, runs: list[Run]
) -> None:
    """KV2-AC-471, KV2-INV-474: only a change of a rendered variable restarts the child."""
    run = Run(tmp_path, sh(RECORDER), {"DB_PASSWORD": DB})
    runs.append(run)
    run.sup.after_pass(run.secrets(db={"password": "same", "other": 1}), {})
    wait_for(run.starts, "the first start")
    run.sup.after_pass(run.secrets(db={"password": "same", "other": 2}), {})
    time.sleep(0.3)
    assert len(run.starts()) == 1 and run.sup.starts == 1


def test_never_keeps_the_child_running(
    tmp_path: Path, runs: list[Run], caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-471, KV2-INV-474: restart_on_secret_changes "never" leaves the child alone."""
    caplog.set_level(logging.DEBUG)
    run = Run(tmp_path, sh(RECORDER), {"DB_PASSWORD": DB}, restart="never")
    runs.append(run)
    run.sup.after_pass(run.secrets(db={"password": "v1"}), {})
    wait_for(run.starts, "the first start")
    pid = run.sup.pid
    run.sup.after_pass(run.secrets(db={"password": SENTINEL}), {})
    time.sleep(0.3)
    assert run.sup.pid == pid and lines(run.log) == [f"start {pid} 2"]
    assert "restart_on_secret_changes is never" in caplog.text
    assert SENTINEL not in caplog.text


def test_a_child_that_ignores_the_stop_signal_is_killed_after_the_timeout(
    tmp_path: Path, runs: list[Run]
) -> None:
    """KV2-AC-472, KV2-FC-473: SIGKILL (to the child's process group) once the kill timeout
    after the stop signal has passed; then the new child starts."""
    stubborn = (
        'echo "start $$ ${#DB_PASSWORD}" >> "$LOG"; trap "" TERM; while :; do sleep 0.05; done'
    )
    run = Run(tmp_path, sh(stubborn), {"DB_PASSWORD": DB}, kill_timeout=0.5)
    runs.append(run)
    run.sup.after_pass(run.secrets(db={"password": "v1"}), {})
    wait_for(run.starts, "the first start")
    first = run.sup.pid
    assert first is not None
    started = time.monotonic()
    run.sup.after_pass(run.secrets(db={"password": "v22"}), {})
    took = time.monotonic() - started
    assert 0.5 <= took < 5.0, took
    wait_for(lambda: len(run.starts()) == 2, "the restart")
    with pytest.raises(ProcessLookupError):
        os.kill(first, 0)
    assert run.exits == []


@pytest.mark.parametrize(
    ("script", "code"),
    [("exit 7", 7), ("exit 0", 0), ("kill -KILL $$", 137), ("kill -TERM $$", 128 + 15)],
)
def test_kv2render_takes_the_childs_exit_code(
    tmp_path: Path, runs: list[Run], script: str, code: int
) -> None:
    """KV2-AC-473, KV2-INV-478: the child's exit code is reported; a death by signal N is
    128 + N, as shells report it."""
    run = Run(tmp_path, sh(script), {"DB_PASSWORD": DB})
    runs.append(run)
    run.sup.after_pass(run.secrets(db={"password": "v1"}), {})
    assert run.exited.wait(10)
    assert run.exits == [code] and run.sup.exit_code == code
    assert exit_status(-9) == 137 and exit_status(3) == 3


def test_signals_are_forwarded_to_the_running_child(tmp_path: Path, runs: list[Run]) -> None:
    """KV2-AC-478, KV2-INV-475: forward() sends the signal to the child; without a child it
    says so (the service then handles the signal itself)."""
    run = Run(tmp_path, sh(RECORDER), {"DB_PASSWORD": DB})
    runs.append(run)
    assert run.sup.forward(signal.SIGHUP) is False  # no child yet
    run.sup.after_pass(run.secrets(db={"password": "v1"}), {})
    wait_for(run.starts, "the start")
    pid = run.sup.pid
    assert run.sup.forward(signal.SIGHUP) is True
    wait_for(lambda: f"HUP {pid}" in lines(run.log), "the forwarded SIGHUP")
    assert run.sup.forward(signal.SIGTERM) is True
    assert run.exited.wait(10)
    assert run.exits == [5]  # the child's own answer to SIGTERM
    assert run.sup.forward(signal.SIGTERM) is False


def test_close_stops_the_child(tmp_path: Path, runs: list[Run]) -> None:
    """KV2-INV-474: kv2render exiting for its own reasons stops the child (stop signal)."""
    run = Run(tmp_path, sh(RECORDER), {"DB_PASSWORD": DB})
    runs.append(run)
    run.sup.after_pass(run.secrets(db={"password": "v1"}), {})
    wait_for(run.starts, "the start")
    pid = run.sup.pid
    run.sup.close()
    assert f"TERM {pid}" in lines(run.log)
    assert run.exits == []  # stopped on purpose: not the child's own exit
    run.sup.after_pass(run.secrets(db={"password": "v2"}), {})
    assert len(run.starts()) == 1  # closed: nothing starts again


def test_a_failed_render_starts_nothing_and_keeps_the_running_child(
    tmp_path: Path, runs: list[Run], caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-FC-471: a missing key (error_on_missing_key) starts no child; a later failure
    leaves the running child with its old environment. No value is logged."""
    caplog.set_level(logging.DEBUG)
    run = Run(tmp_path, sh(RECORDER), {"DB_PASSWORD": DB})
    runs.append(run)
    run.sup.after_pass(run.secrets(db={"user": SENTINEL}), {})
    time.sleep(0.2)
    assert run.sup.pid is None and run.starts() == []
    assert "env_template.DB_PASSWORD" in caplog.text
    run.sup.after_pass(run.secrets(db={"password": SENTINEL}), {})
    wait_for(run.starts, "the start")
    pid = run.sup.pid
    run.sup.after_pass(run.secrets(db={"user": "x"}), {})
    time.sleep(0.2)
    assert run.sup.pid == pid and len(run.starts()) == 1
    assert SENTINEL not in caplog.text


def test_a_program_that_cannot_start_is_a_command_error(tmp_path: Path, runs: list[Run]) -> None:
    """KV2-INV-478: a missing program ends kv2render with exit 7 (CommandError)."""
    run = Run(tmp_path, [str(tmp_path / "no-such-program")], {"DB_PASSWORD": DB})
    runs.append(run)
    run.sup.after_pass(run.secrets(db={"password": "v1"}), {})
    assert run.exits == [7]


def test_exit_on_retry_failure_stops_the_child_and_exits_with_the_error(
    tmp_path: Path, runs: list[Run]
) -> None:
    """KV2-FC-471: with template_config.exit_on_retry_failure a failed render stops the child
    (stop signal) and ends kv2render with the error's code (5, a RenderError)."""
    run = Run(tmp_path, sh(RECORDER), {"DB_PASSWORD": DB})
    run.sup.exit_on_failure = True
    runs.append(run)
    run.sup.after_pass(run.secrets(db={"password": "v1"}), {})
    wait_for(run.starts, "the start")
    pid = run.sup.pid
    run.sup.after_pass(run.secrets(db={"user": "x"}), {})
    assert run.exits == [5] and run.sup.exit_code == 5
    assert lines(run.log)[-1] == f"TERM {pid}"


# --------------------------------------------------------------------------------------------
# The whole daemon (python -m kv2render) with the dev server


def _daemon_config(tmp_path: Path, srv: Any, script: str) -> Path:
    from tests.integration.cli_helpers import write_config

    return write_config(
        tmp_path,
        {
            "vault": {"address": srv.url, "retry": {"num_retries": 0}},
            "template_config": {"static_secret_render_interval": "1s"},
            "env_template": {"DB_PASSWORD": {"contents": DB}},
            "exec": {"command": ["/bin/sh", "-c", script]},
        },
    )


def test_before_the_child_starts_sigterm_stops_kv2render(tmp_path: Path, dev_server: Any) -> None:
    """KV2-INV-475, KV2-FC-471: while the variable cannot render (missing key) no child
    runs; SIGHUP reloads nothing (this mode does not reload), SIGTERM stops kv2render (0)."""
    from tests.integration.cli_helpers import DaemonProcess

    dev_server.put("app/db", {"user": "app"})
    log = tmp_path / "child.log"
    config = _daemon_config(tmp_path, dev_server, RECORDER)
    daemon = DaemonProcess(
        config, tmp_path / "logs", env={"VAULT_TOKEN": dev_server.root_token, "LOG": str(log)}
    )
    try:
        wait_for(lambda: "env_template.DB_PASSWORD" in daemon.log(), "the render error")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "no config file to reload" in daemon.log(), "SIGHUP handled")
        assert daemon.alive()
        code = daemon.stop()
    finally:
        daemon.close()
    assert code == 0, daemon.log()
    assert lines(log) == []


def test_the_daemon_starts_the_child_after_the_secret_appears(
    tmp_path: Path, dev_server: Any
) -> None:
    """KV2-AC-470, KV2-AC-478: the child starts once the key is there (next poll), gets
    a forwarded SIGHUP, and its exit code (5 on SIGTERM) is kv2render's."""
    from tests.integration.cli_helpers import DaemonProcess

    dev_server.put("app/db", {"user": "app"})
    log = tmp_path / "child.log"
    config = _daemon_config(tmp_path, dev_server, RECORDER)
    env = {"VAULT_TOKEN": dev_server.root_token, "LOG": str(log)}
    daemon = DaemonProcess(config, tmp_path / "logs", env=env)
    try:
        wait_for(lambda: "env_template.DB_PASSWORD" in daemon.log(), "the render error")
        dev_server.put("app/db", {"password": "pw"})
        wait_for(lambda: lines(log), "the child's start")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: any(line.startswith("HUP") for line in lines(log)), "forwarded HUP")
        code = daemon.stop()
    finally:
        daemon.close()
    assert code == 5, daemon.log()
    assert [line.split()[0] for line in lines(log)] == ["start", "HUP", "TERM"]
