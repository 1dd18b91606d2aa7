"""The daemon process: signals, file watching, systemd notify, lock and pid files.

:func:`run` wires :class:`kv2render.daemon.loop.Daemon` (the loop itself, which takes its
clock, ticks and stop event as arguments) to the real world:

    main thread: signals -> wakeup fd -> select()   SIGTERM/SIGINT: stop; SIGHUP: reload
                 sd_notify watchdog pings
    Watcher thread (watchfiles)                      template sources, config, credential files
    worker thread: Daemon.run()                      the passes

The passes run in a worker thread so that the main thread can answer SIGTERM within
5 seconds even while a request to the server hangs (KV2-AC-176).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kv2render.config import Config
from kv2render.daemon.loop import STOP_GRACE, Daemon
from kv2render.daemon.metrics import HEALTH_GRACE
from kv2render.daemon.notify import Notifier
from kv2render.daemon.ports import DaemonHooks
from kv2render.daemon.ticks import FilesChanged, QueueTicks, ReloadRequested, TickEvent

if TYPE_CHECKING:
    from kv2render.daemon.supervisor import Supervisor

log = logging.getLogger(__name__)

# The longest the watcher waits for the first pass to end before it watches anyway.
START_WAIT = 5.0


def _signatures(files: Iterable[str]) -> dict[str, tuple[int, ...]]:
    """stat() facts of each file (never its content), to tell whether it changed."""
    out: dict[str, tuple[int, ...]] = {}
    for name in files:
        try:
            st = os.stat(name)
        except OSError:
            continue
        out[name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return out


class Watcher:
    """Watches the parent directories of the given files with watchfiles, in a thread.

    Parent directories, not the files: an editor that saves by renaming a new file
    over the old one replaces the inode a file watch would follow (issue 5). Only
    the given paths pass the filter (plus Kubernetes' ``..data`` swaps), so other
    files in those directories (logs, the status file) cost nothing and log nothing.
    """

    def __init__(
        self, emit: Callable[[TickEvent], None], *, start_after: threading.Event | None = None
    ) -> None:
        self._emit = emit
        # KV2-NFR-241: importing watchfiles and setting up the OS watch (~25 ms of CPU)
        # waits until the first pass is over (``start_after``, at most START_WAIT s), so the
        # first render does not share the interpreter with it. The files' state is taken
        # when update() is called, so an edit made meanwhile is still seen (see _watch).
        self._start_after = start_after
        self._dirs: tuple[str, ...] = ()
        self._files: frozenset[str] = frozenset()
        self._stop: threading.Event | None = None
        self._thread: threading.Thread | None = None

    def wanted(self, _change: Any, path: str) -> bool:
        norm = os.path.normpath(path)
        return norm in self._files or os.path.basename(norm) == "..data"

    def update(self, files: Iterable[Path]) -> None:
        paths = [Path(os.path.abspath(f)) for f in files]
        self._files = frozenset(os.path.normpath(p) for p in paths)
        dirs = tuple(sorted({str(p.parent) for p in paths if p.parent.is_dir()}))
        if dirs == self._dirs:
            return
        self._stop_thread()
        self._dirs = dirs
        if not dirs:
            return
        stop = threading.Event()
        before = _signatures(self._files)
        thread = threading.Thread(
            target=self._watch, args=(dirs, stop, before), name="kv2render-watch", daemon=True
        )
        self._stop, self._thread = stop, thread
        thread.start()

    def _watch(
        self, dirs: tuple[str, ...], stop: threading.Event, before: dict[str, tuple[int, ...]]
    ) -> None:
        try:
            if not self._first_pass_over(stop):
                return
            from watchfiles import watch

            settled = False
            for changes in watch(
                *dirs,
                watch_filter=self.wanted,
                debounce=400,
                step=200,  # also how often the stop event is checked: idle cost (KV2-NFR-232)
                rust_timeout=500,
                yield_on_timeout=True,
                stop_event=stop,
                recursive=False,
                raise_interrupt=False,
            ):
                paths = frozenset(os.path.normpath(path) for _, path in changes)
                if not settled:
                    # The OS watch exists from the first yield on; an edit made while it was
                    # being set up was missed, so compare the files with their state when
                    # watching was asked for (a test saw an edit land in that window).
                    settled = True
                    now = _signatures(self._files)
                    paths |= {p for p in self._files if now.get(p) != before.get(p)}
                if paths:
                    self._emit(FilesChanged(paths))
        except Exception as exc:
            log.error(
                "file watching stopped (%s): edits are picked up on SIGHUP only",
                type(exc).__name__,
            )

    def _first_pass_over(self, stop: threading.Event) -> bool:
        """Wait for ``start_after`` (at most START_WAIT s); False when stopped meanwhile."""
        if self._start_after is not None:
            deadline = time.monotonic() + START_WAIT
            while not self._start_after.is_set() and time.monotonic() < deadline:
                if stop.wait(0.02):
                    break
        return not stop.is_set()

    def _stop_thread(self) -> None:
        if self._stop is not None:
            self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self._stop = self._thread = None
        self._dirs = ()

    def close(self) -> None:
        self._stop_thread()


def run(
    cfg: Config,
    *,
    config_path: str | os.PathLike[str] | None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """The daemon process: exit 0 on SIGTERM/SIGINT, the error's code when retries run out."""
    from kv2render import config as config_mod
    from kv2render.hardening import disable_core_dumps
    from kv2render.output.instance import instance_lock, remove_leftover_temp_files
    from kv2render.output.sink import token_writer
    from kv2render.output.status import PidFile
    from kv2render.store.client import open_store
    from kv2render.store.transport import warn_transport

    disable_core_dumps(env)  # KV2-INV-380: before the first login, so no token is ever dumped
    stop = threading.Event()
    ticks = QueueTicks()
    notifier = Notifier(env)
    warn_transport(cfg.vault)
    lock = instance_lock(cfg)
    lock.acquire()
    pid_file = PidFile(cfg.pid_file)
    watcher = Watcher(ticks.put, start_after=ticks.waiting)
    path = Path(os.path.abspath(config_path)) if config_path is not None else None

    def reload_config() -> Config:
        return config_mod.load(path, overrides=dict(overrides or {}))

    listener = None
    supervisor: Supervisor | None = None
    try:
        supervisor = _supervisor(cfg, env, stop, ticks)
        if supervisor is not None:
            # Process-supervisor mode: signals go to the child, so no SIGHUP or edit reloads
            # the config; a restart of kv2render applies a change (KV2-INV-475).
            path = None
        pid_file.write()  # a WriteError stops the start, as in Vault Agent
        if lock.held:
            remove_leftover_temp_files(cfg)
        recorder, listener = start_metrics(cfg)
        daemon = Daemon(
            cfg,
            # The one opener; the stop event ends a store's retry wait when the daemon stops.
            store_factory=lambda c: open_store(c, stop_event=stop, on_token=token_writer(c.sinks)),
            ticks=ticks,
            stop=stop,
            reload_config=reload_config if path is not None else None,
            config_path=path,
            hooks=DaemonHooks(
                notifier=notifier, on_watch=watcher.update, metrics=recorder, pass_hook=supervisor
            ),
        )
        code = supervise(
            daemon,
            ticks=ticks,
            stop=stop,
            notifier=notifier,
            forward=None if supervisor is None else supervisor.forward,
        )
        if supervisor is not None and supervisor.exit_code is not None:
            return supervisor.exit_code  # KV2-INV-478: the child's exit code is ours
        return code
    finally:
        if listener is not None:
            listener.close()
        if supervisor is not None:
            supervisor.close()
        watcher.close()
        lock.release()
        pid_file.remove()


def _supervisor(
    cfg: Config, env: Mapping[str, str] | None, stop: threading.Event, ticks: QueueTicks
) -> Supervisor | None:
    """The process supervisor when the config has an exec block; the child's exit stops
    the loop, and ``run`` then returns the child's code."""
    if cfg.exec is None:
        return None
    from kv2render.daemon.supervisor import Supervisor

    def child_exited(_code: int) -> None:
        stop.set()
        ticks.put(None)

    return Supervisor(
        cfg.exec,
        cfg.env_templates,
        base_env=os.environ if env is None else env,
        on_exit=child_exited,
        max_output_bytes=cfg.template_config.max_output_bytes,
        render_timeout=cfg.template_config.render_timeout,
        exit_on_failure=cfg.template_config.exit_on_retry_failure,
    )


def start_metrics(cfg: Config) -> tuple[Any, Any]:
    """The metrics recorder and its listener when ``metrics`` is configured, else (None,
    None): prometheus_client is imported only then (KV2-NFR-420). The address is read at
    start; a reload that changes it says so and keeps the running listener."""
    if cfg.metrics is None:
        return None, None
    from kv2render.daemon.health import HealthServer
    from kv2render.daemon.metrics import PrometheusRecorder

    # /readyz calls a template stale after 3 poll intervals without a successful poll,
    # the alert rule's threshold too (examples/observability).
    recorder = PrometheusRecorder(
        stale_after=3 * cfg.template_config.static_secret_render_interval,
        health_grace=health_grace(cfg),
    )
    return recorder, HealthServer(cfg.metrics, recorder).start()


def health_grace(cfg: Config) -> float:
    """How late the loop may be before /healthz fails: the longest one pass can take while
    the server is down, each request timing out and retried with the backoff capped at 60 s
    (KV2-INV-424). An outage is no reason for a liveness probe to restart kv2render."""
    retries = max(0, cfg.vault.num_retries)
    return max(HEALTH_GRACE, (retries + 1) * cfg.vault.timeout + retries * 60.0)


def _install_signals(fd: int, extra: tuple[int, ...] = ()) -> tuple[int | None, dict[int, Any]]:
    """Route SIGTERM/SIGINT/SIGHUP (and ``extra``) to ``fd``; (None, {}) outside the main
    thread."""
    import signal

    previous: dict[int, Any] = {}
    try:
        old = signal.set_wakeup_fd(fd, warn_on_full_buffer=False)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, *extra):
            previous[sig] = signal.signal(sig, lambda *_: None)
    except ValueError:  # not the main thread (an in-process test): no signal handling
        return None, {}
    return old, previous


def _restore_signals(old: int | None, previous: Mapping[int, Any]) -> None:
    import signal

    if old is None:
        return
    signal.set_wakeup_fd(old)
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def _wait_for_signal(
    worker: threading.Thread,
    wake: Any,
    ticks: QueueTicks,
    notifier: Notifier,
    clock: Callable[[], float],
    forward: Callable[[int], bool] | None = None,
) -> str | None:
    """Block until a stop signal ("SIGTERM"/"SIGINT") or the worker ends (None).

    With ``forward`` (process-supervisor mode), a signal goes to the child instead when
    one runs; the child's exit then ends the worker (KV2-INV-475)."""
    import select
    import signal

    interval = notifier.watchdog_interval
    next_ping = clock()
    while worker.is_alive():
        if interval is not None and clock() >= next_ping:
            # Pings come from here, so a worker stuck in a long request during an
            # outage is not killed by the watchdog; a dead worker ends the process.
            notifier.watchdog()
            next_ping = clock() + interval
        timeout = None if interval is None else max(0.0, next_ping - clock())
        readable, _, _ = select.select([wake], [], [], timeout)
        if not readable:
            continue
        try:
            data = wake.recv(64)
        except BlockingIOError:
            continue
        for number in data:
            if number == 0:
                # The loop's "done" byte (no signal is numbered 0), sent from its finally:
                # its thread may still be alive for an instant, and going back to select()
                # without a timeout would then wait for ever (exit_on_err hung, measured).
                worker.join(timeout=STOP_GRACE)
                return None
            if forward is not None and forward(number):
                continue
            if number in (signal.SIGTERM, signal.SIGINT):
                return signal.Signals(number).name
            if number == signal.SIGHUP:
                log.info("SIGHUP: reloading the config")
                ticks.put(ReloadRequested("SIGHUP"))
    return None


def supervise(
    daemon: Daemon,
    *,
    ticks: QueueTicks,
    stop: threading.Event,
    notifier: Notifier,
    clock: Callable[[], float] = time.monotonic,
    forward: Callable[[int], bool] | None = None,
) -> int:
    """Run ``daemon`` in a worker thread; the main thread turns signals into events.

    Signals arrive through ``signal.set_wakeup_fd`` on a socket pair and are handled
    by ordinary code after ``select()``: a Python handler that set an Event could
    deadlock on the Event's own lock if the signal landed while that lock was held.
    """
    import socket

    result: list[int] = []
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)

    def body() -> None:
        try:
            result.append(daemon.run())
        except BaseException as exc:  # never print an exception's text: it could quote data
            log.critical("render loop crashed: internal error %s", type(exc).__name__)
            log.debug("render loop crash detail", exc_info=True)
            result.append(1)
        finally:
            try:
                wake_w.send(b"\0")
            except OSError:
                pass

    extra: tuple[int, ...] = ()
    if forward is not None:
        from kv2render.daemon.supervisor import forwarded_signals

        extra = forwarded_signals()
    old, previous = _install_signals(wake_w.fileno(), extra)
    worker = threading.Thread(target=body, name="kv2render-loop", daemon=True)
    try:
        worker.start()
        stopped_by = _wait_for_signal(worker, wake_r, ticks, notifier, clock, forward)
        notifier.stopping()
        if stopped_by is None:
            daemon.close()
            return result[0] if result else 1
        log.info("%s: stopping", stopped_by)
        stop.set()
        ticks.put(None)
        worker.join(timeout=STOP_GRACE)
        if worker.is_alive():
            log.warning(
                "the render loop did not stop within %.0fs (a request or command is still "
                "running); exiting anyway, no file is left half-written",
                STOP_GRACE,
            )
        else:
            daemon.close()
        return 0
    finally:
        _restore_signals(old, previous)
        wake_r.close()
        wake_w.close()
