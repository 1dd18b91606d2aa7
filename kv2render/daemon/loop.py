"""The daemon: ticks (poll timer + watched files), backoff, reload, stop; one pass at a time.

    service.run(cfg) runs this in a worker thread (signals, watchfiles, sd_notify there):
      Daemon.run()
            loop: step() -> wait(next deadline) on the TickSource -> handle(events)
            step: TokenLifecycle.step (login / renew / re-login when due, token.py), then
                  one pass over what is due: read due secrets -> compare metadata.version
                  -> render changed templates -> commands -> status file

:class:`Daemon` is the poll loop and takes its clock, tick source and stop event as
arguments (STYLE.md convention 7): unit tests script the ticks and drive a fake clock with
no sleeps. Its seams live beside it: ``token.py`` the token lifecycle, ``polling.py`` the
rules of a poll (new versions, next read, retry delay), ``templates.py`` each template's
state, ``status_doc.py`` the status file and systemd's lines, ``reload.py`` config reload
and source edits, ``ticks.py`` what wakes the loop, ``ports.py`` the store protocol and the
hooks.
:mod:`kv2render.daemon.service` wires it to the real world.

Departures from Vault Agent, each a known complaint (reference/vault-agent.md):
only templates whose secrets got a new ``metadata.version`` re-render (§3.3);
a new token does not re-fetch every secret (§5.1); a failed command does not
restart the runner (§2.5, hashicorp/vault#12566); SIGHUP and config edits
reload templates too (§6).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from kv2render import runner
from kv2render.config import Config
from kv2render.daemon import listing, polling
from kv2render.daemon import reload as reloading
from kv2render.daemon.listing import FolderLister
from kv2render.daemon.metrics import NullRecorder
from kv2render.daemon.notify import Notifier
from kv2render.daemon.polling import Fetched
from kv2render.daemon.ports import DaemonHooks, DaemonStore
from kv2render.daemon.status_doc import StatusReport
from kv2render.daemon.templates import TemplateState
from kv2render.daemon.ticks import FilesChanged, ReloadRequested, TickEvent, TickSource
from kv2render.daemon.token import TokenLifecycle
from kv2render.errors import AuthError, Kv2RenderError
from kv2render.logsetup import count
from kv2render.model import SecretVersion
from kv2render.output.status import StatusFile
from kv2render.refs import SecretLocation
from kv2render.runner import CommandResult, PreparedTemplate, RenderResult

log = logging.getLogger(__name__)

MAX_WAIT = 3600.0  # an idle daemon still wakes hourly (cheap; keeps clocks honest)
STOP_GRACE = 4.0  # SIGTERM -> exit within 5 s even when the worker is stuck


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
        hooks: DaemonHooks | None = None,
    ) -> None:
        hooks = hooks or DaemonHooks()
        self._hook = hooks.pass_hook
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
        self._write = hooks.write
        self._run_commands = hooks.run_commands or self._commands
        self._on_watch = hooks.on_watch
        # Issue 17: a no-op unless the metrics listener is on (KV2-NFR-420).
        self.metrics = hooks.metrics if hooks.metrics is not None else NullRecorder()
        self.report = StatusReport(
            hooks.status_file if hooks.status_file is not None else StatusFile(cfg.status_file),
            hooks.notifier or Notifier({}),
            self.metrics,
            started=wall(),
        )
        self._last_poll_ok: float | None = None
        self.exit_code: int | None = None
        self.passes = 0
        # secrets
        self._cache: dict[SecretLocation, SecretVersion] = {}
        self._read_at: dict[SecretLocation, float] = {}  # the last pass that read it (INV-505)
        self._due: dict[SecretLocation, float] = {}
        self.store: DaemonStore = store_factory(cfg)
        # Issue 18: one folder listing instead of a read per unchanged secret (KV2-INV-500).
        self.lister = FolderLister(on_listing=self.metrics.listing)
        self.token = TokenLifecycle(
            cfg, self.store, clock=clock, wall=wall, rng=self.rng, stop=stop, metrics=self.metrics
        )
        self.templates = [TemplateState(item) for item in prepare(cfg)]

    # -- settings ---------------------------------------------------------------------------

    def _interval(self, t: TemplateState) -> float:
        own = t.item.spec.render_interval
        return own if own else self.cfg.template_config.static_secret_render_interval

    def _loc_interval(self, loc: SecretLocation) -> float:
        default = self.cfg.template_config.static_secret_render_interval
        return min(
            (self._interval(t) for t in self.templates if loc in t.locations), default=default
        )

    def _jitter(self, interval: float) -> float:
        # issue 5: +-10 % so that many hosts do not poll in step (Vault Agent: 85-95 %).
        return interval * self.rng.uniform(0.9, 1.1)

    # -- main loop ------------------------------------------------------------------------

    def run(self) -> int:
        """Loop until the stop event is set (0) or retries are exhausted (the error's code)."""
        # Issue 17: replace a previous run's report at once; `status` says "not ready yet".
        self._write_status("starting")
        self.metrics.tick(self.wall(), 0.0)  # alive from the start (a first login may hang)
        self._watch()
        while not self.stop.is_set():
            self.step()
            if self.exit_code is not None:
                self._write_status("exited")
                return self.exit_code
            if self.stop.is_set():
                break
            timeout = min(MAX_WAIT, max(0.0, self.next_wakeup() - self.clock()))
            self.metrics.tick(self.wall(), timeout)
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
            if self.token.step(now):
                self._login_failed()
            if self.exit_code is None and not self.token.need_login and not self.stop.is_set():
                self._pass(self.clock())
        except Kv2RenderError as exc:  # not expected here; keep serving, say where
            log.error("daemon step failed: %s", exc)
            self._pause_all(self.clock())
        except Exception as exc:  # a bug must not end months of service; never print values
            log.critical("internal error %s in the render loop; retrying", type(exc).__name__)
            log.debug("internal error detail", exc_info=True)
            self._pause_all(self.clock())

    def _login_failed(self) -> None:
        self.report.state = "login-failed"
        if self.token.exit_code is not None:
            self.exit_code = self.token.exit_code
        self._write_status("login-failed")

    def _pause_all(self, now: float) -> None:
        for t in self.templates:
            t.dirty = False
            t.retry_at = now + 1.0
            if t.error is None:
                t.error = Kv2RenderError("internal error in the render loop")

    def next_wakeup(self) -> float:
        now = self.clock()
        if self.token.need_login:
            return self.token.login_at
        if any(t.dirty for t in self.templates):
            return now
        candidates = [self._due[loc] for loc in self._locations() if loc in self._due]
        candidates += [t.retry_at for t in self.templates if t.error is not None]
        candidates += self.token.deadlines()
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

    # -- one pass ---------------------------------------------------------------------------

    def _locations(self) -> set[SecretLocation]:
        hooked = self._hook.locations if self._hook is not None else frozenset()
        return {loc for t in self.templates for loc in t.locations} | hooked

    def _pass(self, now: float) -> None:
        due_templates = [
            t for t in self.templates if t.dirty or (t.error is not None and t.retry_at <= now)
        ]
        latest = {loc for loc in self._locations() if loc.version is None}
        need = {loc for loc in latest if self._due.get(loc, now) <= now}
        for t in due_templates:
            # Pinned versions never change: read once and cached (issue 5).
            need |= {loc for loc in t.locations if loc.version is None or loc not in self._cache}
        if self._hook is not None:  # pinned versions are read once, as for templates
            need |= {loc for loc in self._hook.locations if loc not in self._cache}
        if not need and not due_templates:
            if not latest and self._last_poll_ok is None:
                self._last_poll_ok = self.wall()  # pinned only: nothing can go stale
            return
        # Each secret's next poll counts from when this pass started, not from when its reads
        # finished, so the interval holds whatever a pass costs (KV2-INV-172: no drift).
        started = now
        same = self._listed_unchanged(need, due_templates, now)
        fetched = runner.read_secrets(
            self.store, need - same, concurrency=self.cfg.template_config.concurrency
        )
        if self.stop.is_set():
            return  # requests were cut short by the stop: no verdict on them
        now = self.clock()
        self.lister.after_reads(fetched, now, self.store)
        for loc in same:  # a listing is the poll of every secret it showed unchanged
            self._due[loc] = self._next_poll(loc, now, started)
        changed, errors = self._absorb(fetched, now, started)
        self.metrics.reads(fetched)
        if not errors:
            self._last_poll_ok = self.wall()
        self.metrics.poll(now - started, not errors, self.wall())
        if any(isinstance(e, AuthError) for e in errors.values()):
            # The store already tried a fresh login on 403; an AuthError means logins fail.
            self.token.login_lost(now)
        ok = fetched.keys() - errors.keys()
        todo = [
            t
            for t in self.templates
            if t in due_templates
            or t.locations & (changed | errors.keys())
            # A failed template whose secrets all read fine again recovers at this poll,
            # not at the end of its backoff (KV2-INV-162).
            or (t.error is not None and t.locations & ok and self._readable(t, ok))
        ]
        self._render(todo, errors, now, started)
        if self._hook is not None:
            self._hook.after_pass(self._cache, errors)
        self.passes += 1
        unchanged = len(fetched) - len(changed) - len(errors)
        log.debug(
            "poll: %s read, %s, %d unchanged, %d failed, %d unchanged by listing",
            count(len(fetched), "secret"),
            count(len(changed), "new version"),
            unchanged,
            len(errors),
            len(same),
        )
        self._after_pass()

    def _listed_unchanged(
        self, need: set[SecretLocation], due_templates: list[TemplateState], now: float
    ) -> set[SecretLocation]:
        """The due secrets a folder listing shows unchanged: no read (KV2-INV-500). Only
        cached latest versions that are due by time; a template that renders this pass or
        is failing reads all its secrets, exactly as in read mode (KV2-INV-162)."""
        if self.cfg.template_config.change_detection != "auto":
            return set()
        busy = {loc for t in self.templates if t.error is not None for loc in t.locations}
        busy |= {loc for t in due_templates for loc in t.locations}
        stale = now - listing.REREAD  # read at least hourly whatever listings say (KV2-INV-505)
        due = {
            loc
            for loc in need
            if loc.version is None
            and loc in self._cache
            and loc in self._due
            and loc not in busy
            and self._read_at.get(loc, stale) > stale
        }
        return self.lister.unchanged(self.store, due, self._cache, now) if due else set()

    def _next_poll(self, loc: SecretLocation, now: float, started: float) -> float:
        return polling.next_poll(
            self._due,
            loc,
            base=started,
            now=now,
            interval_of=self._loc_interval,
            jitter=self._jitter,
        )

    def _readable(self, t: TemplateState, ok: set[SecretLocation]) -> bool:
        return all(
            loc in ok or (loc.version is not None and loc in self._cache) for loc in t.locations
        )

    def _absorb(self, fetched: Fetched, now: float, started: float) -> polling.Outcome:
        for loc, got in fetched.items():
            if loc.version is None:
                self._due[loc] = self._next_poll(loc, now, started)
                if isinstance(got, SecretVersion):
                    self._read_at[loc] = started
        return polling.absorb(self._cache, fetched)

    def _render(
        self,
        todo: list[TemplateState],
        errors: Mapping[SecretLocation, Kv2RenderError],
        now: float,
        started: float,
    ) -> None:
        results: list[tuple[TemplateState, RenderResult]] = []
        ready = [t for t in todo if not any(loc in errors for loc in t.locations)]
        rendered = dict(zip(map(id, ready), self._render_ready(ready, started), strict=True))
        for t in todo:
            spec = t.item.spec
            failed = [errors[loc] for loc in sorted(t.locations) if loc in errors]
            if failed:
                result = RenderResult(spec, versions=dict(t.versions), error=failed[0])
            else:
                result = rendered[id(t)]
            runner.log_result(result)
            self._record(t, result, now)
            self.metrics.render(result, self.wall())
            results.append((t, result))
            if self.exit_code is not None:
                return
        written = [r for _, r in results if r.did_write]
        if written:
            by_index = {t.item.spec.index: t for t, _ in results}
            # Commands run after every write of the pass, once per change; a failure is
            # reported and triggers nothing else (hashicorp/vault#12566).
            commands = self._run_commands(written)
            self.metrics.commands(commands)
            for command in commands:
                for index in command.templates:
                    if index in by_index:
                        by_index[index].command_error = command.error

    def _commands(self, written: Sequence[RenderResult]) -> tuple[CommandResult, ...]:
        # The values this daemon holds are redacted from the commands' output (KV2-INV-397).
        return runner.run_changed_commands(written, tuple(self._cache.values()))

    def _render_ready(self, ready: list[TemplateState], started: float) -> list[RenderResult]:
        """Render and write concurrently (runner.render_rounds); a crash is one template's.

        A template with computed secret paths sees the whole cache; the secrets its render
        finds missing are read (each once for all templates, KV2-INV-390), cached and
        scheduled for polling like any other.
        """
        concurrency = self.cfg.template_config.concurrency

        def discover(locations: set[SecretLocation]) -> runner.Secrets:
            fetched = runner.read_secrets(self.store, locations, concurrency=concurrency)
            self._absorb(fetched, self.clock(), started)
            return fetched

        jobs: list[tuple[PreparedTemplate, runner.Secrets]] = [
            (
                t.item,
                self._cache
                if t.item.dynamic
                else {loc: self._cache[loc] for loc in t.item.locations},
            )
            for t in ready
        ]
        return runner.render_rounds(jobs, discover, concurrency=concurrency, write=self._write)

    def _record(self, t: TemplateState, result: RenderResult, now: float) -> None:
        if result.error is None:
            t.succeeded(result, self.wall())
            return
        err = t.failed(result.error)
        if self.cfg.template_config.exit_on_retry_failure:
            # KV2-FC-161: the store already spent vault.retry.num_retries on the reads;
            # init-container style deployments want a non-zero exit now, not a hang.
            log.error("%s: exit_on_retry_failure is set: exiting", t.spec_where)
            self.exit_code = err.exit_code
            return
        t.retry_at = now + polling.retry_delay(
            err, t.failures, next_poll=lambda: self._jitter(self._interval(t)), rng=self.rng
        )

    def _after_pass(self) -> None:
        self.report.after_pass(self.templates)
        self._write_status(self.report.state)

    # -- status ---------------------------------------------------------------------------

    def _write_status(self, state: str) -> None:
        self.report.write(
            state,
            self.templates,
            token=self.token.status(),
            now=self.wall(),
            last_successful_poll=self._last_poll_ok,
        )

    # -- files and reload (the decisions: reload.py) ---------------------------------------

    def watched_files(self) -> frozenset[Path]:
        return reloading.watched_files(
            self.templates, self.config_path, self.token.credential_files()
        )

    def _watch(self) -> None:
        if self._on_watch is not None:
            self._on_watch(self.watched_files())

    def _files_changed(self, paths: frozenset[str]) -> None:
        changed = reloading.expand_changed(paths, self.watched_files)
        if self.config_path is not None and str(self.config_path) in changed:
            if self.config_path.exists():  # absent for an instant during a rename-over save
                self.reload("config file changed", only_if_different=True)
            return
        for t in self.templates:
            source = t.item.spec.source
            if source is not None and os.path.normpath(source) in changed:
                if not reloading.reprepare(t, self.cfg, self._prepare_one):
                    self._write_status(self.report.state)
        if any(os.path.normpath(f) in changed for f in self.token.credential_files()):
            self.token.check_credentials()

    def reload(self, reason: str, *, only_if_different: bool = False) -> bool:
        """Load and prepare the config again; on any error the running config stays."""
        if self._reload_config is None:
            log.warning("%s: no config file to reload", reason)
            return False
        try:
            loaded = reloading.load_new(
                reason,
                self.cfg,
                self._reload_config,
                self._prepare,
                only_if_different=only_if_different,
            )
        except reloading.Refused:
            self._write_status(self.report.state)
            return False
        if loaded is None:
            return False
        new, prepared = loaded
        old = self.cfg
        self.cfg = self.token.cfg = new
        # A changed sink too (KV2-INV-490): the new store's login writes the new sink.
        if (new.vault, new.auth, new.sinks) != (old.vault, old.auth, old.sinks):
            log.info("%s: server or auth settings changed; reconnecting", reason)
            self.close()
            self._cache.clear()
            self.store = self._store_factory(new)
            self.token.reconnect(self.store, self.clock())
        else:
            # Latest-version entries are re-read anyway; forgetting them accepts a
            # version that went backwards after a delete and re-create.
            self._cache = {loc: v for loc, v in self._cache.items() if loc.version is not None}
        if new.status_file != old.status_file:
            self.report.status_file = StatusFile(new.status_file)
        self.templates = [TemplateState(item) for item in prepared]
        self._due = {loc: t for loc, t in self._due.items() if loc in self._locations()}
        self._read_at = {loc: t for loc, t in self._read_at.items() if loc in self._due}
        self.lister.reset()  # KV2-INV-501: a reload probes every folder's listing again
        log.info("%s: config reloaded (%s)", reason, count(len(self.templates), "template"))
        self.report.notifier.status(f"config reloaded ({reason})")
        self._watch()
        return True
