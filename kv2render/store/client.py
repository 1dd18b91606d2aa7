"""The hvac boundary: the only module that sends requests to a KV2 server (KV2-INV-05x).

    HvacSecretStore(VaultSettings, Authenticator)
      ├── one requests.Session, pooled, TLS from one SSLContext   (transport.py)
      ├── hvac RawAdapter + KvV2 / Token API classes              (no env look-ups)
      ├── read(location) -> SecretVersion   retries TransientError, one re-login on 403
      ├── list_folder(...) -> FolderVersions | NotOffered   a folder's versions (listing.py)
      └── login / ensure_token / renew / lookup_self             token lifecycle for loop.py

hvac is used with ``RawAdapter(ignore_exceptions=True)``: hvac builds the URL (base
path + ``/v1`` + quoted path), sends X-Vault-Request / X-Vault-Token /
X-Vault-Namespace, and hands back the ``requests.Response``; ``responses.py`` maps
status, headers and body to kv2render errors, ``network.py`` the exceptions. hvac's own
exceptions drop the response headers (so ``Retry-After`` would be lost) and only parse a
body whose Content-Type is exactly ``application/json`` (wire reference §6.2).

hvac.Client is not used: it reads VAULT_TOKEN, ~/.vault-token, VAULT_CACERT,
VAULT_CAPATH and VAULT_CLIENT_CERT by itself (§6.1). Every transport setting here
comes from VaultSettings, which config.load() resolved once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, cast

from kv2render.config import Config, VaultSettings
from kv2render.errors import (
    AccessDeniedError,
    AuthError,
    BadResponseError,
    Kv2RenderError,
    SecretReadError,
    TransientError,
)
from kv2render.model import SecretVersion, TokenInfo
from kv2render.refs import SecretLocation
from kv2render.store import network, responses, transport
from kv2render.store.auth import Authenticator, build_authenticator
from kv2render.store.backoff import READ_BASE, READ_CAP, pause
from kv2render.store.login import StoreLoginTransport, token_info
from kv2render.store.retries import Retries

if TYPE_CHECKING:
    # hvac and requests are imported when a store is built, not when the contract types
    # are: `kv2render check` never talks to a server and pays nothing for them (issue 4
    # "Start-up stays lean").
    import requests
    from hvac.adapters import RawAdapter

    # Only a daemon's poll lists folders: `--once` never imports it (KV2-AC-520).
    from kv2render.store import listing

__all__ = ["HvacSecretStore", "ListingStore", "SecretStore", "SessionStore", "open_store"]

log = logging.getLogger(__name__)


class SecretStore(Protocol):
    """What the rest of kv2render needs from a KV2 server. Unit tests fake this."""

    def read(self, location: SecretLocation) -> SecretVersion:
        """Read one secret version; raise a SecretReadError subclass on failure."""
        ...

    def close(self) -> None: ...


class ListingStore(SecretStore, Protocol):
    """A SecretStore that can also tell a folder's current versions in few requests."""

    def list_folder(
        self, mount: str, folder: str, names: Collection[str], *, max_requests: int
    ) -> listing.FolderVersions | listing.NotOffered:
        """The states of ``names`` (keys of ``mount/folder``) in at most ``max_requests``
        requests, or NotOffered; other failures raise, as a read's would."""
        ...


class SessionStore(SecretStore, Protocol):
    """A SecretStore that logs in and can be bounded in time: what --once drives."""

    @property
    def authenticator(self) -> Authenticator: ...

    def login(self) -> TokenInfo | None: ...

    def set_deadline(self, seconds: float | None, label: str = "") -> None: ...


class HvacSecretStore:
    """A SecretStore over one pooled requests.Session, via hvac.

    Thread-safe for concurrent ``read`` calls (the runner reads in a small pool);
    logins are serialised, and a 403 seen by several reads triggers one re-login.
    """

    def __init__(
        self,
        settings: VaultSettings,
        authenticator: Authenticator,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        stop_event: threading.Event | None = None,
        pool_size: int = 8,
        backoff_base: float = READ_BASE,
        backoff_cap: float = READ_CAP,
        rng: random.Random | None = None,
    ) -> None:
        """``sleep`` None waits on ``stop_event`` (a stop ends a retry wait at once); a test
        passes its own recorder (see backoff.pause)."""
        self._settings = settings
        self._auth = authenticator
        self._clock = clock
        self._retries = Retries(
            # config.load() already resolved Vault Agent's spelling (0 -> 12, -1 -> none):
            # VaultSettings.num_retries is the literal number of retries.
            max_retries=settings.num_retries,
            base=backoff_base,
            cap=backoff_cap,
            clock=clock,
            pause=pause(sleep, stop_event),
            stop=stop_event,
            rng=rng or random.Random(),
        )
        self._lock = threading.RLock()  # logins, token state, bearer header
        self._generation = 0  # bumped by each login: lets concurrent 403s share one re-login
        self._token_info: TokenInfo | None = None
        self._logged_in = False
        self._closed = False

        from hvac.api.auth_methods.token import Token
        from hvac.api.secrets_engines.kv_v2 import KvV2

        self._session = transport.new_session(settings, pool_size)
        self._adapter = self.adapter(token="", namespace=settings.namespace)
        self._kv = KvV2(self._adapter)
        self._token_api = Token(self._adapter)
        self._transport = StoreLoginTransport(self)

    # ------------------------------------------------------------------ plumbing

    @property
    def namespace(self) -> str | None:
        """vault.namespace (login.Wire)."""
        return self._settings.namespace

    def adapter(self, *, token: str, namespace: str | None) -> RawAdapter:
        """An hvac adapter on the shared session. token='' keeps hvac from sending
        X-Vault-Token (and from looking one up in the environment)."""
        from hvac.adapters import RawAdapter

        return RawAdapter(
            base_uri=self._settings.address,
            token=token,
            cert=None,
            verify=not self._settings.tls_skip_verify,
            # requests takes a float; the hvac stub says int.
            timeout=cast(int, self._settings.timeout),
            session=self._session,
            namespace=namespace or None,
            allow_redirects=False,  # never send the token to another host (issue 4)
            ignore_exceptions=True,
        )

    def send(
        self,
        where: str,
        call: Callable[[], requests.Response],
        *,
        login: bool,
        secrets: Iterable[str] = (),
    ) -> requests.Response:
        """Run one HTTP exchange, mapping network failures to kv2render errors. ``secrets``
        are the credentials this exchange carries: scrubbed from any error text."""
        exchange = transport.begin(
            self._settings.timeout, deadline=self._retries.monotonic_deadline()
        )
        try:
            return self._exchange(
                where, call, login=login, secrets=secrets, budget=exchange.timeout
            )
        except Kv2RenderError as exc:
            if exchange.fired and not isinstance(exc, BadResponseError | AuthError):
                # The watchdog cut a server off that kept answering too slowly to finish:
                # requests' timeout is per read, ours is for the whole exchange (KV2-INV-283).
                raise TransientError(
                    f"no complete answer from {self._settings.address} within "
                    f"{exchange.timeout:.3g}s",
                    where=where,
                ) from exc
            raise
        finally:
            transport.end(exchange)

    def _credentials(self) -> list[str]:
        """What this store sends as credentials right now (for scrubbing error text)."""
        found = [self._adapter.token or ""]
        auth = self._session.headers.get("Authorization")
        if isinstance(auth, str):
            found += [auth, auth.removeprefix("Bearer ")]
        return [c for c in found if c]

    def _exchange(
        self,
        where: str,
        call: Callable[[], requests.Response],
        *,
        login: bool,
        secrets: Iterable[str],
        budget: float,
    ) -> requests.Response:
        from hvac.exceptions import VaultError

        try:
            return call()
        except VaultError as exc:  # hvac's client-side checks (ParamValidationError, ...)
            raise SecretReadError(
                f"request rejected by hvac: {type(exc).__name__}", where=where
            ) from exc
        except Exception as exc:
            error = network.exchange_error(
                exc,
                where=where,
                vault=self._settings,
                identity=self._auth.identity,
                login=login,
                budget=budget,
                credentials=[*secrets, *self._credentials()],
            )
            if error is None:
                raise
            raise error from exc

    def status_error(
        self,
        where: str,
        resp: requests.Response,
        *,
        location: SecretLocation | None = None,
        secrets: Iterable[str] = (),
    ) -> Kv2RenderError:
        """Map a non-2xx answer to a kv2render error (responses.status_error); its
        ``http_status`` lets read() tell a 403 from other AuthErrors."""
        return responses.status_error(
            where,
            resp,
            address=self._settings.address,
            identity=self._auth.identity,
            location=location,
            credentials=[*secrets, *self._credentials()],
        )

    def set_deadline(self, seconds: float | None, label: str = "") -> None:
        """Bound every login, read and retry wait of this store to ``seconds`` from now
        (KV2-INV-354: --once's ``once_timeout``); None or 0 removes the bound. ``label``
        names the setting in messages (``--timeout 60s``)."""
        self._retries.set_deadline(seconds, label)

    # ------------------------------------------------------------------ reads

    def read(self, location: SecretLocation) -> SecretVersion:
        """GET <mount>/data/<path>[?version=N], retried on TransientError; one re-login on 403."""
        where = str(location)
        self.ensure_token()
        relogged = False
        while True:
            generation = self._generation
            try:
                return self._retries.run(where, lambda: self._read_once(location))
            except (AccessDeniedError, AuthError) as exc:
                if relogged or not self._auth.reloginable or not self._is_denial(exc):
                    raise
                relogged = True
                log.info("%s: access denied; logging in again once before giving up", where)
                with self._lock:
                    if self._generation == generation:  # nobody else re-logged meanwhile
                        self._do_login()

    @staticmethod
    def _is_denial(exc: Kv2RenderError) -> bool:
        # 403s only: "permission denied" or "invalid token"; a 401 or a refused login is not.
        return exc.http_status == 403

    def _read_once(self, location: SecretLocation) -> SecretVersion:
        where = str(location)
        self._refresh_header()
        resp = self.send(
            where,
            lambda: self._kv.read_secret_version(
                location.path,
                version=location.version,
                mount_point=location.mount,
                raise_on_deleted_version=True,  # explicit: hvac warns when it is omitted
            ),
            login=False,
        )
        status = resp.status_code
        if status != 200:
            if 200 <= status < 300:
                raise BadResponseError(f"the server answered {status} with no secret", where=where)
            raise self.status_error(where, resp, location=location)
        return responses.secret_version(
            where, location, responses.ok_json(where, resp, login=False)
        )

    def list_folder(
        self, mount: str, folder: str, names: Collection[str], *, max_requests: int
    ) -> listing.FolderVersions | listing.NotOffered:
        """GET <mount>/detailed-metadata/<folder>?list=true, page by page (KV2-INV-502).

        404 with no error text is an empty folder (OpenBao's answer, kv2-wire.md §2.4); a 404
        with text ("unsupported path", no such mount), 405, 400 and a policy's 403 are
        NotOffered (KV2-INV-501). Not retried: a listing only saves reads, so a failed page
        costs the pass one request and the daemon reads the folder's secrets at once,
        rather than wait out the read retry budget (minutes) before any read (KV2-FC-502)."""
        from kv2render.store import listing

        where = f"{mount}/detailed-metadata/{folder}"
        self.ensure_token()
        watched = frozenset(names)
        after = listing.page_after(watched)
        last = max(watched)
        limit = listing.page_limit(len(watched))
        states: dict[str, listing.KeyState] = {}
        for page in range(1, max_requests + 1):
            got = self._list_page(where, mount, folder, after, limit)
            if isinstance(got, listing.NotOffered):
                return got
            if got is None:  # empty (or nothing from `after` on)
                return listing.FolderVersions(states, page)
            keys, found = listing.parse_page(where, got, watched)
            states.update(found)
            if len(keys) < limit or not keys or keys[-1] >= last:
                return listing.FolderVersions(states, page)
            after = keys[-1]
        return listing.NotOffered(
            f"it holds too many keys to list for less than reading {len(watched)} secrets costs"
        )

    def _list_page(
        self, where: str, mount: str, folder: str, after: str | None, limit: int
    ) -> Mapping[str, Any] | listing.NotOffered | None:
        from hvac.utils import format_url

        from kv2render.store import listing

        self._refresh_header()
        params: dict[str, str | int] = {"list": "true", "limit": limit}
        if after is not None:
            params["after"] = after
        url = format_url("/v1/{}/detailed-metadata/{}", mount, folder)
        resp = self.send(where, lambda: self._adapter.get(url, params=params), login=False)
        status = resp.status_code
        if status == 200:
            return responses.ok_json(where, resp, login=False)
        answer = listing.refusal(status, *responses.json_body(resp))
        if answer is False:
            raise self.status_error(where, resp, location=SecretLocation(mount, folder))
        return answer

    def _refresh_header(self) -> None:
        headers = self._auth.header()
        if headers:
            with self._lock:
                for name, value in headers.items():
                    if self._session.headers.get(name) != value:
                        self._session.headers[name] = value

    # ------------------------------------------------------------------ token lifecycle

    @property
    def token_info(self) -> TokenInfo | None:
        return self._token_info

    @property
    def authenticator(self) -> Authenticator:
        return self._auth

    def login(self) -> TokenInfo | None:
        """Log in now (retrying transient failures); None for methods without a token."""
        with self._lock:
            self._do_login()
            return self._token_info

    def _do_login(self) -> None:
        if not self._auth.needs_login:
            self._refresh_header()
            self._logged_in = True
            return
        result = self._retries.run("login", lambda: self._auth.login(self._transport))
        self._adapter.token = result.token
        self._generation += 1
        self._logged_in = True
        self._token_info = TokenInfo(result.ttl, result.renewable, self._clock())
        ttl = "no expiry" if result.ttl is None else f"ttl {result.ttl:g}s"
        renewable = "renewable" if result.renewable else "not renewable"
        log.info("login ok: %s, %s, %s", self._auth.label, ttl, renewable)

    def _expiring(self, info: TokenInfo | None) -> bool:
        if info is None or info.ttl is None:
            return False
        remaining = info.ttl - (self._clock() - info.learned_at)
        return remaining <= min(10.0, info.ttl * 0.1)

    def ensure_token(self) -> None:
        """Log in when there is no token yet or it is about to expire."""
        if self._logged_in and not self._expiring(self._token_info):
            return
        with self._lock:
            if not self._logged_in or self._expiring(self._token_info):
                self._do_login()

    def _token_call(self, where: str, call: Callable[[], requests.Response]) -> Mapping[str, Any]:
        if not self._auth.needs_login:
            raise AuthError(
                f"{self._auth.method} has no token (no lookup-self or renew-self)", where=where
            )
        if not self._adapter.token:
            self.ensure_token()
        resp = self._retries.run(where, lambda: self._checked(where, call()))
        return responses.ok_json(where, resp, login=True)

    def _checked(self, where: str, resp: requests.Response) -> requests.Response:
        if resp.status_code != 200:
            raise self.status_error(where, resp)
        return resp

    def renew(self) -> TokenInfo:
        """POST auth/token/renew-self; the new TTL tells the daemon whether it was extended."""
        where = "auth/token/renew-self"
        body = self._token_call(
            where, lambda: self.send(where, self._token_api.renew_self, login=True)
        )
        info = token_info(body, where=where, now=self._clock())
        with self._lock:
            self._token_info = info
        log.info(
            "token renewed: %s, %s",
            "no expiry" if info.ttl is None else f"ttl {info.ttl:g}s",
            "renewable" if info.renewable else "not renewable",
        )
        return info

    def lookup_self(self) -> TokenInfo:
        """GET auth/token/lookup-self: the current token's TTL and renewability."""
        where = "auth/token/lookup-self"
        body = self._token_call(
            where, lambda: self.send(where, self._token_api.lookup_self, login=True)
        )
        info = token_info(body, where=where, now=self._clock())
        with self._lock:
            self._token_info = info
        return info

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._session.close()

    def __enter__(self) -> HvacSecretStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<HvacSecretStore {self._settings.address} {self._auth.label}>"


def open_store(
    cfg: Config,
    *,
    stop_event: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] | None = None,
    once: bool = False,
    on_token: Callable[[str], None] | None = None,
) -> HvacSecretStore:
    """The one way to open the real store for a loaded config (app's --once and the daemon):
    its authenticator, a pool sized for a pass's concurrent reads. ``stop_event``: the
    daemon's stop, which ends a retry wait at once. ``once``: a --once run (the AppRole
    secret_id file outlives a failed run, KV2-INV-352). ``on_token``: the token sink's
    writer, called after each login (KV2-INV-490)."""
    return HvacSecretStore(
        cfg.vault,
        build_authenticator(cfg.auth, once=once, on_token=on_token),
        clock=clock,
        sleep=sleep,
        stop_event=stop_event,
        pool_size=cfg.template_config.concurrency,
    )
