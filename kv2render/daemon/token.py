"""The daemon's token lifecycle: login, renewal, re-login, login backoff, credential files.

    Daemon.step --step(now)--> TokenLifecycle --login() / renew()--> DaemonStore
                                   │  schedules: login_at, renew_at (2/3 TTL),
                                   │  relogin_at (80-90 % TTL), expires_at
    Daemon.next_wakeup <--deadlines()--┘

:class:`TokenLifecycle` owns the token's schedule and nothing else: the loop
(:mod:`kv2render.daemon.loop`) asks it what is due, runs its passes only while
it holds a token, and writes the status file when it reports a failed login. It
takes its clock, random source and stop event as arguments (STYLE.md convention
7), so tests script token expiry with a fake clock and no sleeps.

Vault Agent's auto-auth is the model (reference/vault-agent.md §5): renew at
about 2/3 of the TTL, log in again when renewal stops extending the lease or a
non-renewable token nears expiry, back off from ``min_backoff`` to
``max_backoff`` between failed logins, and log in again when a credential file
changes (issue 5).
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kv2render.config import Config
from kv2render.daemon.metrics import NullRecorder
from kv2render.daemon.ports import DaemonStore
from kv2render.errors import Kv2RenderError, TransientError
from kv2render.model import TokenInfo
from kv2render.store.backoff import backoff

log = logging.getLogger(__name__)


class TokenLifecycle:
    """When to log in, renew or log in again, and what the last attempt gave.

    ``store`` and ``cfg`` are replaced by the loop on a config reload (:meth:`reconnect`
    for a new server or auth method, plain assignment of ``cfg`` otherwise).
    """

    def __init__(
        self,
        cfg: Config,
        store: DaemonStore,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float],
        rng: random.Random,
        stop: threading.Event,
        metrics: NullRecorder,
    ) -> None:
        self.cfg = cfg
        self.store = store
        self.clock = clock
        self.wall = wall
        self.rng = rng
        self.stop = stop
        self.metrics = metrics
        # Set when the configuration says to give up on logins (exit_on_err /
        # exit_on_retry_failure): the exit code of the login's error.
        self.exit_code: int | None = None
        self.need_login = True
        self.login_at = 0.0
        self.login_failures = 0
        self.renew_at: float | None = None
        self.renew_failures = 0
        self.relogin_at: float | None = None
        self.expires_at: float | None = None
        self._cred_signature: tuple[Any, ...] = ()

    @property
    def max_retries(self) -> int:
        # config.load already turned the file's 0 into 12 and -1 into 0.
        return max(0, self.cfg.vault.num_retries)

    def deadlines(self) -> list[float]:
        """The times the loop must wake for token work while it holds a token."""
        return [x for x in (self.renew_at, self.relogin_at) if x is not None]

    def step(self, now: float) -> bool:
        """Log in, renew or log in again when due; True when a login failed just now."""
        if not self.need_login and self.relogin_at is not None and now >= self.relogin_at:
            log.info("token is near expiry and cannot be extended; logging in again")
            self.schedule_login(now)
        if self.need_login:
            return now >= self.login_at and not self._login(now)
        if self.renew_at is not None and now >= self.renew_at:
            self._renew(now)
            if self.need_login and now >= self.login_at:
                return not self._login(self.clock())
        return False

    def schedule_login(self, now: float) -> None:
        self.need_login = True
        self.login_at = now
        self.renew_at = self.relogin_at = None

    def reconnect(self, store: DaemonStore, now: float) -> None:
        """A new store (server or auth settings changed): log in to it at once."""
        self.store = store
        self.login_failures = 0
        self.schedule_login(now)

    def login_lost(self, now: float) -> None:
        """A read failed with AuthError: the store's own fresh login failed too, so the
        token is gone; log in again after the login backoff."""
        self.login_failures += 1
        self.need_login = True
        self.login_at = now + self._login_backoff(None)

    def _login(self, now: float) -> bool:
        """One login attempt; False when it failed (the next one is scheduled)."""
        # Remember the credential files as they are now: a change after this point
        # (a rotated service-account token, a new secret_id) triggers the next login.
        self._cred_signature = self._credential_signature()
        try:
            info = self.store.login()
        except Kv2RenderError as exc:
            if self.stop.is_set():
                return True  # the stop cut the login short; not a failure to report
            self._login_failed(exc, now)
            return False
        self.metrics.login(True)
        self.need_login = False
        self.login_failures = 0
        self.renew_failures = 0
        self._learn(info if info is not None else self.store.token_info)
        return True

    def _login_failed(self, exc: Kv2RenderError, now: float) -> None:
        self.metrics.login(False)
        self.login_failures += 1
        delay = self._login_backoff(exc.retry_after)
        self.login_at = now + delay
        log.error(
            "login failed (attempt %d): %s; next attempt in %.1fs",
            self.login_failures,
            exc,
            delay,
        )
        if self.cfg.auth.exit_on_err or (
            self.cfg.template_config.exit_on_retry_failure
            and (isinstance(exc, TransientError) or self.login_failures > self.max_retries)
        ):
            # auto_auth.method.exit_on_err: Vault Agent exits on the first failure.
            log.error("giving up on login (exit_on_err / exit_on_retry_failure)")
            self.exit_code = exc.exit_code

    def _login_backoff(self, retry_after: float | None) -> float:
        # auto_auth.method min_backoff/max_backoff, Vault Agent's 1s .. 5m by default.
        return backoff(
            self.login_failures,
            base=self.cfg.auth.min_backoff,
            cap=self.cfg.auth.max_backoff,
            rng=self.rng,
            retry_after=retry_after,
        )

    def _learn(self, info: TokenInfo | None) -> None:
        """Schedule renewal at 2/3 TTL and re-login at 80-90 % of a lease that cannot grow."""
        self.renew_at = self.relogin_at = self.expires_at = None
        if info is None or info.ttl is None or info.ttl <= 0:
            self.metrics.token_expiry(None)
            return  # no expiry (root, mtls, bearer): nothing to schedule
        self.expires_at = info.learned_at + info.ttl
        self.metrics.token_expiry(self.wall() + self.expires_at - self.clock())
        if info.renewable:
            self.renew_at = info.learned_at + info.ttl * 2 / 3
        # Vault's LifetimeWatcher lets 80-90 % of a lease elapse before giving up on it;
        # for a renewable token this is only a backstop should renewals keep failing.
        self.relogin_at = info.learned_at + info.ttl * self.rng.uniform(0.8, 0.9)

    def _renew(self, now: float) -> None:
        old_expiry = self.expires_at
        try:
            info = self.store.renew()
        except TransientError as exc:
            if self.stop.is_set():
                return
            self.metrics.renewal(False)
            self.renew_failures += 1
            remaining = (self.expires_at or now) - now
            delay = backoff(
                self.renew_failures, base=1.0, cap=max(1.0, remaining / 3), rng=self.rng
            )
            self.renew_at = now + delay
            log.warning("token renewal failed: %s; retrying in %.1fs", exc, delay)
            return
        except Kv2RenderError as exc:
            self.metrics.renewal(False)
            log.warning("token renewal refused: %s; logging in again", exc)
            self.schedule_login(now)
            return
        self.metrics.renewal(True)
        self.renew_failures = 0
        if info.ttl is not None and info.ttl > 0 and old_expiry is not None:
            new_expiry = info.learned_at + info.ttl
            if new_expiry <= old_expiry + min(1.0, info.ttl / 2):
                # The max TTL caps the token: renewal no longer buys time (issue 5).
                log.info("token renewal no longer extends its lifetime; logging in again")
                self.schedule_login(now)
                return
        self._learn(info)

    # -- credential files ----------------------------------------------------------------

    def credential_files(self) -> tuple[Path, ...]:
        try:
            return tuple(self.store.authenticator.credential_files())
        except Kv2RenderError:
            return ()

    def _credential_signature(self) -> tuple[Any, ...]:
        """stat() facts of each credential file: a change means new credentials (never content)."""
        out: list[Any] = []
        for path in self.credential_files():
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
        if self.need_login:
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
        self.schedule_login(self.clock())
        return True

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The status file's ``token`` object: never the token, only its schedule."""
        if self.need_login:
            return {"auth": self.cfg.auth.type, "logged_in": False}
        info: dict[str, Any] = {"auth": self.cfg.auth.type, "logged_in": True}
        if self.expires_at is not None:
            info["expires_in"] = round(max(0.0, self.expires_at - self.clock()), 1)
        info["renewable"] = self.renew_at is not None
        return info
