"""What the daemon reports to Prometheus, behind a small recorder interface (issue 17).

    loop.Daemon --Recorder calls--> NullRecorder (metrics off: every call is a no-op)
                                    PrometheusRecorder (metrics on)
                                        prometheus_client objects, one private registry
                                        the last status document -> /healthz, /readyz
    health.HealthServer (a thread) --> exposition(), healthz(), readyz()

``prometheus_client`` is imported only by :class:`PrometheusRecorder`, which the daemon
builds only when a listener is configured: ``--once`` and a daemon without metrics never
import it (KV2-NFR-420).

Labels are bounded by the config (KV2-INV-421): a template's place (``template[0]``) and
destination, a secret's mount and path, an error's class name, a result word. Never a
value, a version's data, a token or an error message (KV2-INV-420).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from kv2render.output.status import Verdict, assess

if TYPE_CHECKING:
    from kv2render.errors import Kv2RenderError
    from kv2render.model import SecretVersion
    from kv2render.refs import SecretLocation
    from kv2render.runner import CommandResult, RenderResult

__all__ = ["NullRecorder", "PrometheusRecorder", "Recorder", "HEALTH_GRACE"]

# /healthz: the loop is late when it has not ticked for its planned wait plus a grace: at
# least this, more when the config's retries can make one pass longer (service.health_grace).
HEALTH_GRACE = 120.0

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"

# Poll durations: one fast local read (ms) up to a pass spending its retries (minutes).
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class NullRecorder:
    """Metrics off: each hook is an empty method, so the loop pays one call and nothing else."""

    enabled = False

    def tick(self, wall: float, wait: float) -> None:
        """The loop is about to wait ``wait`` seconds (healthz: it is alive)."""

    def login(self, ok: bool) -> None:
        """One login attempt."""

    def renewal(self, ok: bool) -> None:
        """One token renewal attempt."""

    def token_expiry(self, wall: float | None) -> None:
        """When the current token expires (epoch), None when it does not."""

    def reads(self, fetched: Mapping[SecretLocation, SecretVersion | Kv2RenderError]) -> None:
        """The reads of one poll, each a version or the error it ended with."""

    def poll(self, seconds: float, ok: bool, wall: float) -> None:
        """One poll took ``seconds``; ``ok``: every read succeeded."""

    def listing(self, mount: str, result: str) -> None:
        """One folder listing (issue 18): ``ok``, ``not_offered`` or ``failed``."""

    def render(self, result: RenderResult, wall: float) -> None:
        """One template's render result."""

    def commands(self, results: Sequence[CommandResult]) -> None:
        """The commands one pass ran."""

    def publish(self, doc: Mapping[str, Any]) -> None:
        """The status document just written (readiness follows it)."""


Recorder = NullRecorder


class PrometheusRecorder(NullRecorder):
    """The metrics, in a private registry (no global state: tests build several)."""

    enabled = True

    def __init__(
        self,
        *,
        stale_after: float,
        wall: Any = time.time,
        health_grace: float = HEALTH_GRACE,
    ) -> None:
        from prometheus_client import (
            CollectorRegistry,
            Counter,
            Gauge,
            Histogram,
            disable_created_metrics,
        )
        from prometheus_client.process_collector import ProcessCollector

        from kv2render._version import __version__

        # No *_created series: they double the series count and say nothing an operator uses.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self._wall = wall
        self.stale_after = stale_after
        self.health_grace = health_grace
        self._lock = threading.Lock()
        self._doc: Mapping[str, Any] | None = None
        self._tick: tuple[float, float] | None = None
        self._last_ok: dict[tuple[str, str], float] = {}
        self._keys: set[tuple[str, str]] = set()
        self._started = wall()
        self.registry = reg = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=reg)  # process_start_time_seconds: the restart alert
        tpl = ("template", "destination")
        sec = ("mount", "path")
        Gauge("kv2render_build_info", "kv2render's version", ("version",), registry=reg).labels(
            __version__
        ).set(1)
        self.renders = Counter(
            "kv2render_renders_total",
            "Template renders by result: written, unchanged or failed",
            (*tpl, "result"),
            registry=reg,
        )
        self.render_errors = Counter(
            "kv2render_render_errors_total",
            "Failed renders by error class",
            (*tpl, "error"),
            registry=reg,
        )
        self.last_success = Gauge(
            "kv2render_template_last_success_timestamp_seconds",
            "When the template last rendered successfully (written or unchanged), epoch",
            tpl,
            registry=reg,
        )
        self.failing = Gauge(
            "kv2render_template_failing",
            "1 while the template's last render failed, else 0",
            tpl,
            registry=reg,
        )
        self.version = Gauge(
            "kv2render_secret_version",
            "The version of each followed secret last read",
            sec,
            registry=reg,
        )
        self.read_count = Counter(
            "kv2render_secret_reads_total",
            "Secret reads (each attempt that ended)",
            sec,
            registry=reg,
        )
        self.read_errors = Counter(
            "kv2render_secret_read_errors_total",
            "Secret reads that failed, by error class",
            (*sec, "error"),
            registry=reg,
        )
        # Issue 18: bounded labels only, the mount and one of three results (KV2-NFR-500).
        self.listings = Counter(
            "kv2render_folder_listings_total",
            "Folder listings that replaced secret reads, by result: ok, not_offered or failed",
            ("mount", "result"),
            registry=reg,
        )
        self.poll_seconds = Histogram(
            "kv2render_poll_duration_seconds",
            "Wall time of one poll (all its reads)",
            buckets=POLL_BUCKETS,
            registry=reg,
        )
        self.last_poll = Gauge(
            "kv2render_last_successful_poll_timestamp_seconds",
            "When a poll last read every secret without error, epoch",
            registry=reg,
        )
        self.logins = Counter(
            "kv2render_logins_total", "Login attempts by result", ("result",), registry=reg
        )
        self.renewals = Counter(
            "kv2render_token_renewals_total",
            "Token renewal attempts by result",
            ("result",),
            registry=reg,
        )
        for result in ("success", "failure"):  # present from the start: rate() sees 0
            self.logins.labels(result)
            self.renewals.labels(result)
        self._token_expiry: float | None = None
        Gauge(
            "kv2render_token_ttl_seconds",
            "Seconds the current token has left (NaN: no expiry or no token yet)",
            registry=reg,
        ).set_function(self._token_ttl)
        self.command_runs = Counter(
            "kv2render_command_runs_total",
            "Commands run after a write, by the first template that owns the command",
            ("template",),
            registry=reg,
        )
        self.command_failures = Counter(
            "kv2render_command_failures_total",
            "Commands that failed or timed out",
            ("template",),
            registry=reg,
        )
        Gauge(
            "kv2render_oldest_output_age_seconds",
            "Seconds since the least recently successful template rendered (since start when "
            "one never did)",
            registry=reg,
        ).set_function(self._oldest_age)
        self.ready = Gauge(
            "kv2render_ready", "1 when /readyz would answer 200, else 0", registry=reg
        )
        self.loop_tick = Gauge(
            "kv2render_loop_last_tick_timestamp_seconds",
            "When the render loop last went to wait, epoch",
            registry=reg,
        )

    # -- hooks ---------------------------------------------------------------------------------

    def tick(self, wall: float, wait: float) -> None:
        with self._lock:
            self._tick = (wall, wait)
        self.loop_tick.set(wall)

    def login(self, ok: bool) -> None:
        self.logins.labels("success" if ok else "failure").inc()

    def renewal(self, ok: bool) -> None:
        self.renewals.labels("success" if ok else "failure").inc()

    def token_expiry(self, wall: float | None) -> None:
        self._token_expiry = wall

    def reads(self, fetched: Mapping[SecretLocation, SecretVersion | Kv2RenderError]) -> None:
        from kv2render.model import SecretVersion

        for loc, got in fetched.items():
            # KV2-INV-497: labels of a path computed from a secret value show it redacted.
            mount, path = loc.shown_mount, loc.shown_path
            self.read_count.labels(mount, path).inc()
            if isinstance(got, SecretVersion):
                self.version.labels(mount, path).set(got.version)
            else:
                self.read_errors.labels(mount, path, type(got).__name__).inc()

    def listing(self, mount: str, result: str) -> None:
        self.listings.labels(mount, result).inc()

    def poll(self, seconds: float, ok: bool, wall: float) -> None:
        self.poll_seconds.observe(max(0.0, seconds))
        if ok:
            self.last_poll.set(wall)

    def render(self, result: RenderResult, wall: float) -> None:
        spec = result.template
        key = (spec.where, str(spec.destination))
        if result.error is not None:
            self.renders.labels(*key, "failed").inc()
            self.render_errors.labels(*key, type(result.error).__name__).inc()
            self.failing.labels(*key).set(1)
            return
        self.renders.labels(*key, "written" if result.did_write else "unchanged").inc()
        self.failing.labels(*key).set(0)
        self.last_success.labels(*key).set(wall)
        with self._lock:
            self._last_ok[key] = wall

    def commands(self, results: Sequence[CommandResult]) -> None:
        for command in results:
            where = f"template[{command.templates[0]}]" if command.templates else "template[?]"
            self.command_runs.labels(where).inc()
            if command.error is not None:
                self.command_failures.labels(where).inc()

    def publish(self, doc: Mapping[str, Any]) -> None:
        with self._lock:
            self._doc = doc
            keys = {
                (str(t.get("template")), str(t.get("destination")))
                for t in doc.get("templates", ())
            }
            gone = self._keys - keys
            # After a reload, templates that are gone stop counting towards the oldest age,
            # and their gauges go: a removed template must not look failing forever.
            self._last_ok = {k: v for k, v in self._last_ok.items() if k in keys}
            self._keys = keys
        for key in gone:
            for gauge in (self.failing, self.last_success):
                try:
                    gauge.remove(*key)
                except KeyError:
                    pass
        self.ready.set(1 if self.readyz()[0] else 0)

    # -- what the listener serves --------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        from prometheus_client import generate_latest

        # The 0.0.4 text format every Prometheus reads (prometheus_client >= 0.22 calls its
        # output 1.0.0, which Prometheus 2.x does not know; the bytes are the same here:
        # every name is plain ASCII with underscores).
        return generate_latest(self.registry), TEXT_FORMAT

    def healthz(self) -> tuple[bool, str]:
        """Alive: the loop went to wait recently enough for its own schedule."""
        with self._lock:
            tick = self._tick
        if tick is None:
            return False, "the render loop has not started yet"
        wall, wait = tick
        late = self._wall() - (wall + wait + self.health_grace)
        if late > 0:
            return False, f"the render loop is {late:.0f}s late"
        return True, "ok"

    def readyz(self) -> tuple[bool, str]:
        """Ready: the same verdict as ``kv2render status --max-age`` (KV2-INV-424)."""
        with self._lock:
            doc = self._doc
        if doc is None:
            return False, "no pass has completed yet"
        verdict: Verdict = assess(doc, now=self._wall(), max_age=self.stale_after)
        return verdict.code == 0, verdict.reason

    # -- gauges computed at scrape time ---------------------------------------------------------

    def _token_ttl(self) -> float:
        expiry = self._token_expiry
        return float("nan") if expiry is None else max(0.0, expiry - self._wall())

    def _oldest_age(self) -> float:
        with self._lock:
            keys = self._keys
            oldest = min((self._last_ok.get(k, self._started) for k in keys), default=None)
        return 0.0 if oldest is None else max(0.0, self._wall() - oldest)
