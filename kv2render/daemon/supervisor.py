"""Process-supervisor mode: secrets in a child's environment (issue 16, KV2-*-47x..48x).

Vault Agent's ``env_template`` + ``exec`` (vault-agent.md §1.8)::

    Daemon pass (loop.py) --after_pass(secrets, errors)--> Supervisor
        render every env template in memory (runner.prepare_one, consul-template syntax)
        first complete render  -> start the child: parent env - credentials + variables
        a variable changed     -> restart_on_secret_changes "always": stop signal, up to
                                  30 s, SIGKILL, start again; "never": keep running
    service.py: a signal kv2render receives -> forward() -> the child
    the child exits on its own -> on_exit(code) -> kv2render exits with that code

The child runs in its own process group with kv2render's stdin, stdout and stderr: a
terminal's Ctrl-C reaches kv2render once and the child once (forwarded), never twice.

Secret values live in two places only: this object's memory and the child's environment.
Logs name the variables, the program (``command[0]``), pids and exit codes; never a value,
never the whole argv (KV2-INV-477).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kv2render import runner
from kv2render.config import TemplateSpec
from kv2render.config.supervise import KILL_TIMEOUT, EnvTemplateSpec, ExecSpec
from kv2render.errors import CommandError, Kv2RenderError, RenderError, SecretsMissing
from kv2render.model import SecretVersion
from kv2render.refs import SecretLocation
from kv2render.runner import PreparedTemplate

__all__ = ["Supervisor", "child_environment", "exit_status", "forwarded_signals", "prepare_env"]

log = logging.getLogger(__name__)

# KV2-INV-473: what the child never inherits from kv2render's environment: the server
# settings and credentials kv2render was given (VAULT_*, BAO_*), kv2render's own settings,
# and any variable named like a token (GITHUB_TOKEN, CONSUL_HTTP_TOKEN, TOKEN_FILE...).
_DENY_PREFIXES = ("VAULT_", "BAO_", "KV2RENDER_")
_TOKEN_LIKE = re.compile(r"(^|_)TOKEN(_|$)")
# Forwarded to the child when kv2render receives them (KV2-INV-475).
FORWARDED = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


def child_environment(base: Mapping[str, str], rendered: Mapping[str, str]) -> dict[str, str]:
    """``base`` minus credentials and kv2render's settings, plus the rendered variables."""
    env = {
        name: value
        for name, value in base.items()
        if not name.upper().startswith(_DENY_PREFIXES) and not _TOKEN_LIKE.search(name.upper())
    }
    env.update(rendered)
    return env


def exit_status(returncode: int) -> int:
    """A Popen return code as a shell reports it: a death by signal N is 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass(frozen=True)
class _EnvAsTemplate(TemplateSpec):
    """An env template compiled by the file templates' machinery; never written anywhere
    (the destination is a placeholder the supervisor never passes to a writer)."""

    env_name: str = ""

    @property
    def where(self) -> str:
        return f"env_template.{self.env_name}"


def prepare_env(
    env: EnvTemplateSpec, *, max_output_bytes: int = 1 << 20, render_timeout: float = 10.0
) -> PreparedTemplate:
    """Compile one env template (ConfigError on a syntax error, naming env_template.NAME)."""
    spec = _EnvAsTemplate(
        index=-1,
        destination=Path(os.devnull),
        source=env.source,
        contents=env.contents,
        error_on_missing_key=env.error_on_missing_key,
        syntax=env.syntax,
        left_delimiter=env.left_delimiter,
        right_delimiter=env.right_delimiter,
        function_denylist=env.function_denylist,
        env_name=env.name,
    )
    return runner.prepare_one(
        spec, max_output_bytes=max_output_bytes, render_timeout=render_timeout
    )


@dataclass
class _Child:
    proc: subprocess.Popen[bytes]
    done: threading.Event = field(default_factory=threading.Event)
    returncode: int | None = None


class Supervisor:
    """Runs ``exec.command`` with the env templates' values; the loop's pass hook."""

    def __init__(
        self,
        spec: ExecSpec,
        env_templates: Sequence[EnvTemplateSpec],
        *,
        base_env: Mapping[str, str],
        on_exit: Callable[[int], None] = lambda code: None,
        kill_timeout: float = KILL_TIMEOUT,
        max_output_bytes: int = 1 << 20,
        render_timeout: float = 10.0,
        exit_on_failure: bool = False,
    ) -> None:
        self.spec = spec
        self.items = [
            prepare_env(e, max_output_bytes=max_output_bytes, render_timeout=render_timeout)
            for e in env_templates
        ]
        self._names = [e.name for e in env_templates]
        self._base = dict(base_env)
        self._on_exit = on_exit
        self.kill_timeout = kill_timeout
        self._lock = threading.Lock()
        self._child: _Child | None = None
        self._rendered: dict[str, str] | None = None  # the values last rendered
        self._versions: dict[SecretLocation, int] | None = None
        self._closed = False
        self.exit_code: int | None = None  # the child's, once it exited on its own
        # template_config.exit_on_retry_failure: a failed render ends kv2render (KV2-FC-471).
        self.exit_on_failure = exit_on_failure
        self._failure: Kv2RenderError | None = None
        self.starts = 0

    @property
    def program(self) -> str:
        return self.spec.command[0]

    @property
    def locations(self) -> frozenset[SecretLocation]:
        return frozenset(loc for item in self.items for loc in item.locations)

    @property
    def pid(self) -> int | None:
        child = self._child
        return None if child is None else child.proc.pid

    # -- the loop's hook ----------------------------------------------------------------------

    def after_pass(
        self,
        secrets: Mapping[SecretLocation, SecretVersion],
        errors: Mapping[SecretLocation, Kv2RenderError],
    ) -> None:
        """Start the child after the first complete render; restart it on a change."""
        if self._closed or self.exit_code is not None:
            return
        values = self._render(secrets, errors)
        if values is None and self.exit_on_failure:
            self._give_up()
            return
        if values is None or values == self._rendered:
            return
        first = self._rendered is None
        self._rendered = values
        if first:
            self._start(values)
        elif self.spec.restart_on_secret_changes == "never":
            # KV2-INV-474: the child keeps the environment it was started with.
            log.info(
                "env templates changed (%s); restart_on_secret_changes is never: %s keeps "
                "running with its old environment",
                ", ".join(self._names),
                self.program,
            )
        else:
            self.restart(values)

    def _give_up(self) -> None:
        """exit_on_retry_failure: stop the child and end kv2render with the error's code."""
        code = self._failure.exit_code if self._failure is not None else 1
        log.error("exit_on_retry_failure is set: stopping %s and exiting", self.program)
        self.close()
        self.exit_code = code
        self._on_exit(code)

    def _render(
        self,
        secrets: Mapping[SecretLocation, SecretVersion],
        errors: Mapping[SecretLocation, Kv2RenderError],
    ) -> dict[str, str] | None:
        """Every variable's value, or None when one cannot be rendered now (logged)."""
        versions: dict[SecretLocation, int] = {}
        for loc in sorted(self.locations):
            if loc in errors or loc not in secrets:
                error = errors.get(loc) or Kv2RenderError(f"{loc} was not read")
                log.error("env templates not rendered: %s", error)
                self._failure = error
                return None
            versions[loc] = secrets[loc].version
        if versions == self._versions:
            return self._rendered  # no new version: nothing can have changed
        values: dict[str, str] = {}
        for name, item in zip(self._names, self.items, strict=True):
            try:
                data = item.render({loc: secrets[loc] for loc in item.locations})
                value = data.decode("utf-8", "surrogateescape")
                if "\0" in value:
                    raise RenderError(
                        "the value holds a NUL byte, which an environment variable cannot",
                        where=item.spec.where,
                    )
            except Kv2RenderError as exc:
                if isinstance(exc, SecretsMissing):  # its text names a computed path
                    runner.mark_computed(exc, secrets.values())
                # KV2-FC-471: the running child keeps its environment; none starts.
                log.error("%s: %s", item.spec.where, exc)
                self._failure = exc
                return None
            except Exception as exc:  # a bug: never print its text, it could quote a value
                log.critical("%s: internal error %s", item.spec.where, type(exc).__name__)
                log.debug("env template crash detail", exc_info=True)
                self._failure = Kv2RenderError("internal error", where=item.spec.where)
                return None
            values[name] = value
        self._versions = versions
        log.info("rendered %s -> env %s", runner.describe_versions(versions), ", ".join(values))
        return values

    # -- the child -----------------------------------------------------------------------------

    def _start(self, values: Mapping[str, str]) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                # KV2-INV-476: inherited stdio; own process group (see the module docstring).
                proc = subprocess.Popen(
                    list(self.spec.command),
                    env=child_environment(self._base, values),
                    close_fds=True,
                    process_group=0,
                )
            except OSError as exc:
                error = CommandError(
                    f"cannot start {self.program!r}: {exc.strerror or type(exc).__name__}",
                    where="exec.command",
                    hint="check the program's path and that it is executable",
                )
            else:
                child = _Child(proc)
                self._child = child
                self.starts += 1
                threading.Thread(
                    target=self._reap, args=(child,), name="kv2render-child", daemon=True
                ).start()
                log.info("started %s (pid %d) with %s", self.program, proc.pid, ", ".join(values))
                return
        log.error("%s", error)
        self.exit_code = error.exit_code
        self._on_exit(error.exit_code)

    def _reap(self, child: _Child) -> None:
        child.returncode = child.proc.wait()
        child.done.set()
        with self._lock:
            on_purpose = child is not self._child
            if not on_purpose:
                self._child = None
        if on_purpose:
            return  # stopped by restart() or close()
        code = exit_status(child.returncode)
        # KV2-INV-478: kv2render exits with the child's code (128 + N for signal N).
        log.info("%s (pid %d) exited with %d; exiting", self.program, child.proc.pid, code)
        self.exit_code = code
        self._on_exit(code)

    def restart(self, values: Mapping[str, str]) -> None:
        """Stop the running child (stop signal, then SIGKILL) and start it with ``values``."""
        with self._lock:
            child, self._child = self._child, None
        if child is not None:
            log.info(
                "env templates changed; restarting %s (pid %d) with %s",
                self.program,
                child.proc.pid,
                self.spec.stop_signal_name,
            )
            self._stop(child)
        self._start(values)

    def _stop(self, child: _Child) -> None:
        try:
            os.kill(child.proc.pid, self.spec.restart_stop_signal)
        except ProcessLookupError:
            pass
        if child.done.wait(self.kill_timeout):
            return
        log.warning(
            "%s (pid %d) did not stop within %gs of %s; sending SIGKILL",
            self.program,
            child.proc.pid,
            self.kill_timeout,
            self.spec.stop_signal_name,
        )
        try:
            os.killpg(child.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        child.done.wait(5.0)

    def forward(self, signum: int) -> bool:
        """Send ``signum`` to the running child; False when there is none."""
        with self._lock:
            child = self._child
            if child is None or child.done.is_set():
                return False
            try:
                os.kill(child.proc.pid, signum)
            except ProcessLookupError:
                return False
        log.info("%s: forwarded to %s (pid %d)", _name(signum), self.program, child.proc.pid)
        return True

    def close(self) -> None:
        """Stop the child if it still runs (kv2render is exiting for another reason)."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is not None and not child.done.is_set():
            log.info("stopping %s (pid %d)", self.program, child.proc.pid)
            self._stop(child)


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def forwarded_signals() -> tuple[int, ...]:
    return tuple(int(getattr(signal, name)) for name in FORWARDED)
