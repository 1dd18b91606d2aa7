"""The commands run after a pass wrote files: each distinct one once, bounded, its output kept out.

A template entry's ``command`` runs after every write of the pass, only when its file
changed, and a command shared by several templates runs once (KV2-INV-096, consul-template's
``findCommand``). Each runs:

* with the token-free environment of ``hardening.command_environment`` (KV2-INV-096);
* in its own session, so that a timeout (``command_timeout``) kills its whole process group:
  a shell's children would otherwise outlive it and keep its output pipes open (KV2-AC-103);
* with its stdout and stderr kept out of kv2render's own: at ``--log-level debug`` each line
  is one DEBUG record, bounded and passed through ``redact.redactor`` with the pass's secret
  values; otherwise they go to /dev/null (KV2-INV-397).

A failure is a CommandError in a :class:`CommandResult`; it never triggers re-reads
(hashicorp/vault#12566). The runner decides which templates wrote; this module sees only their
``TemplateSpec``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from kv2render import hardening
from kv2render.config import TemplateSpec
from kv2render.errors import CommandError
from kv2render.model import CommandResult, SecretVersion
from kv2render.redact import redactor

if TYPE_CHECKING:
    import subprocess
    from typing import IO

__all__ = ["OUTPUT_MAX_LINE", "OUTPUT_MAX_LINES", "CommandResult", "run_command", "run_commands"]

log = logging.getLogger(__name__)


# A command's output is logged at DEBUG, one record per line (KV2-INV-397), within bounds:
# a chatty or hostile command cannot flood the log or hold kv2render's memory.
OUTPUT_MAX_LINES = 200  # per command run, stdout and stderr together
OUTPUT_MAX_LINE = 1000  # characters kept of one line
_OUTPUT_GRACE = 1.0  # seconds to collect the last lines after the command ended


def run_command(
    command: tuple[str, ...] | str,
    *,
    timeout: float,
    where: str,
    scrub: Callable[[str], str] | None = None,
) -> None:
    """Run one command with a timeout; raise CommandError (no output captured in messages).

    Its stdout and stderr never reach kv2render's own: at ``--log-level debug`` each line
    becomes one DEBUG log record (``scrub`` applied, so the pass's secret values read
    ``[redacted]``), otherwise it goes to /dev/null (KV2-INV-397).
    """
    import subprocess  # only a pass that changed a file with a command pays for it

    shell = isinstance(command, str)
    label = command if isinstance(command, str) else " ".join(command)
    capture = log.isEnabledFor(logging.DEBUG)
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    started = time.monotonic()
    try:
        # Its own session, so that a timeout kills the whole group: a shell's children
        # would otherwise outlive it and keep its output pipes open (KV2-AC-103).
        proc = subprocess.Popen(  # noqa: S603 - the operator's own command
            command if shell else list(command),
            shell=shell,
            env=hardening.command_environment(),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=output,
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandError(
            f"command {label!r} could not start: {exc.strerror or exc}", where=where
        ) from None
    lines = _OutputLog(proc, where, scrub) if capture else None
    hint = None if capture else "run with --log-level debug to log its output"
    try:
        returncode = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise CommandError(
            f"command {label!r} timed out after {timeout:g}s", where=where, hint=hint
        ) from None
    finally:
        if lines is not None:
            lines.finish()
    if returncode != 0:
        raise CommandError(
            f"command {label!r} exited with status {returncode}", where=where, hint=hint
        )
    log.info("command %r ran for %s in %.2fs", label, where, time.monotonic() - started)


class _OutputLog:
    """A command's stdout and stderr, read by one thread each, logged one line per record.

    The threads drain their pipe to the end, logging at most OUTPUT_MAX_LINES lines in all,
    so the command never blocks on a full pipe. A background process the command started
    may hold a pipe open after the command ends: :meth:`finish` waits a moment, then leaves
    that thread draining (it ends with the pipe) rather than cutting the pipe under it.
    """

    def __init__(
        self, proc: subprocess.Popen[bytes], where: str, scrub: Callable[[str], str] | None
    ) -> None:
        import threading

        self._where = where
        self._scrub = scrub
        self._lock = threading.Lock()
        self._left = OUTPUT_MAX_LINES
        self._threads = [
            threading.Thread(
                target=self._pump, args=(stream, name), name=f"kv2render-{name}", daemon=True
            )
            for stream, name in ((proc.stdout, "stdout"), (proc.stderr, "stderr"))
            if stream is not None
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: IO[bytes], name: str) -> None:
        try:
            for raw in iter(lambda: stream.readline(4 * OUTPUT_MAX_LINE), b""):
                self._line(raw, name)
        except (OSError, ValueError):  # the pipe went away: nothing more to read
            pass
        finally:
            stream.close()

    def _line(self, raw: bytes, name: str) -> None:
        with self._lock:
            self._left -= 1
            left = self._left
        if left < -1:
            return
        if left == -1:
            log.debug(
                "%s: further output not logged (limit %d lines)",
                self._where,
                OUTPUT_MAX_LINES,
                extra={"stream": name},
            )
            return
        text = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if len(text) > OUTPUT_MAX_LINE:
            text = text[:OUTPUT_MAX_LINE] + "…"
        if self._scrub is not None:
            text = self._scrub(text)
        log.debug("%s %s: %s", self._where, name, text, extra={"stream": name})

    def finish(self) -> None:
        deadline = time.monotonic() + _OUTPUT_GRACE
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_commands(
    written: Iterable[TemplateSpec], secrets: Iterable[SecretVersion] = ()
) -> tuple[CommandResult, ...]:
    """Run each distinct command of the templates that wrote, once, in config order.

    ``written``: the entries whose file the pass changed. Like consul-template
    (``findCommand``), a command shared by several templates runs once per pass. A failure is
    reported and never triggers re-reads (a Vault Agent complaint: hashicorp/vault#12566).
    ``secrets``: the values the pass read, redacted from the commands' logged output
    (KV2-INV-397).
    """
    scrub = redactor(secrets) if log.isEnabledFor(logging.DEBUG) else None
    order: list[tuple[str, ...] | str] = []
    owners: dict[tuple[str, ...] | str, list[TemplateSpec]] = {}
    for spec in written:
        command = spec.command
        if command is None:
            continue
        if command not in owners:
            order.append(command)
            owners[command] = []
        owners[command].append(spec)
    out: list[CommandResult] = []
    for command in order:
        first = owners[command][0]
        indices = tuple(spec.index for spec in owners[command])
        try:
            run_command(
                command, timeout=first.command_timeout, where=f"{first.where}.command", scrub=scrub
            )
        except CommandError as exc:
            log.error("%s", exc)
            out.append(CommandResult(command, indices, exc))
        else:
            out.append(CommandResult(command, indices))
    return tuple(out)
