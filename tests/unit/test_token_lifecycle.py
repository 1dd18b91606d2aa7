"""The daemon's token lifecycle on its own (kv2render/daemon/token.py): no loop, no sleeps.

Each test builds a :class:`TokenLifecycle` around the shared FakeSecretStore (tests/fakes.py,
pinned to the real store by tests/contract) and a FakeClock, then calls ``step`` at the times
it schedules (STYLE.md convention 7). tests/unit/test_loop.py checks the same rules through the
whole loop (rendering goes on across logins); these pin the schedule itself.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from kv2render.config import Config
from kv2render.daemon.metrics import NullRecorder
from kv2render.daemon.token import TokenLifecycle
from kv2render.errors import AuthError, ConfigError, TransientError
from tests.fakes import FakeClock, FakeSecretStore

from .test_loop import make_config, spec

SENTINEL = "s3ntinel-TOKEN-9c1e"


class Recorder(NullRecorder):
    """The metrics hooks the lifecycle calls, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []

    def login(self, ok: bool) -> None:
        self.calls.append(("login", ok))

    def renewal(self, ok: bool) -> None:
        self.calls.append(("renewal", ok))

    def token_expiry(self, wall: float | None) -> None:
        self.calls.append(("token_expiry", wall))


class Lifecycle:
    """A TokenLifecycle, its fake store, clock, stop event and metrics."""

    def __init__(
        self, *, ttl: float | None = 30.0, renewable: bool = True, cfg: Config | None = None
    ) -> None:
        self.clock = FakeClock()
        self.store = FakeSecretStore(self.clock, ttl=ttl, renewable=renewable)
        self.stop = threading.Event()
        self.metrics = Recorder()
        self.token = TokenLifecycle(
            cfg or make_config(spec(0, "vault+kv2:///secret/a#pw")),
            self.store,
            clock=self.clock,
            wall=lambda: 1_700_000_000.0 + self.clock(),
            rng=random.Random(7),
            stop=self.stop,
            metrics=self.metrics,
        )

    def at(self, when: float) -> bool:
        """Move the clock to ``when`` (never back) and step."""
        self.clock.advance(when - self.clock.now)
        return self.token.step(self.clock.now)


def config(**auth: object) -> Config:
    cfg = make_config(spec(0, "vault+kv2:///secret/a#pw"))
    return replace(cfg, auth=replace(cfg.auth, **auth))  # type: ignore[arg-type]


def test_first_step_logs_in_and_schedules_renewal_at_two_thirds() -> None:
    """KV2-INV-164, KV2-AC-171: the TTL comes from the login; renewal at 2/3 of it, and a
    re-login backstop at 80-90 % should renewals keep failing."""
    lc = Lifecycle(ttl=30.0, renewable=True)
    start = lc.clock.now
    assert lc.token.need_login
    assert lc.token.step(start) is False
    assert (lc.store.logins, lc.token.need_login) == (1, False)
    assert lc.token.renew_at == pytest.approx(start + 20.0)
    assert lc.token.relogin_at is not None
    assert start + 24.0 <= lc.token.relogin_at <= start + 27.0
    assert lc.token.expires_at == pytest.approx(start + 30.0)
    assert lc.token.deadlines() == [lc.token.renew_at, lc.token.relogin_at]
    assert lc.metrics.calls == [("login", True), ("token_expiry", 1_700_000_000.0 + start + 30.0)]


def test_renewal_at_its_time_extends_without_a_login() -> None:
    """KV2-AC-171: renew-self at ~2/3 TTL, no new login; the next renewal 20 s later."""
    lc = Lifecycle(ttl=30.0, renewable=True)
    start = lc.clock.now
    lc.at(start)
    lc.at(start + 19.9)
    assert lc.store.renewals == 0
    lc.at(start + 20.0)
    assert (lc.store.renewals, lc.store.logins) == (1, 1)
    assert lc.token.renew_at == pytest.approx(start + 40.0)
    assert ("renewal", True) in lc.metrics.calls


def test_non_renewable_token_is_replaced_at_80_to_90_percent() -> None:
    """KV2-AC-169, KV2-INV-164: no renewal is scheduled; a fresh login before expiry."""
    lc = Lifecycle(ttl=50.0, renewable=False)
    start = lc.clock.now
    lc.at(start)
    assert lc.token.renew_at is None
    relogin = lc.token.relogin_at
    assert relogin is not None and start + 40.0 <= relogin <= start + 45.0
    lc.at(relogin - 0.1)
    assert lc.store.logins == 1
    lc.at(relogin)
    assert (lc.store.logins, lc.store.renewals) == (2, 0)
    assert lc.token.status()["renewable"] is False


def test_renewal_that_no_longer_extends_logs_in_again_in_the_same_step() -> None:
    """KV2-INV-164: at the token's max TTL a renewal buys no time: log in again at once."""
    lc = Lifecycle(ttl=30.0, renewable=True)
    start = lc.clock.now
    lc.store.max_expiry = start + 30.0  # the first renewal cannot pass the first expiry
    lc.at(start)
    lc.at(start + 20.0)
    assert (lc.store.renewals, lc.store.logins) == (1, 2)
    assert not lc.token.need_login


def test_refused_renewal_logs_in_again() -> None:
    """KV2-AC-170, KV2-INV-164: a refused renew-self (revoked token) -> one fresh login."""
    lc = Lifecycle(ttl=30.0, renewable=True)
    start = lc.clock.now
    lc.store.renew_errors = [AuthError("the token was rejected (403)")]
    lc.at(start)
    assert lc.at(start + 20.0) is False
    assert lc.store.logins == 2
    assert ("renewal", False) in lc.metrics.calls


def test_transient_renewal_failure_retries_within_the_remaining_lifetime() -> None:
    """KV2-INV-164: an unreachable server is no reason to drop the token: renewal retries
    with a backoff capped at a third of the remaining lifetime; no login."""
    lc = Lifecycle(ttl=30.0, renewable=True)
    start = lc.clock.now
    lc.store.renew_errors = [TransientError("connection refused")] * 3
    lc.at(start)
    for _ in range(3):
        now = lc.token.renew_at
        assert now is not None
        lc.at(now)
        remaining = start + 30.0 - now
        assert lc.token.renew_at is not None
        assert 0.0 < lc.token.renew_at - now <= max(1.0, remaining / 3) + 1e-9
    assert (lc.store.logins, lc.store.renewals, lc.token.renew_failures) == (1, 3, 3)
    lc.at(lc.token.renew_at)
    assert lc.token.renew_failures == 0 and lc.store.logins == 1


def test_login_failures_back_off_from_one_second_to_five_minutes() -> None:
    """KV2-AC-172, KV2-FC-162: 1 s doubling to 300 s, jittered down by at most 25 %, and a
    failed login is reported to the loop (step returns True) each time."""
    lc = Lifecycle()
    lc.store.login_errors = [AuthError("login refused (400)")] * 12
    for n in range(1, 13):
        now = lc.clock.now
        assert lc.token.step(now) is True
        ceiling = min(300.0, 2.0 ** (n - 1))
        assert 0.75 * ceiling - 1e-9 <= lc.token.login_at - now <= ceiling + 1e-9, n
        assert lc.token.step(now) is False  # not due yet: no attempt
        lc.clock.advance(lc.token.login_at - now)
    assert lc.token.exit_code is None  # neither exit_on_err nor exit_on_retry_failure
    assert lc.token.step(lc.clock.now) is False and lc.token.login_failures == 0


def test_retry_after_is_a_floor_for_the_next_login() -> None:
    """KV2-FC-162: a 429's Retry-After is honoured above the backoff."""
    lc = Lifecycle()
    lc.store.login_errors = [TransientError("429 too many requests", retry_after=45.0)]
    assert lc.at(lc.clock.now) is True
    assert lc.token.login_at - lc.clock.now == pytest.approx(45.0)


def test_exit_on_err_gives_up_at_the_first_failed_login() -> None:
    """KV2-FC-165: auto_auth.method.exit_on_err stops at once, with the failure's code."""
    lc = Lifecycle(cfg=config(exit_on_err=True))
    lc.store.login_errors = [AuthError("login refused (400)")]
    assert lc.at(lc.clock.now) is True
    assert lc.token.exit_code == AuthError.exit_code


def test_exit_on_retry_failure_gives_up_after_the_retries() -> None:
    """KV2-FC-161: exit_on_retry_failure ends a login loop once num_retries are spent (an
    AuthError), and at once on a TransientError (the store already spent its retries)."""
    cfg = make_config(spec(0, "vault+kv2:///secret/a#pw"), exit_on_retry_failure=True, retries=2)
    lc = Lifecycle(cfg=cfg)
    lc.store.login_errors = [AuthError("login refused (400)")] * 3
    for _ in range(2):
        lc.at(lc.token.login_at)
        assert lc.token.exit_code is None
    lc.at(lc.token.login_at)
    assert lc.token.exit_code == AuthError.exit_code

    lc = Lifecycle(cfg=cfg)
    lc.store.login_errors = [TransientError("503 sealed (gave up after 2 retries)")]
    lc.at(lc.clock.now)
    assert lc.token.exit_code == TransientError.exit_code


def test_a_login_cut_short_by_the_stop_is_no_failure() -> None:
    """KV2-INV-163: the stop event ends a login's retries; that is no failure to report."""
    lc = Lifecycle()
    lc.store.login_errors = [TransientError("stopped while waiting to retry")]
    lc.stop.set()
    assert lc.at(lc.clock.now) is False
    assert lc.token.login_failures == 0 and lc.metrics.calls == []


def test_a_lost_token_on_read_logs_in_after_the_backoff() -> None:
    """KV2-INV-164, KV2-FC-162: an AuthError on a read (the store's own re-login failed)
    schedules a login after the login backoff, not at once."""
    lc = Lifecycle()
    lc.at(lc.clock.now)
    now = lc.clock.now
    lc.token.login_lost(now)
    assert lc.token.need_login and lc.token.login_failures == 1
    assert 0.75 - 1e-9 <= lc.token.login_at - now <= 1.0 + 1e-9
    assert lc.at(lc.token.login_at) is False and lc.store.logins == 2


def test_reconnect_logs_in_to_the_new_store_at_once() -> None:
    """A reload that changes the server or auth settings: a new store, a login now, and the
    old store's failure count forgotten."""
    lc = Lifecycle()
    lc.store.login_errors = [AuthError("login refused (400)")] * 2
    lc.at(lc.clock.now)
    lc.at(lc.token.login_at)
    assert lc.token.login_failures == 2
    other = FakeSecretStore(lc.clock, ttl=30.0, renewable=True)
    lc.token.reconnect(other, lc.clock.now)
    assert lc.token.login_failures == 0 and lc.token.login_at == lc.clock.now
    lc.at(lc.clock.now)
    assert (other.logins, lc.token.need_login) == (1, False)


def test_changed_credential_file_schedules_a_login(tmp_path: Path) -> None:
    """KV2-AC-173, KV2-INV-051: a file changed since the last login means new credentials;
    a removed file does not (approle removes its secret_id file after reading it); nothing
    is checked before the first login."""
    cred = tmp_path / "secret_id"
    cred.write_text("one")
    lc = Lifecycle()
    lc.store.authenticator.files = (cred,)
    assert lc.token.credential_files() == (cred,)
    assert lc.token.check_credentials() is False  # no login yet: one is due anyway
    lc.at(lc.clock.now)
    assert lc.token.check_credentials() is False  # unchanged
    cred.write_text("two-longer")
    assert lc.token.check_credentials() is True and lc.token.need_login
    lc.at(lc.clock.now)
    assert lc.store.logins == 2
    cred.unlink()
    assert lc.token.check_credentials() is False
    cred.write_text("a new one")
    assert lc.token.check_credentials() is True


def test_credential_files_that_cannot_be_listed_are_none() -> None:
    """A store whose auth method cannot name its files yet watches nothing (no crash)."""

    class Refusing:
        def credential_files(self) -> tuple[Path, ...]:
            raise ConfigError("no file configured", where="auto_auth.method.config")

    lc = Lifecycle()
    lc.store.authenticator = Refusing()  # type: ignore[assignment]
    assert lc.token.credential_files() == ()


def test_status_and_logs_hold_the_schedule_never_a_credential(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-INV-166, KV2-AC-181: the status file's token object is the auth type and the
    schedule; a credential file is only stat()ed, so its content reaches no log line, no
    status and no state of the lifecycle."""
    caplog.set_level(logging.DEBUG)
    cred = tmp_path / "secret_id"
    cred.write_text(SENTINEL)
    lc = Lifecycle(ttl=30.0, renewable=True)
    lc.store.authenticator.files = (cred,)
    assert lc.token.status() == {"auth": "approle", "logged_in": False}
    lc.store.login_errors = [AuthError("login refused (400)", where="auth/approle/login")]
    lc.at(lc.clock.now)
    lc.at(lc.token.login_at)
    cred.write_text(SENTINEL + "-rotated")
    assert lc.token.check_credentials() is True
    lc.at(lc.clock.now)
    lc.clock.advance(10.0)
    status = lc.token.status()
    assert status == {"auth": "approle", "logged_in": True, "expires_in": 20.0, "renewable": True}
    assert "login refused (400)" in caplog.text and "credential file changed" in caplog.text
    for text in (caplog.text, json.dumps(status), repr(vars(lc.token))):
        assert SENTINEL not in text
