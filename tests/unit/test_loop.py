"""The daemon loop driven by a scripted tick source and a fake clock: no sleeps, no network.

Each test builds a :class:`Daemon` around the shared FakeSecretStore (tests/fakes.py, pinned to
the real store by tests/contract; STYLE.md convention 6),
a fake disk (a dict standing in for writer.write_atomic: unchanged bytes -> False) and a
command recorder, then scripts what happens between waits (convention 7).
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from kv2render import runner
from kv2render.config import AuthSettings, Config, TemplateConfig, TemplateSpec, VaultSettings
from kv2render.config.logins import AppRoleSettings
from kv2render.daemon.loop import Daemon
from kv2render.daemon.ports import DaemonHooks
from kv2render.daemon.ticks import FilesChanged, ReloadRequested, TickEvent
from kv2render.errors import (
    AccessDeniedError,
    AuthError,
    CommandError,
    ConfigError,
    SecretNotFoundError,
    TransientError,
)
from kv2render.model import SecretVersion, TokenInfo
from kv2render.output.status import StatusFile
from kv2render.refs import SecretLocation, parse_ref
from kv2render.runner import CommandResult, PreparedTemplate, RenderResult
from kv2render.store.backoff import backoff
from tests.fakes import FakeClock, FakeSecretStore

SENTINEL = "s3ntinel-VALUE-7f3a"
INTERVAL = 100.0


# -- fakes --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tick:
    """Let the full timeout elapse (the loop's next deadline arrives)."""


@dataclass(frozen=True)
class Advance:
    """Let ``seconds`` pass (capped at the timeout), then return with no event."""

    seconds: float


@dataclass(frozen=True)
class Jump:
    """Let ``seconds`` pass whatever the timeout (the wait returned late): all due at once."""

    seconds: float


POLL = Jump(INTERVAL * 1.11)  # one full poll period: every latest-version secret is due


@dataclass(frozen=True)
class Do:
    """Run ``action`` (e.g. bump a version) and return with no time passing."""

    action: Callable[[], Any]


class ScriptedTicks:
    """A TickSource that plays a script; when it runs out it sets the stop event."""

    def __init__(self, clock: FakeClock, stop: threading.Event, script: Sequence[Any]) -> None:
        self.clock = clock
        self.stop = stop
        self.script = list(script)
        self.timeouts: list[float] = []

    def wait(self, timeout: float) -> list[TickEvent]:
        self.timeouts.append(timeout)
        if not self.script:
            self.stop.set()
            return []
        item = self.script.pop(0)
        if isinstance(item, Tick):
            self.clock.advance(timeout)
            return []
        if isinstance(item, Advance):
            self.clock.advance(min(item.seconds, timeout))
            return []
        if isinstance(item, Jump):
            self.clock.advance(item.seconds)
            return []
        if isinstance(item, Do):
            item.action()
            return []
        return [item]


class FakeDisk:
    """Stands in for writer.write_atomic: identical bytes -> False and nothing written."""

    def __init__(self) -> None:
        self.files: dict[Path, bytes] = {}
        self.writes: dict[Path, int] = {}

    def __call__(self, path: Path, data: bytes, **_: Any) -> bool:
        if self.files.get(path) == data:
            return False
        self.files[path] = data
        self.writes[path] = self.writes.get(path, 0) + 1
        return True


class CommandRecorder:
    def __init__(self) -> None:
        self.runs: list[tuple[int, ...]] = []
        self.fail = False

    def __call__(self, results: Sequence[RenderResult]) -> tuple[CommandResult, ...]:
        out = []
        for r in results:
            if r.did_write and r.template.command is not None:
                self.runs.append((r.template.index,))
                error = CommandError("command 'x' exited with status 3") if self.fail else None
                out.append(CommandResult(r.template.command, (r.template.index,), error))
        return tuple(out)


class FakeNotifier:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.watchdog_interval = None

    def send(self, *lines: str) -> bool:
        self.sent.extend(lines)
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")


# -- building a daemon --------------------------------------------------------------------------


def spec(index: int, ref: str, *, command: str | None = None, **kw: Any) -> TemplateSpec:
    return TemplateSpec(
        index=index,
        destination=Path(f"/out/t{index}"),
        ref=parse_ref(ref),
        command=command,
        **kw,
    )


def make_config(
    *specs: TemplateSpec, exit_on_retry_failure: bool = False, retries: int = 12
) -> Config:
    return Config(
        path=Path("/etc/kv2render.yaml"),
        vault=VaultSettings(address="http://127.0.0.1:8200", num_retries=retries),
        auth=AuthSettings(
            type="approle", mount_path="auth/approle", config=AppRoleSettings(Path("/r"))
        ),
        template_config=TemplateConfig(
            static_secret_render_interval=INTERVAL, exit_on_retry_failure=exit_on_retry_failure
        ),
        templates=tuple(specs),
    )


class Harness:
    def __init__(self, cfg: Config, *, store: FakeSecretStore | None = None, **kw: Any) -> None:
        self.clock = FakeClock()
        self.stop = threading.Event()
        self.store = store or FakeSecretStore(self.clock)
        self.store.clock = self.clock
        self.disk = FakeDisk()
        self.commands = CommandRecorder()
        self.notifier = FakeNotifier()
        self.status_bytes: list[bytes] = []
        self.ticks = ScriptedTicks(self.clock, self.stop, [])
        self.cfg = cfg
        self.kw = kw

    def status_write(self, path: Path, data: bytes, **_: Any) -> bool:
        self.status_bytes.append(data)
        return True

    def build(self) -> Daemon:
        self.daemon = Daemon(
            self.cfg,
            store_factory=lambda cfg: self.store,
            ticks=self.ticks,
            stop=self.stop,
            clock=self.clock,
            wall=lambda: 1_700_000_000.0 + self.clock(),
            rng=random.Random(7),
            hooks=DaemonHooks(
                write=self.disk,
                run_commands=self.commands,
                notifier=self.notifier,  # type: ignore[arg-type]
                status_file=StatusFile(Path("/status.json"), write=self.status_write),
            ),
            **self.kw,
        )
        return self.daemon

    def run(self, *script: Any) -> int:
        self.ticks.script = list(script)
        daemon = getattr(self, "daemon", None) or self.build()
        self.stop.clear()
        return daemon.run()

    def writes(self, index: int) -> int:
        return self.disk.writes.get(Path(f"/out/t{index}"), 0)

    def content(self, index: int) -> bytes:
        return self.disk.files[Path(f"/out/t{index}")]

    def last_status(self) -> dict[str, Any]:
        """The last status written while running (the very last one says 'stopped')."""
        for raw in reversed(self.status_bytes):
            doc: dict[str, Any] = json.loads(raw)
            if doc["state"] != "stopped":
                return doc
        raise AssertionError("no status written")


def two_templates(**kw: Any) -> Harness:
    h = Harness(
        make_config(
            spec(0, "vault+kv2:///secret/a#pw", command="reload-a"),
            spec(1, "vault+kv2:///secret/b#pw", command="reload-b"),
            **kw,
        )
    )
    h.store.put("secret/a", pw="a1")
    h.store.put("secret/b", pw="b1")
    return h


LOC_A = SecretLocation("secret", "a")
LOC_B = SecretLocation("secret", "b")


# -- change detection ---------------------------------------------------------------------------


def test_first_pass_renders_everything_and_signals_ready_once() -> None:
    """KV2-AC-177, KV2-INV-163: the first pass renders everything; READY=1 once after it."""
    h = two_templates()
    assert h.run(POLL, POLL) == 0
    assert h.content(0) == b"a1" and h.content(1) == b"b1"
    assert h.notifier.sent.count("READY=1") == 1
    assert h.commands.runs == [(0,), (1,)]


def test_new_version_rerenders_only_its_template_and_runs_its_command_once() -> None:
    """KV2-AC-164, KV2-AC-162, KV2-INV-161: a new version re-renders only its templates."""
    h = two_templates()
    h.run(Do(lambda: h.store.put("secret/a", pw="a2")), POLL, POLL, POLL)
    assert h.content(0) == b"a2"
    assert h.writes(0) == 2 and h.writes(1) == 1
    assert h.commands.runs == [(0,), (1,), (0,)]


def test_unchanged_version_writes_nothing_and_renders_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KV2-AC-161, KV2-INV-161: an unchanged version is not re-rendered: no write, no command."""
    h = two_templates()
    h.run(POLL)
    calls: list[str] = []
    original = runner.render_template

    def counting(item: PreparedTemplate, *a: Any, **k: Any) -> RenderResult:
        calls.append(item.spec.where)
        return original(item, *a, **k)

    monkeypatch.setattr(runner, "render_template", counting)
    h.run(*[POLL] * 8)
    assert h.clock.now - 1000.0 >= 3 * 0.9 * INTERVAL
    assert h.store.reads[LOC_A] >= 4  # polled every interval...
    assert calls == []  # ...never rendered again...
    assert h.writes(0) == 1 and h.writes(1) == 1  # ...nothing written
    assert h.commands.runs == [(0,), (1,)]
    # and the control: a new version does render
    h.run(Do(lambda: h.store.put("secret/b", pw="b2")), POLL, POLL)
    assert calls == ["template[1]"]


def test_new_version_with_identical_bytes_writes_nothing_and_runs_no_command() -> None:
    """KV2-INV-161, KV2-AC-162: identical bytes after a version change: no write, no command."""
    h = two_templates()
    h.run(Do(lambda: h.store.put("secret/a", pw="a1")), POLL, POLL)
    assert h.writes(0) == 1
    assert h.commands.runs == [(0,), (1,)]
    assert h.daemon.templates[0].versions[LOC_A] == 2


def test_pinned_reference_is_read_once() -> None:
    """KV2-AC-163, KV2-INV-160: a pinned ?version=N is read once and cached."""
    h = Harness(
        make_config(
            spec(0, "vault+kv2:///secret/p?version=1#pw"), spec(1, "vault+kv2:///secret/a#pw")
        )
    )
    h.store.put("secret/p", pw="p1")
    h.store.put("secret/a", pw="a1")
    h.run(*[POLL] * 6)
    assert h.store.reads[SecretLocation("secret", "p", 1)] == 1
    assert h.store.reads[LOC_A] == 7


def test_poll_interval_has_ten_percent_jitter_and_per_template_override() -> None:
    """KV2-AC-165, KV2-INV-160: re-reads every interval +-10 %; render_interval overrides it."""
    h = Harness(
        make_config(
            spec(0, "vault+kv2:///secret/a#pw"),
            spec(1, "vault+kv2:///secret/b#pw", render_interval=10.0),
        )
    )
    h.store.put("secret/a", pw="a")
    h.store.put("secret/b", pw="b")
    h.run(*[Tick()] * 40)
    waits = [t for t in h.ticks.timeouts if t > 0]
    assert all(t <= 11.0 + 1e-9 for t in waits)
    elapsed = h.clock.now - 1000.0
    assert 9.0 * 40 <= elapsed <= 11.0 * 41
    # b (10 s) polled ~10x as often as a (100 s); a's gaps stay within 90..110 s.
    assert h.store.reads[LOC_B] >= 38
    assert 3 <= h.store.reads[LOC_A] <= 6
    assert len({round(t, 6) for t in waits}) > 5  # jittered, not a fixed period


class SlowStore(FakeSecretStore):
    """Every read costs ``cost`` seconds of (fake) time: a slow server or a big pass."""

    cost = 0.3 * INTERVAL

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.read_times: list[float] = []

    def read(self, location: SecretLocation) -> SecretVersion:
        self.read_times.append(self.clock())
        self.clock.advance(self.cost)
        return super().read(location)


def test_poll_cadence_does_not_drift_with_the_cost_of_a_pass() -> None:
    """KV2-INV-172: each poll is planned from the start of the previous pass, so a pass that
    takes 30 % of the interval does not stretch the effective interval to 1.3x."""
    store = SlowStore(FakeClock())
    h = Harness(make_config(spec(0, "vault+kv2:///secret/a#pw")), store=store)
    store.put("secret/a", pw="a")
    h.run(*[Tick()] * 60)
    starts = store.read_times
    assert len(starts) >= 40
    gaps = [b - a for a, b in zip(starts[1:], starts[2:], strict=False)]
    mean = sum(gaps) / len(gaps)
    assert 0.98 * INTERVAL <= mean <= 1.02 * INTERVAL, mean / INTERVAL
    assert all(0.9 * INTERVAL - 1e-6 <= g <= 1.1 * INTERVAL + 1e-6 for g in gaps)


def test_a_pass_longer_than_the_interval_polls_again_at_once_without_a_burst() -> None:
    """KV2-INV-172: when a pass overruns the interval the next poll starts right after it;
    polls never pile up to catch up."""
    store = SlowStore(FakeClock())
    store.cost = 1.5 * INTERVAL
    h = Harness(make_config(spec(0, "vault+kv2:///secret/a#pw")), store=store)
    store.put("secret/a", pw="a")
    h.run(*[Tick()] * 10)
    gaps = [b - a for a, b in zip(store.read_times, store.read_times[1:], strict=False)]
    assert gaps and all(g >= store.cost - 1e-6 for g in gaps)
    assert all(g <= store.cost + 1e-6 for g in gaps[1:])


def test_idle_daemon_never_busy_loops() -> None:
    """KV2-NFR-232: with nothing due, every wait lasts until the next poll (no spinning)."""
    h = two_templates()
    h.run(*[Tick()] * 10)
    # Secrets polled in the same pass stay in step: one wake-up per interval, never zero.
    assert all(t >= 0.9 * INTERVAL - 1e-6 for t in h.ticks.timeouts[1:])
    assert h.store.reads[LOC_A] == h.store.reads[LOC_B] == 11


# -- outages and retries ------------------------------------------------------------------------


def test_transient_errors_back_off_keep_the_file_and_recover() -> None:
    """KV2-INV-162, KV2-FC-161: transient failures back off; the file stays; rendering resumes."""
    h = two_templates()
    h.run(POLL)
    h.store.fail[None] = TransientError("connection refused", where="secret/a")
    h.run(POLL, POLL, POLL, POLL)
    assert h.content(0) == b"a1" and h.writes(0) == 1
    assert h.last_status()["templates"][0]["last_error"].endswith("connection refused")
    retry_waits = h.ticks.timeouts[-4:]
    assert all(w <= 16.0 for w in retry_waits[1:])  # 1 s, 2 s, 4 s ... not the 100 s poll
    del h.store.fail[None]
    h.store.put("secret/a", pw="a2")
    h.run(POLL, POLL)
    assert h.content(0) == b"a2"
    assert h.last_status()["templates"][0]["last_error"] is None


def test_retry_after_is_honoured() -> None:
    """KV2-AC-167: a 429's Retry-After is the floor of the next retry."""
    h = two_templates()
    h.run(POLL)
    h.store.fail[None] = TransientError("429 too many requests", retry_after=45.0)
    h.run(POLL, POLL)
    failing = h.daemon.templates[0]
    assert failing.error is not None
    assert failing.retry_at - h.clock.now >= 45.0 - 1e-6 or h.ticks.timeouts[-1] >= 45.0 - 1e-6


def test_backoff_is_exponential_with_jitter_and_capped() -> None:
    """KV2-FC-162, KV2-FC-161: 1 s doubling to the cap, jittered down by at most 25 %."""
    rng = random.Random(1)
    delays = [backoff(n, base=1.0, cap=300.0, rng=rng) for n in range(1, 13)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(300.0, 2.0 ** (n - 1))
        assert 0.75 * ceiling <= d <= ceiling
    assert backoff(3, base=1.0, cap=300.0, rng=rng, retry_after=30.0) == 30.0


def test_exit_on_retry_failure_exits_nonzero_on_exhausted_transient_error() -> None:
    """KV2-AC-168, KV2-FC-161: store retries spent + exit_on_retry_failure -> exit code."""
    h = two_templates(exit_on_retry_failure=True)
    h.run(POLL)
    h.store.fail[None] = TransientError("503 sealed (gave up after 12 retries)")
    code = h.run(POLL, POLL, POLL)
    assert code == TransientError.exit_code != 0
    assert h.content(0) == b"a1"


def test_exit_on_retry_failure_also_exits_on_other_failures() -> None:
    """KV2-FC-161: a missing secret under exit_on_retry_failure exits with its own code."""
    h = two_templates(exit_on_retry_failure=True)
    h.store.fail[LOC_B] = SecretNotFoundError("no secret", where="secret/b")
    code = h.run(*[POLL] * 10)
    assert code == SecretNotFoundError.exit_code
    assert h.store.reads[LOC_B] == 1


def test_failed_template_recovers_at_the_next_good_poll() -> None:
    """KV2-INV-162, KV2-FC-161: backoff grows, but a good poll ends the failure at once."""
    h = two_templates()
    h.run(POLL)
    h.store.fail[LOC_A] = TransientError("503 sealed")
    h.run(*[Tick()] * 8)
    failing = h.daemon.templates[0]
    assert failing.failures >= 4 and failing.retry_at - h.clock.now > 4.0
    del h.store.fail[LOC_A]
    h.run(Jump(INTERVAL * 1.11), Tick())
    assert failing.error is None and failing.failures == 0
    assert h.writes(0) == 1  # same bytes: recovery writes nothing


def test_without_exit_on_retry_failure_the_daemon_keeps_going() -> None:
    h = two_templates()
    h.store.fail[LOC_B] = SecretNotFoundError("no secret", where="secret/b")
    assert h.run(*[POLL] * 20) == 0
    assert h.store.reads[LOC_B] > 5
    assert h.content(0) == b"a1"
    assert "READY=1" not in h.notifier.sent  # not every template rendered yet


# -- token lifecycle ----------------------------------------------------------------------------


def token_harness(ttl: float, renewable: bool) -> Harness:
    h = two_templates()
    h.cfg = make_config(*h.cfg.templates)
    h.store.ttl = ttl
    h.store.renewable = renewable
    return h


def test_renewable_token_is_renewed_at_two_thirds_of_its_ttl_not_replaced() -> None:
    """KV2-AC-171, KV2-INV-164: renew at ~2/3 TTL; a renewal that extends keeps the login."""
    h = token_harness(ttl=30.0, renewable=True)
    start = h.clock.now
    renew_times: list[float] = []
    original = h.store.renew

    def renew() -> TokenInfo:
        renew_times.append(h.clock.now - start)
        return original()

    h.store.renew = renew  # type: ignore[method-assign]
    h.run(*[Tick()] * 12)
    assert h.store.logins == 1
    assert renew_times and abs(renew_times[0] - 20.0) < 1e-6
    assert all(abs(b - a - 20.0) < 1e-6 for a, b in zip(renew_times, renew_times[1:], strict=False))


def test_relogin_when_renewal_stops_extending() -> None:
    """KV2-INV-164: at the max TTL, renewal no longer extends: log in again."""
    h = token_harness(ttl=30.0, renewable=True)
    h.store.max_expiry = h.clock.now + 45.0
    h.run(*[Tick()] * 8)
    assert h.store.renewals >= 2
    assert h.store.logins >= 2


def test_non_renewable_token_relogs_in_near_expiry() -> None:
    """KV2-AC-169, KV2-INV-164: a non-renewable token is replaced at 80-90 % of its TTL."""
    h = token_harness(ttl=50.0, renewable=False)
    start = h.clock.now
    login_times: list[float] = []
    original = h.store.login

    def login() -> TokenInfo | None:
        login_times.append(h.clock.now - start)
        return original()

    h.store.login = login  # type: ignore[method-assign]
    h.run(*[Tick()] * 6)
    assert h.store.renewals == 0
    assert len(login_times) >= 2
    assert 40.0 - 1e-6 <= login_times[1] <= 45.0 + 1e-6


def test_refused_renewal_triggers_a_login() -> None:
    """KV2-AC-170, KV2-INV-164: a refused renewal -> fresh login, rendering continues."""
    h = token_harness(ttl=30.0, renewable=True)
    h.store.renew_errors = [AuthError("the token was rejected (403)")]
    h.run(*[Tick()] * 3, Do(lambda: h.store.put("secret/a", pw="a2")), *[Tick()] * 6)
    assert h.store.logins == 2
    assert h.content(0) == b"a2"


def test_login_failures_back_off_from_one_second_to_five_minutes() -> None:
    """KV2-AC-172, KV2-FC-162: login failures: 1 s, 2 s, 4 s ... capped at 300 s, jittered."""
    h = two_templates()
    h.store.login_errors = [AuthError("login refused (400)")] * 20
    h.run(*[Tick()] * 12)
    waits = h.ticks.timeouts[:12]
    for n, w in enumerate(waits, start=1):
        ceiling = min(300.0, 2.0 ** (n - 1))
        assert 0.75 * ceiling - 1e-6 <= w <= ceiling + 1e-6, (n, w)
    assert h.disk.writes == {}  # nothing renders before a login


def test_login_recovers_after_failures() -> None:
    h = two_templates()
    h.store.login_errors = [TransientError("connection refused")] * 3
    h.run(*[Tick()] * 5)
    assert h.store.logins == 4
    assert h.content(0) == b"a1"


def test_access_denied_after_fresh_login_is_reported_and_not_looped() -> None:
    """KV2-AC-170, KV2-FC-163: a 403 that survives the store's fresh login is a real denial."""
    h = two_templates()
    h.store.fail[LOC_B] = AccessDeniedError(
        "permission denied (403)", where="secret/b", hint="the policy needs read on secret/data/b"
    )
    h.run(POLL, POLL, POLL)
    assert h.store.logins == 1  # the loop itself never loops on logins
    assert h.store.reads[LOC_B] <= 4  # looked again at the poll interval only
    assert all(t >= 0.9 * INTERVAL - 1e-6 for t in h.ticks.timeouts[1:])
    doc = h.last_status()
    assert "permission denied" in doc["templates"][1]["last_error"]
    assert doc["state"] == "degraded"


def test_auth_error_on_read_schedules_a_login() -> None:
    """KV2-INV-164, KV2-FC-162: the store's re-login failed (AuthError): log in again."""
    h = two_templates()
    h.run(POLL)
    h.store.fail[None] = AuthError("login refused")
    h.run(POLL, Do(lambda: h.store.fail.clear()), POLL, POLL)
    assert h.store.logins == 2
    assert h.daemon.templates[0].error is None


def test_credential_file_change_triggers_a_login(tmp_path: Path) -> None:
    """KV2-AC-173: a changed credential file (rotated token, new secret_id) -> a login."""
    cred = tmp_path / "secret_id"
    cred.write_text("one")
    h = two_templates()
    h.store.authenticator.files = (cred,)
    h.run(POLL)
    assert h.store.logins == 1

    def rotate() -> None:
        cred.write_text("two-longer")

    h.run(Do(rotate), FilesChanged(frozenset({str(cred)})), POLL)
    assert h.store.logins == 2
    # An event with no real change does not log in again.
    h.run(FilesChanged(frozenset({str(cred)})), POLL)
    assert h.store.logins == 2


def test_a_removed_credential_file_is_no_reason_to_log_in(tmp_path: Path) -> None:
    """KV2-AC-173 KV2-INV-051: approle removes its secret_id file after reading it; that
    removal (or an operator cleaning a file up) is no new credential: no login. A new file
    dropped later is."""
    cred = tmp_path / "secret_id"
    cred.write_text("one")
    h = two_templates()
    h.store.authenticator.files = (cred,)
    h.run(POLL)
    assert h.store.logins == 1
    h.run(Do(cred.unlink), FilesChanged(frozenset({str(cred)})), POLL)
    assert h.store.logins == 1
    h.run(Do(lambda: cred.write_text("a new one")), FilesChanged(frozenset({str(cred)})), POLL)
    assert h.store.logins == 2


# -- commands -----------------------------------------------------------------------------------


def test_failing_command_is_reported_and_does_not_refetch() -> None:
    """KV2-AC-180, KV2-INV-165: a failing command triggers no re-read or re-render."""
    h = two_templates()
    h.commands.fail = True
    h.run(POLL)
    reads_after_first = dict(h.store.reads)
    assert reads_after_first == {LOC_A: 2, LOC_B: 2}
    h.run(POLL, POLL)
    assert h.store.reads == {LOC_A: 4, LOC_B: 4}  # only the regular polls
    assert h.commands.runs == [(0,), (1,)]  # not re-run either
    assert "exited with status 3" in h.last_status()["templates"][0]["last_error"]
    assert h.daemon.templates[0].error is None


# -- files and reload ---------------------------------------------------------------------------


def test_edited_source_rerenders_and_a_broken_edit_is_refused(tmp_path: Path) -> None:
    """KV2-AC-174: an edited template source re-renders; a broken one keeps the old one."""
    source = tmp_path / "t0.j2"
    source.write_text("stand-in: the fake compiler below reads `body`")
    base = make_config(TemplateSpec(index=0, destination=Path("/out/t0"), source=source))
    loc = SecretLocation("secret", "a")
    body = {"text": "v1"}

    def fake_prepare_one(spec: TemplateSpec, **_: Any) -> PreparedTemplate:
        if body["text"] == "broken":
            raise ConfigError("unexpected '}'", where="/tpl/t0.j2:1")
        text = body["text"]

        def render(secrets: Any) -> bytes:
            return f"{text}:{secrets[loc].data['pw']}".encode()

        return PreparedTemplate(spec, None, frozenset({loc}), render)

    h = Harness(
        base,
        prepare=lambda cfg: [fake_prepare_one(s) for s in cfg.templates],
        prepare_one=fake_prepare_one,
    )
    h.store.put("secret/a", pw="a1")
    changed = FilesChanged(frozenset({str(source), str(tmp_path / ".t0.j2.swp")}))
    h.run(POLL)
    assert h.content(0) == b"v1:a1"
    body["text"] = "v2"
    h.run(changed, Tick())
    assert h.content(0) == b"v2:a1"
    body["text"] = "broken"
    h.run(changed, POLL)
    assert h.content(0) == b"v2:a1"
    assert "unexpected" in h.last_status()["templates"][0]["last_error"]
    unrelated = FilesChanged(frozenset({str(tmp_path / "other.j2")}))
    body["text"] = "v3"
    h.run(unrelated, Tick())
    assert h.content(0) == b"v2:a1"


def test_config_reload_applies_and_invalid_config_is_refused() -> None:
    """KV2-AC-175, KV2-FC-160: a config edit reloads; an invalid one is refused."""
    h = two_templates()
    new_cfg = make_config(spec(0, "vault+kv2:///secret/c#pw"))
    h.store.put("secret/c", pw="c1")
    outcome: dict[str, Any] = {"cfg": ConfigError("template[0].destination: must be absolute")}

    def reload_config() -> Config:
        value = outcome["cfg"]
        if isinstance(value, Exception):
            raise value
        assert isinstance(value, Config)
        return value

    h.kw = {"reload_config": reload_config, "config_path": Path("/etc/kv2render.yaml")}
    event = FilesChanged(frozenset({"/etc/kv2render.yaml"}))
    h.run(POLL, event, Do(lambda: h.store.put("secret/a", pw="a2")), POLL)
    assert h.content(0) == b"a2"  # old config still serving after the refused edit
    outcome["cfg"] = new_cfg
    h.run(ReloadRequested("SIGHUP"), POLL)
    assert h.content(0) == b"c1"
    assert len(h.daemon.templates) == 1


def test_reload_with_new_server_settings_reconnects() -> None:
    h = two_templates()
    other = replace(h.cfg, vault=replace(h.cfg.vault, address="http://127.0.0.1:9999"))
    h.kw = {"reload_config": lambda: other}
    h.run(POLL, ReloadRequested(), POLL)
    assert h.store.closed and h.store.logins == 2


def test_version_going_backwards_is_refused() -> None:
    """KV2-FC-280, KV2-AC-288: a version that goes backwards keeps the last good file."""
    h = two_templates()
    h.run(Do(lambda: h.store.put("secret/a", pw="a2")), POLL)
    assert h.content(0) == b"a2"
    h.store.rollback("secret/a")
    h.run(POLL, POLL)
    assert h.content(0) == b"a2"
    assert "version 1 after version 2" in h.last_status()["templates"][0]["last_error"]


# -- status -------------------------------------------------------------------------------------


def test_status_document_has_metadata_only() -> None:
    """KV2-AC-178, KV2-INV-166: the status file lists destination, paths, versions; no value."""
    h = two_templates()
    h.store.put("secret/a", pw=SENTINEL)
    h.run(POLL)
    raw = h.status_bytes[-1]
    assert SENTINEL.encode() not in raw
    doc = h.last_status()
    first = doc["templates"][0]
    assert first["destination"] == "/out/t0"
    assert first["secrets"] == [
        {"mount": "secret", "path": "a", "pinned_version": None, "version": 2}
    ]
    assert first["last_render"].endswith("Z") and first["ok"] is True
    assert doc["ready"] is True and doc["state"] == "running"
    assert doc["token"]["logged_in"] is True


def test_status_write_failure_is_logged_and_rendering_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """KV2-AC-179, KV2-FC-164: an unwritable status file: error each pass, rendering goes on."""
    from kv2render.errors import WriteError

    h = two_templates()

    def broken(path: Path, data: bytes, **_: Any) -> bool:
        raise WriteError("read-only file system", where=str(path))

    h.status_write = broken  # type: ignore[method-assign]
    with caplog.at_level("ERROR"):
        h.run(POLL, Do(lambda: h.store.put("secret/a", pw="a2")), POLL)
    assert h.content(0) == b"a2"
    assert sum("status file not written" in r.getMessage() for r in caplog.records) >= 2


def test_stop_event_ends_the_loop_with_zero() -> None:
    h = two_templates()
    h.build()
    h.stop.set()
    assert h.daemon.run() == 0
