"""The daemon: ticks (poll timer + watched files), backoff, re-login, reload, stop.

    service.run(cfg) runs this in a worker thread (signals, watchfiles, sd_notify there):
      Daemon.run()
            loop: step() -> wait(next deadline) on the TickSource -> handle(events)
            step: login / renew / re-login when due, then one pass over what is due:
                  read due secrets -> compare metadata.version -> render changed
                  templates -> commands -> status file

:class:`Daemon` is the whole loop and takes its clock, tick source and stop
event as arguments (STYLE.md convention 7): unit tests script the ticks and
drive a fake clock with no sleeps. :mod:`kv2render.daemon.service` wires it to the
real world.

Departures from Vault Agent, each a known complaint (reference/vault-agent.md):
only templates whose secrets got a new ``metadata.version`` re-render (§3.3);
a new token does not re-fetch every secret (§5.1); a failed command does not
restart the runner (§2.5, hashicorp/vault#12566); SIGHUP and config edits
reload templates too (§6).
"""

from __future__ import annotations

import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from kv2render import runner
from kv2render.config import Config
from kv2render.daemon.notify import Notifier
from kv2render.errors import (
    AccessDeniedError,
    AuthError,
    BadResponseError,
    CommandError,
    Kv2RenderError,
    TransientError,
)
from kv2render.logsetup import count
from kv2render.model import SecretVersion, TokenInfo
from kv2render.output.status import StatusFile, TemplateStatus, document
from kv2render.refs import SecretLocation
from kv2render.runner import CommandResult, PreparedTemplate, RenderResult
from kv2render.store.auth import Authenticator
from kv2render.store.backoff import backoff

log = logging.getLogger(__name__)

MAX_WAIT = 3600.0  # an idle daemon still wakes hourly (cheap; keeps clocks honest)
TEMPLATE_BACKOFF = (1.0, 300.0)  # KV2-FC-161: a failed template's restart backoff
STOP_GRACE = 4.0  # SIGTERM -> exit within 5 s even when the worker is stuck


# -- ticks -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FilesChanged:
    """Paths (normalised, absolute) that changed in a watched directory."""

    paths: frozenset[str]


@dataclass(frozen=True)
class ReloadRequested:
    reason: str = "SIGHUP"


TickEvent = FilesChanged | ReloadRequested


class TickSource(Protocol):
    """Blocks up to ``timeout`` seconds; returns the events that arrived (empty on timeout)."""

    def wait(self, timeout: float) -> Sequence[TickEvent]: ...


class QueueTicks:
    """The production tick source: a queue fed by the watcher and the signal handler."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[TickEvent | None] = queue.SimpleQueue()

    def put(self, event: TickEvent | None) -> None:
        """``None`` only wakes the loop (used on stop)."""
        self._queue.put(event)

    def wait(self, timeout: float) -> list[TickEvent]:
        try:
            items = [self._queue.get(timeout=max(0.0, timeout))]
        except queue.Empty:
            return []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return [item for item in items if item is not None]


# -- what the loop needs from a store ----------------------------------------------------------


class DaemonStore(Protocol):
    """SecretStore plus the token lifecycle (vault.HvacSecretStore; FakeSecretStore in tests)."""

    def read(self, location: SecretLocation) -> SecretVersion: ...

    def close(self) -> None: ...

    def login(self) -> TokenInfo | None: ...

    def renew(self) -> TokenInfo: ...

    @property
    def token_info(self) -> TokenInfo | None: ...

    @property
    def authenticator(self) -> Authenticator:
        """Its auth method: the credential files a change of which means a new login."""
        ...


@dataclass
class _Template:
    """One template's state across passes (metadata plus the compiled template)."""

    item: PreparedTemplate
    versions: dict[SecretLocation, int] = field(default_factory=dict)
    dirty: bool = True  # render at the next pass whatever the versions say
    failures: int = 0
    retry_at: float = 0.0
    error: Kv2RenderError | None = None
    source_error: Kv2RenderError | None = None
    command_error: CommandError | None = None
    last_render: float | None = None
    last_write: float | None = None

    @property
    def spec_where(self) -> str:
        return self.item.spec.where


RunCommands = Callable[[Sequence[RenderResult]], tuple[CommandResult, ...]]


class Daemon:
    """The render loop. Single-threaded; every wait goes through ``ticks.wait``."""

    def __init__(
        self,
        cfg: Config,
        *,
        store_factory: Callable[[Config], DaemonStore],
        ticks: TickSource,
        stop: threading.Event,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        reload_config: Callable[[], Config] | None = None,
        config_path: Path | None = None,
        prepare: Callable[[Config], list[PreparedTemplate]] = runner.prepare,
        prepare_one: Callable[..., PreparedTemplate] = runner.prepare_one,
        write: Callable[..., bool] | None = None,
        run_commands: RunCommands | None = None,
        notifier: Notifier | None = None,
        status_file: StatusFile | None = None,
        on_watch: Callable[[frozenset[Path]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.ticks = ticks
        self.stop = stop
        self.clock = clock
        self.wall = wall
        self.rng = rng or random.Random()
        self._store_factory = store_factory
        self._reload_config = reload_config
        self.config_path = config_path
        self._prepare = prepare
        self._prepare_one = prepare_one
        self._write = write
        self._run_commands = run_commands or self._commands
        self.notifier = notifier or Notifier({})
        self.status_file = status_file if status_file is not None else StatusFile(cfg.status_file)
        self._on_watch = on_watch
        self.exit_code: int | None = None
        self.ready = False
        self.passes = 0
        self._started = wall()
        self._state = "starting"
        self._last_status_line = ""
        # token lifecycle
        self._need_login = True
        self._login_at = 0.0
        self._login_failures = 0
        self._renew_at: float | None = None
        self._renew_failures = 0
        self._relogin_at: float | None = None
        self._expires_at: float | None = None
        self._cred_signature: tuple[Any, ...] = ()
        # secrets
        self._cache: dict[SecretLocation, SecretVersion] = {}
        self._due: dict[SecretLocation, float] = {}
        self.store: DaemonStore = store_factory(cfg)
        self.templates = [_Template(item) for item in prepare(cfg)]

    # -- settings ---------------------------------------------------------------------------

    @property
    def max_retries(self) -> int:
        # config.load already turned the file's 0 into 12 and -1 into 0.
        return max(0, self.cfg.vault.num_retries)

    def _interval(self, t: _Template) -> float:
        own = t.item.spec.render_interval
        return own if own else self.cfg.template_config.static_secret_render_interval

    def _loc_interval(self, loc: SecretLocation) -> float:
        default = self.cfg.template_config.static_secret_render_interval
        return min(
            (self._interval(t) for t in self.templates if loc in t.item.locations), default=default
        )

    def _jitter(self, interval: float) -> float:
        # issue 5: +-10 % so that many hosts do not poll in step (Vault Agent: 85-95 %).
        return interval * self.rng.uniform(0.9, 1.1)

    # -- main loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Loop until the stop event is set (0) or retries are exhausted (the error's code)."""
        self._watch()
        while not self.stop.is_set():
            self.step()
            if self.exit_code is not None:
                self._write_status("exited")
                return self.exit_code
            if self.stop.is_set():
                break
            timeout = min(MAX_WAIT, max(0.0, self.next_wakeup() - self.clock()))
            for event in self.ticks.wait(timeout):
                self.handle(event)
        self._write_status("stopped")
        return 0

    def close(self) -> None:
        try:
            self.store.close()
        except Exception:  # closing must never mask the exit path
            log.debug("store close failed", exc_info=True)

    def step(self) -> None:
        """Do everything that is due now: token work first, then one pass."""
        now = self.clock()
        try:
            self._token_step(now)
            if self.exit_code is None and not self._need_login and not self.stop.is_set():
                self._pass(self.clock())
        except Kv2RenderError as exc:  # not expected here; keep serving, say where
            log.error("daemon step failed: %s", exc)
            self._pause_all(self.clock())
        except Exception as exc:  # a bug must not end months of service; never print values
            log.critical("internal error %s in the render loop; retrying", type(exc).__name__)
            log.debug("internal error detail", exc_info=True)
            self._pause_all(self.clock())

    def _pause_all(self, now: float) -> None:
        for t in self.templates:
            t.dirty = False
            t.retry_at = now + 1.0
            if t.error is None:
                t.error = Kv2RenderError("internal error in the render loop")

    def next_wakeup(self) -> float:
        now = self.clock()
        if self._need_login:
            return self._login_at
        if any(t.dirty for t in self.templates):
            return now
        candidates = [self._due[loc] for loc in self._locations() if loc in self._due]
        candidates += [t.retry_at for t in self.templates if t.error is not None]
        candidates += [x for x in (self._renew_at, self._relogin_at) if x is not None]
        return min(candidates, default=now + MAX_WAIT)

    def handle(self, event: TickEvent) -> None:
        try:
            if isinstance(event, ReloadRequested):
                self.reload(event.reason)
            elif isinstance(event, FilesChanged):
                self._files_changed(event.paths)
        except Exception as exc:  # a bug must not end the daemon; never print its text
            log.critical(
                "internal error %s while handling %s", type(exc).__name__, type(event).__name__
            )
            log.debug("internal error detail", exc_info=True)

    # -- token lifecycle --------------------------------------------------------------------

    def _token_step(self, now: float) -> None:
        if not self._need_login and self._relogin_at is not None and now >= self._relogin_at:
            log.info("token is near expiry and cannot be extended; logging in again")
            self._schedule_login(now)
        if self._need_login:
            if now >= self._login_at:
                self._login(now)
            return
        if self._renew_at is not None and now >= self._renew_at:
            self._renew(now)
            if self._need_login and now >= self._login_at:
                self._login(self.clock())

    def _schedule_login(self, now: float) -> None:
        self._need_login = True
        self._login_at = now
        self._renew_at = self._relogin_at = None

    def _login(self, now: float) -> None:
        # Remember the credential files as they are now: a change after this point
        # (a rotated service-account token, a new secret_id) triggers the next login.
        self._cred_signature = self._credential_signature()
        try:
            info = self.store.login()
        except Kv2RenderError as exc:
            if self.stop.is_set():
                return  # the stop cut the login short; not a failure to report
            self._login_failures += 1
            delay = self._login_backoff(exc.retry_after)
            self._login_at = now + delay
            self._state = "login-failed"
            log.error(
                "login failed (attempt %d): %s; next attempt in %.1fs",
                self._login_failures,
                exc,
                delay,
            )
            if self.cfg.auth.exit_on_err or (
                self.cfg.template_config.exit_on_retry_failure
                and (isinstance(exc, TransientError) or self._login_failures > self.max_retries)
            ):
                # auto_auth.method.exit_on_err: Vault Agent exits on the first failure.
                log.error("giving up on login (exit_on_err / exit_on_retry_failure)")
                self.exit_code = exc.exit_code
            self._write_status("login-failed")
            return
        self._need_login = False
        self._login_failures = 0
        self._renew_failures = 0
        self._learn(info if info is not None else self.store.token_info)

    def _login_backoff(self, retry_after: float | None) -> float:
        # auto_auth.method min_backoff/max_backoff, Vault Agent's 1s .. 5m by default.
        return backoff(
            self._login_failures,
            base=self.cfg.auth.min_backoff,
            cap=self.cfg.auth.max_backoff,
            rng=self.rng,
            retry_after=retry_after,
        )

    def _learn(self, info: TokenInfo | None) -> None:
        """Schedule renewal at 2/3 TTL and re-login at 80-90 % of a lease that cannot grow."""
        self._renew_at = self._relogin_at = self._expires_at = None
        if info is None or info.ttl is None or info.ttl <= 0:
            return  # no expiry (root, mtls, bearer): nothing to schedule
        self._expires_at = info.learned_at + info.ttl
        if info.renewable:
            self._renew_at = info.learned_at + info.ttl * 2 / 3
        # Vault's LifetimeWatcher lets 80-90 % of a lease elapse before giving up on it;
        # for a renewable token this is only a backstop should renewals keep failing.
        self._relogin_at = info.learned_at + info.ttl * self.rng.uniform(0.8, 0.9)

    def _renew(self, now: float) -> None:
        old_expiry = self._expires_at
        try:
            info = self.store.renew()
        except TransientError as exc:
            if self.stop.is_set():
                return
            self._renew_failures += 1
            remaining = (self._expires_at or now) - now
            delay = backoff(
                self._renew_failures, base=1.0, cap=max(1.0, remaining / 3), rng=self.rng
            )
            self._renew_at = now + delay
            log.warning("token renewal failed: %s; retrying in %.1fs", exc, delay)
            return
        except Kv2RenderError as exc:
            log.warning("token renewal refused: %s; logging in again", exc)
            self._schedule_login(now)
            return
        self._renew_failures = 0
        if info.ttl is not None and info.ttl > 0 and old_expiry is not None:
            new_expiry = info.learned_at + info.ttl
            if new_expiry <= old_expiry + min(1.0, info.ttl / 2):
                # The max TTL caps the token: renewal no longer buys time (issue 5).
                log.info("token renewal no longer extends its lifetime; logging in again")
                self._schedule_login(now)
                return
        self._learn(info)

    def _credential_files(self) -> tuple[Path, ...]:
        try:
            return tuple(self.store.authenticator.credential_files())
        except Kv2RenderError:
            return ()

    def _credential_signature(self) -> tuple[Any, ...]:
        """stat() facts of each credential file: a change means new credentials (never content)."""
        out: list[Any] = []
        for path in self._credential_files():
            try:
                st = os.stat(path)
            except OSError:
                out.append((str(path), None))
            else:
                out.append((str(path), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
        return tuple(out)

    def check_credentials(self) -> bool:
        """Schedule a login when a credential file changed since the last one (issue 5).

        A file that disappeared is no new credential: approle removes its secret_id file
        after reading it (remove_secret_id_file_after_reading), and an operator may clean a
        token file up. Only a file that exists and differs means new credentials.
        """
        if self._need_login:
            return False
        before = {entry[0]: entry for entry in self._cred_signature}
        changed = [
            entry
            for entry in self._credential_signature()
            if entry[1] is not None and before.get(entry[0]) != entry
        ]
        if not changed:
            return False
        log.info("a credential file changed; logging in again")
        self._schedule_login(self.clock())
        return True

    # -- one pass ---------------------------------------------------------------------------

    def _locations(self) -> set[SecretLocation]:
        return {loc for t in self.templates for loc in t.item.locations}

    def _pass(self, now: float) -> None:
        due_templates = [
            t for t in self.templates if t.dirty or (t.error is not None and t.retry_at <= now)
        ]
        latest = {loc for loc in self._locations() if loc.version is None}
        need = {loc for loc in latest if self._due.get(loc, now) <= now}
        for t in due_templates:
            # Pinned versions never change: read once and cached (issue 5).
            need |= {
                loc for loc in t.item.locations if loc.version is None or loc not in self._cache
            }
        if not need and not due_templates:
            return
        # Each secret's next poll counts from when this pass started, not from when its reads
        # finished, so the interval holds whatever a pass costs (KV2-INV-165: no drift).
        started = now
        fetched = runner.read_secrets(
            self.store, need, concurrency=self.cfg.template_config.concurrency
        )
        if self.stop.is_set():
            return  # requests were cut short by the stop: no verdict on them
        now = self.clock()
        changed, errors = self._absorb(fetched, now, started)
        if any(isinstance(e, AuthError) for e in errors.values()):
            # The store already tried a fresh login on 403; an AuthError means logins fail.
            self._login_failures += 1
            self._need_login = True
            self._login_at = now + self._login_backoff(None)
        ok = fetched.keys() - errors.keys()
        todo = [
            t
            for t in self.templates
            if t in due_templates
            or t.item.locations & (changed | errors.keys())
            # A failed template whose secrets all read fine again recovers at this poll,
            # not at the end of its backoff (KV2-INV-162).
            or (t.error is not None and t.item.locations & ok and self._readable(t, ok))
        ]
        self._render(todo, errors, now)
        self.passes += 1
        unchanged = len(fetched) - len(changed) - len(errors)
        log.debug(
            "poll: %s read, %s, %d unchanged, %d failed",
            count(len(fetched), "secret"),
            count(len(changed), "new version"),
            unchanged,
            len(errors),
        )
        self._after_pass()

    def _readable(self, t: _Template, ok: set[SecretLocation]) -> bool:
        return all(
            loc in ok or (loc.version is not None and loc in self._cache)
            for loc in t.item.locations
        )

    def _absorb(
        self,
        fetched: Mapping[SecretLocation, SecretVersion | Kv2RenderError],
        now: float,
        started: float,
    ) -> tuple[set[SecretLocation], dict[SecretLocation, Kv2RenderError]]:
        changed: set[SecretLocation] = set()
        errors: dict[SecretLocation, Kv2RenderError] = {}
        for loc, got in fetched.items():
            if loc.version is None:
                self._schedule(loc, started, now)
            if isinstance(got, Kv2RenderError):
                errors[loc] = got
                continue
            old = self._cache.get(loc)
            if old is not None and loc.version is None and got.version < old.version:
                # issue 10: a version going backwards is refused; the last good file stays.
                errors[loc] = BadResponseError(
                    f"the server reported version {got.version} after version {old.version}",
                    where=str(loc),
                    hint="if the secret was deleted and re-created, reload kv2render (SIGHUP)",
                )
                continue
            if old is None or old.version != got.version:
                changed.add(loc)
                if old is not None:
                    log.info("%s: new version %d (was %d)", loc, got.version, old.version)
            self._cache[loc] = got
        return changed, errors

    def _schedule(self, loc: SecretLocation, base: float, now: float) -> None:
        """Next poll of ``loc`` at ``base`` (when this pass started) + interval +-10 %,
        joining another secret's poll when that time is also in range: secrets read together
        stay together (one wake-up, not N). A pass that overran the interval polls again at
        once rather than in a burst of catch-up polls."""
        interval = self._loc_interval(loc)
        low, high = base + 0.9 * interval, base + 1.1 * interval
        for other, when in self._due.items():
            if other != loc and low <= when <= high and self._loc_interval(other) == interval:
                self._due[loc] = max(when, now)
                return
        self._due[loc] = max(base + self._jitter(interval), now)

    def _render(
        self, todo: list[_Template], errors: Mapping[SecretLocation, Kv2RenderError], now: float
    ) -> None:
        results: list[tuple[_Template, RenderResult]] = []
        ready = [t for t in todo if not any(loc in errors for loc in t.item.locations)]
        rendered = dict(zip(map(id, ready), self._render_ready(ready), strict=True))
        for t in todo:
            spec = t.item.spec
            failed = [errors[loc] for loc in sorted(t.item.locations) if loc in errors]
            if failed:
                result = RenderResult(spec, versions=dict(t.versions), error=failed[0])
            else:
                result = rendered[id(t)]
            runner.log_result(result)
            self._record(t, result, now)
            results.append((t, result))
            if self.exit_code is not None:
                return
        written = [r for _, r in results if r.did_write]
        if written:
            by_index = {t.item.spec.index: t for t, _ in results}
            # Commands run after every write of the pass, once per change; a failure is
            # reported and triggers nothing else (hashicorp/vault#12566).
            for command in self._run_commands(written):
                for index in command.templates:
                    if index in by_index:
                        by_index[index].command_error = command.error

    def _commands(self, written: Sequence[RenderResult]) -> tuple[CommandResult, ...]:
        # The values this daemon holds are redacted from the commands' output (KV2-INV-397).
        return runner.run_changed_commands(written, tuple(self._cache.values()))

    def _render_ready(self, ready: list[_Template]) -> list[RenderResult]:
        """Render and write concurrently (runner.render_all); a crash is one template's."""
        jobs = [(t.item, {loc: self._cache[loc] for loc in t.item.locations}) for t in ready]
        return runner.render_all(
            jobs, concurrency=self.cfg.template_config.concurrency, write=self._write
        )

    def _record(self, t: _Template, result: RenderResult, now: float) -> None:
        t.dirty = False
        if result.error is None:
            t.versions = dict(result.versions)
            t.error = None
            t.failures = 0
            t.last_render = self.wall()
            if result.did_write:
                t.last_write = t.last_render
                t.command_error = None
            return
        err = result.error
        t.error = err
        t.failures += 1
        if self.cfg.template_config.exit_on_retry_failure:
            # KV2-FC-161: the store already spent vault.retry.num_retries on the reads;
            # init-container style deployments want a non-zero exit now, not a hang.
            log.error("%s: exit_on_retry_failure is set: exiting", t.spec_where)
            self.exit_code = err.exit_code
            return
        if isinstance(err, AccessDeniedError):
            # KV2-FC-163: denied after the store's fresh login is a real denial; look
            # again at the next poll only, never in a login loop.
            delay = self._jitter(self._interval(t))
        else:
            delay = backoff(
                t.failures,
                base=TEMPLATE_BACKOFF[0],
                cap=TEMPLATE_BACKOFF[1],
                rng=self.rng,
                retry_after=err.retry_after,
            )
        t.retry_at = now + delay

    def _after_pass(self) -> None:
        ok = sum(1 for t in self.templates if t.error is None and t.last_render is not None)
        failed = sum(1 for t in self.templates if t.error is not None)
        self._state = "running" if failed == 0 else "degraded"
        line = f"{count(len(self.templates), 'template')}: {ok} rendered, {failed} failing"
        failed_commands = sum(1 for t in self.templates if t.command_error is not None)
        if failed_commands:
            # KV2-INV-399: a failing command shows in the summary as in the status file.
            line += f"; {count(failed_commands, 'command')} failed"
        if not self.ready and ok == len(self.templates):
            # READY=1 after the first complete render: units ordered After= us find files.
            self.ready = True
            self.notifier.ready(line)
            log.info("%s rendered; ready", count(len(self.templates), "template"))
        elif line != self._last_status_line:
            self.notifier.status(line)
        self._last_status_line = line
        self._write_status(self._state)

    # -- status ---------------------------------------------------------------------------

    def template_status(self) -> list[TemplateStatus]:
        out = []
        for t in self.templates:
            versions: dict[SecretLocation, int | None] = {loc: None for loc in t.item.locations}
            versions.update(t.versions)
            err = t.error or t.source_error or t.command_error
            out.append(
                TemplateStatus(
                    where=t.spec_where,
                    destination=t.item.spec.destination,
                    source=t.item.spec.source,
                    versions=versions,
                    last_render=t.last_render,
                    last_write=t.last_write,
                    last_error=None if err is None else str(err),
                )
            )
        return out

    def _token_status(self) -> dict[str, Any] | None:
        if self._need_login:
            return {"auth": self.cfg.auth.type, "logged_in": False}
        info: dict[str, Any] = {"auth": self.cfg.auth.type, "logged_in": True}
        if self._expires_at is not None:
            info["expires_in"] = round(max(0.0, self._expires_at - self.clock()), 1)
        info["renewable"] = self._renew_at is not None
        return info

    def _write_status(self, state: str) -> None:
        doc = document(
            self.template_status(),
            started=self._started,
            now=self.wall(),
            ready=self.ready,
            state=state,
            token=self._token_status(),
        )
        self.status_file.write(doc)

    # -- files and reload -------------------------------------------------------------------

    def watched_files(self) -> frozenset[Path]:
        files = {t.item.spec.source for t in self.templates if t.item.spec.source is not None}
        if self.config_path is not None:
            files.add(self.config_path)
        files.update(self._credential_files())
        return frozenset(Path(os.path.abspath(f)) for f in files if f is not None)

    def _watch(self) -> None:
        if self._on_watch is not None:
            self._on_watch(self.watched_files())

    def _files_changed(self, paths: frozenset[str]) -> None:
        changed = {os.path.normpath(p) for p in paths}
        for p in list(changed):
            if os.path.basename(p) == "..data":
                # Kubernetes ConfigMap/Secret volumes swap a '..data' symlink: every file
                # in that directory may have changed at once.
                folder = os.path.dirname(p)
                changed |= {str(f) for f in self.watched_files() if str(f.parent) == folder}
        if self.config_path is not None and str(self.config_path) in changed:
            if self.config_path.exists():  # absent for an instant during a rename-over save
                self.reload("config file changed", only_if_different=True)
            return
        for t in self.templates:
            source = t.item.spec.source
            if source is not None and os.path.normpath(source) in changed:
                self._reprepare(t)
        if any(os.path.normpath(f) in changed for f in self._credential_files()):
            self.check_credentials()

    def _reprepare(self, t: _Template) -> None:
        spec = t.item.spec
        if spec.source is not None and not spec.source.exists():
            # Editors that save by rename remove the file for an instant; the next event
            # brings it back. Until then the previous version stays in use.
            log.debug(
                "%s: source %s is gone for now; keeping the previous version",
                spec.where,
                spec.source,
            )
            return
        try:
            item = self._prepare_one(
                spec,
                max_output_bytes=self.cfg.template_config.max_output_bytes,
                render_timeout=self.cfg.template_config.render_timeout,
            )
        except Kv2RenderError as exc:
            t.source_error = exc
            log.error(
                "%s: edited source refused, the previous version stays in use: %s", spec.where, exc
            )
            self._write_status(self._state)
            return
        log.info("%s: source %s changed; re-rendering", spec.where, spec.source)
        t.item = item
        t.source_error = None
        t.dirty = True

    def reload(self, reason: str, *, only_if_different: bool = False) -> bool:
        """Load and prepare the config again; on any error the running config stays."""
        if self._reload_config is None:
            log.warning("%s: no config file to reload", reason)
            return False
        try:
            new = self._reload_config()
            if only_if_different and new == self.cfg:
                log.debug("%s: config unchanged", reason)
                return False
            prepared = self._prepare(new)
        except Kv2RenderError as exc:
            log.error("%s: new config refused, the running config stays in force: %s", reason, exc)
            self._write_status(self._state)
            return False
        old = self.cfg
        self.cfg = new
        if (new.vault, new.auth) != (old.vault, old.auth):
            log.info("%s: server or auth settings changed; reconnecting", reason)
            self.close()
            self._cache.clear()
            self.store = self._store_factory(new)
            self._login_failures = 0
            self._schedule_login(self.clock())
        else:
            # Latest-version entries are re-read anyway; forgetting them accepts a
            # version that went backwards after a delete and re-create.
            self._cache = {loc: v for loc, v in self._cache.items() if loc.version is not None}
        if new.status_file != old.status_file:
            self.status_file = StatusFile(new.status_file)
        self.templates = [_Template(item) for item in prepared]
        self._due = {loc: t for loc, t in self._due.items() if loc in self._locations()}
        log.info("%s: config reloaded (%s)", reason, count(len(self.templates), "template"))
        self.notifier.status(f"config reloaded ({reason})")
        self._watch()
        return True
