"""The only module that imports hvac and requests (spec: hvac boundary, KV2-INV-05x).

    HvacSecretStore(VaultSettings, Authenticator)
      ├── one requests.Session, pooled, TLS from one SSLContext   (_TLSAdapter)
      ├── hvac RawAdapter + KvV2 / Token API classes              (no env look-ups)
      ├── read(location) -> SecretVersion   retries TransientError, one re-login on 403
      └── login / ensure_token / renew / lookup_self             token lifecycle for loop.py

hvac is used with ``RawAdapter(ignore_exceptions=True)``: hvac builds the URL (base
path + ``/v1`` + quoted path), sends X-Vault-Request / X-Vault-Token /
X-Vault-Namespace, and hands back the ``requests.Response``; this module maps
status, headers and body to kv2render errors itself. hvac's own exceptions drop
the response headers (so ``Retry-After`` would be lost) and only parse a body
whose Content-Type is exactly ``application/json`` (wire reference §6.2).

hvac.Client is not used: it reads VAULT_TOKEN, ~/.vault-token, VAULT_CACERT,
VAULT_CAPATH and VAULT_CLIENT_CERT by itself (§6.1). Every transport setting here
comes from VaultSettings, which config.load() resolved once.
"""

from __future__ import annotations

import logging
import random
import re
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from kv2render import jsonnum
from kv2render.config import Config, VaultSettings
from kv2render.errors import (
    AccessDeniedError,
    AuthError,
    BadResponseError,
    ConfigError,
    Kv2RenderError,
    SecretDeletedError,
    SecretDestroyedError,
    SecretNotFoundError,
    SecretReadError,
    TransientError,
)
from kv2render.model import SecretVersion, TokenInfo
from kv2render.redact import scrub_http
from kv2render.refs import SecretLocation
from kv2render.store import transport
from kv2render.store.auth import Authenticator, build_authenticator

if TYPE_CHECKING:
    # hvac and requests are imported when a store is built, not when the contract types
    # are: `kv2render check` never talks to a server and pays nothing for them (issue 4
    # "Start-up stays lean").
    import requests
    from hvac.adapters import RawAdapter

__all__ = ["HvacSecretStore", "SecretStore", "open_store"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_MAX_RETRY_AFTER = 300.0  # a server's Retry-After is honoured up to this many seconds
_MAX_ERROR_TEXT = 300  # server `errors` strings are metadata, but bounded
_MULTIERROR_HEADER = re.compile(r"\d+ errors? occurred:\s*")  # go-multierror's first line
# KV2-INV-354: with a deadline, a retry wait ends at least this long before it, so that the
# last attempt can still be made (a refused connect takes a millisecond; a silent host gets
# this second as its connect timeout).
_LAST_ATTEMPT = 1.0


class SecretStore(Protocol):
    """What the rest of kv2render needs from a KV2 server. Unit tests fake this."""

    def read(self, location: SecretLocation) -> SecretVersion:
        """Read one secret version; raise a SecretReadError subclass on failure."""
        ...

    def close(self) -> None: ...


# --------------------------------------------------------------------------- responses


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it wraps (requests/urllib3 nest them in args/reason)."""
    chain = [exc]
    while len(chain) < 8:
        inner = chain[-1]
        nxt = inner.__cause__ or inner.__context__
        reason = getattr(inner, "reason", None)
        if nxt is None and isinstance(reason, BaseException):
            nxt = reason
        if nxt is None and inner.args and isinstance(inner.args[0], BaseException):
            nxt = inner.args[0]
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    return chain


def _short(exc: BaseException, credentials: Iterable[str] = ()) -> str:
    """A one-line reason for a low-level error: the innermost cause, no bodies, bounded, and
    scrubbed of credentials and header values (KV2-INV-350: requests quotes a header value it
    refuses)."""
    inner = _chain(exc)[-1]
    return scrub_http(str(inner) or type(inner).__name__, credentials)


def _one_line(error: str) -> str:
    r"""One server ``errors`` string on one line. The real server wraps ACL denials in
    go-multierror's ``"1 error occurred:\n\t* permission denied\n\n"`` (openbao-real.md):
    keep the items, and turn every other line break or control character into a space,
    so that no answer can split a log line or forge one (KV2-AC-318)."""
    header = _MULTIERROR_HEADER.match(error)
    if header is not None:
        items = (line.strip().removeprefix("* ") for line in error[header.end() :].splitlines())
        error = "; ".join(item for item in items if item)
    return " ".join("".join(" " if _is_control(ch) else ch for ch in error).split())


def _is_control(ch: str) -> bool:
    # C0/C1 controls and the Unicode line/paragraph separators str.splitlines() honours.
    return ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029"


_HTTP_TO_HTTPS = b"Client sent an HTTP request to an HTTPS server"


def _errors_text(body: Any) -> str:
    """The server's ``errors`` strings (metadata), each on one line, joined and truncated."""
    if not isinstance(body, Mapping):
        return ""
    errors = body.get("errors")
    if not isinstance(errors, list):
        return ""
    text = "; ".join(line for line in (_one_line(str(e)) for e in errors) if line)
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "..."


def _json_body(resp: requests.Response) -> tuple[Any, str | None]:
    """(parsed body, problem). The media type must be application/json; parameters such
    as ``; charset=utf-8`` are accepted (hvac itself requires the exact string, §6.2)."""
    ctype = resp.headers.get("Content-Type", "")
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json":
        shown = ctype[:60] if ctype else "missing"
        return None, f"the response Content-Type is {shown!r}, not application/json"
    try:
        # Numbers keep their text (jsonnum), as Vault's own client decodes them.
        body = jsonnum.loads(resp.content)
    except ValueError:
        return None, "the response body is not valid JSON"
    except RecursionError:
        too_deep = True  # deeper than the decoder goes: far past the bound below
    else:
        too_deep = transport.json_depth(body) > transport.MAX_JSON_DEPTH
    if too_deep:
        return None, f"the response body nests JSON deeper than {transport.MAX_JSON_DEPTH} levels"
    return body, None


def _retry_after(resp: requests.Response) -> float | None:
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, _MAX_RETRY_AFTER))


def _policy_hint(location: SecretLocation) -> str:
    return f'grant "read" on "{location.mount}/data/{location.path}"'


# --------------------------------------------------------------------------- the store


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
        sleep: Callable[[float], None] = time.sleep,
        stop_event: threading.Event | None = None,
        pool_size: int = 8,
        backoff_base: float = 0.25,
        backoff_cap: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._auth = authenticator
        self._clock = clock
        self._sleep = sleep
        self._stop = stop_event
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rng = rng or random.Random()
        # config.load() already resolved Vault Agent's spelling (0 -> 12, -1 -> none):
        # VaultSettings.num_retries is the literal number of retries.
        self._max_retries = max(0, settings.num_retries)
        self._lock = threading.RLock()  # logins, token state, bearer header
        self._generation = 0  # bumped by each login: lets concurrent 403s share one re-login
        self._token_info: TokenInfo | None = None
        self._logged_in = False
        self._closed = False
        # --once's overall deadline (KV2-INV-354): a self._clock reading, or None (daemon).
        self._deadline: float | None = None
        self._deadline_label = ""

        import requests
        from hvac.api.auth_methods.token import Token
        from hvac.api.secrets_engines.kv_v2 import KvV2

        verify = not settings.tls_skip_verify
        if settings.tls_skip_verify:
            # app.warn_transport logs the warning once per start (KV2-INV-190); urllib3
            # would otherwise warn on every request (an error under filterwarnings=error).
            import urllib3

            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
        session = requests.Session()
        # No ~/.netrc credentials, REQUESTS_CA_BUNDLE or proxy variables: config.load()
        # resolved the environment once (STYLE convention 2).
        session.trust_env = False
        # Plain http (a loopback dev server, a local agent) gets no SSL context: building
        # one is ~20 ms of every --once (benchmarks/run.py), and redirects are never
        # followed, so nothing can move the session to https.
        https = settings.address.lower().startswith("https://")
        adapter = transport.adapter_class()(
            transport.ssl_context(settings) if https else None,
            settings.tls_server_name,
            max(1, pool_size),
        )
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # The body is read as a stream under a size bound (KV2-INV-282).
        session.hooks["response"].append(transport.bounded_body_hook)
        # hvac quirk (§6.1): a session's truthy verify/cert replaces the verify=/cert=
        # arguments. Both are set explicitly; the CA and client cert live in the SSLContext.
        session.verify = verify
        session.cert = None
        self._session = session
        self._adapter = self._new_adapter(token="", namespace=settings.namespace)
        self._kv = KvV2(self._adapter)
        self._token_api = Token(self._adapter)
        self._transport = _LoginTransport(self)

    # ------------------------------------------------------------------ plumbing

    def _new_adapter(self, *, token: str, namespace: str | None) -> RawAdapter:
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

    def _send(
        self,
        where: str,
        call: Callable[[], requests.Response],
        *,
        login: bool,
        secrets: Iterable[str] = (),
    ) -> requests.Response:
        """Run one HTTP exchange, mapping network failures to kv2render errors. ``secrets``
        are the credentials this exchange carries: scrubbed from any error text."""
        deadline = None
        if self._deadline is not None:
            # The deadline is kept on self._clock; the watchdog runs on time.monotonic.
            deadline = time.monotonic() + (self._deadline - self._clock())
        exchange = transport.begin(self._settings.timeout, deadline=deadline)
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
        import requests
        from hvac.exceptions import VaultError

        def short(exc: BaseException) -> str:
            return _short(exc, [*secrets, *self._credentials()])

        try:
            return call()
        except requests.exceptions.SSLError as exc:
            raise self._tls_error(where, exc, login=login) from exc
        except requests.exceptions.Timeout as exc:
            raise TransientError(
                f"no answer from {self._settings.address} within {budget:.3g}s",
                where=where,
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            reason = short(exc)
            reset = "reset" in reason.lower() or "eof" in reason.lower()
            raise TransientError(
                f"cannot reach {self._settings.address} ({reason})",
                where=where,
                hint=self._client_cert_hint() if reset else None,
            ) from exc
        except (
            requests.exceptions.InvalidURL,
            requests.exceptions.InvalidSchema,
            requests.exceptions.MissingSchema,
        ) as exc:
            raise SecretReadError(
                f"vault.address {self._settings.address!r} is not a usable URL", where=where
            ) from exc
        except (requests.exceptions.InvalidHeader, UnicodeEncodeError) as exc:
            # KV2-INV-351: a header value HTTP cannot carry (a line break, a non-Latin-1
            # character) is refused before any byte is sent; a retry would send the same
            # header again, so it is not transient. auth.py refuses such credentials first;
            # this is the net under it, and the text never quotes the value.
            raise AuthError(
                "a request header holds a character HTTP headers cannot carry "
                f"({type(exc).__name__})",
                where=where,
                hint=f"check {self._auth.identity} and vault.namespace",
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise TransientError(f"request failed ({short(exc)})", where=where) from exc
        except VaultError as exc:  # hvac's client-side checks (ParamValidationError, ...)
            raise SecretReadError(
                f"request rejected by hvac: {type(exc).__name__}", where=where
            ) from exc

    def _tls_error(self, where: str, exc: BaseException, *, login: bool) -> Kv2RenderError:
        """A certificate problem is not transient: retrying cannot fix it."""
        # urllib3 checks tls_server_name itself and raises its own CertificateError.
        from urllib3.util.ssl_match_hostname import CertificateError

        chain = _chain(exc)
        verify = next(
            (e for e in chain if isinstance(e, ssl.SSLCertVerificationError | CertificateError)),
            None,
        )
        if verify is not None:
            cls: type[Kv2RenderError] = AuthError if login else SecretReadError
            why = getattr(verify, "verify_message", None) or str(verify)
            return cls(
                "TLS: the server certificate could not be verified "
                f"({scrub_http(str(why), limit=160)})",
                where=where,
                hint="check vault.ca_cert / VAULT_CACERT, vault.ca_path and vault.tls_server_name",
            )
        reason = _short(exc, self._credentials())
        lowered = reason.lower()
        if "wrong version number" in lowered and self._settings.address.startswith("https://"):
            # OpenSSL's word for a peer that answered in plain text: a plain-HTTP listener
            # (the real OpenBao dev server, measured). Retrying cannot fix an address.
            return ConfigError(
                f"the server at this address does not speak TLS ({reason})",
                where="vault.address",
                hint=f"use {self._settings.address.replace('https://', 'http://', 1)} "
                "if the server really has no TLS, or check the port",
            )
        if any(s in lowered for s in ("certificate required", "bad certificate", "unknown ca")):
            return AuthError(
                f"TLS: the server refused this client's certificate ({reason})",
                where=where,
                hint="check vault.client_cert / vault.client_key (VAULT_CLIENT_CERT)",
            )
        return TransientError(f"TLS error ({reason})", where=where, hint=self._client_cert_hint())

    def _client_cert_hint(self) -> str | None:
        """With TLS 1.3 a server that requires a client certificate may just close the
        connection (EOF / reset) instead of sending an alert: say so when none is set."""
        if self._settings.address.startswith("https") and self._settings.client_cert is None:
            return (
                "if the server requires a client certificate, set vault.client_cert and "
                "vault.client_key"
            )
        return None

    def _status_error(
        self,
        where: str,
        resp: requests.Response,
        *,
        location: SecretLocation | None = None,
        secrets: Iterable[str] = (),
    ) -> Kv2RenderError:
        """Map a non-2xx answer (or a redirect) to a kv2render error (issue 4 "Error mapping").

        The error carries ``http_status`` so that read() can tell a 403 from other AuthErrors.
        """
        error = self._map_status(where, resp, location=location, secrets=secrets)
        error.http_status = resp.status_code  # type: ignore[attr-defined]
        return error

    def _map_status(  # noqa: C901  # split by the store helper; the lead removes this noqa
        self,
        where: str,
        resp: requests.Response,
        *,
        location: SecretLocation | None,
        secrets: Iterable[str],
    ) -> Kv2RenderError:
        status = resp.status_code
        body, _problem = _json_body(resp)
        # Defence in depth: a server that echoes a submitted credential back, or a line break.
        errors = scrub_http(_errors_text(body), [*secrets, *self._credentials()], limit=None)
        detail = f": {errors}" if errors else ""
        login = location is None
        if status == 400 and body is None and _HTTP_TO_HTTPS in resp.content[:200]:
            # Go's HTTPS listener answering a plain-HTTP request (the real OpenBao and Vault
            # do): the address is wrong, not the credential. Recognised, never quoted.
            return ConfigError(
                "the server speaks HTTPS but the address says http://",
                where="vault.address",
                hint=f"use {self._settings.address.replace('http://', 'https://', 1)}",
            )
        if 300 <= status < 400:
            return BadResponseError(
                f"the server answered {status} (a redirect); redirects are not followed, "
                "so the token is never sent elsewhere",
                where=where,
                hint="point vault.address at the server itself",
            )
        if status == 401:
            return AuthError(
                f"401 unauthorized{detail}", where=where, hint=f"check {self._auth.identity}"
            )
        if status == 403:
            if login:
                return AuthError(f"login refused (403){detail}", where=where)
            if "invalid token" in errors.lower():
                return AuthError(
                    f"the token was rejected (403{detail})",
                    where=where,
                    hint=f"check {self._auth.identity}",
                )
            assert location is not None
            return AccessDeniedError(
                f"permission denied (403){detail}", where=where, hint=_policy_hint(location)
            )
        if status == 404:
            if "namespace not found" in errors.lower():
                # OpenBao's answer to an X-Vault-Namespace that does not exist, on any path
                # (kv2-wire.md §2.3); neither a mount_path nor the secret's path is at fault.
                cls: type[Kv2RenderError] = AuthError if login else SecretNotFoundError
                return cls(
                    "namespace not found (404)",
                    where=where,
                    hint="check vault.namespace (--namespace, BAO_NAMESPACE, VAULT_NAMESPACE)"
                    + (" and auto_auth.method.namespace" if login else ""),
                )
            if login:
                return AuthError(
                    f"nothing answers at this path (404){detail}",
                    where=where,
                    hint="check auto_auth.method.mount_path and auto_auth.method.namespace",
                )
            assert location is not None
            return _not_found(where, location, body, detail)
        if status == 429 or status >= 500:
            kind = "rate limited" if status == 429 else "server error"
            return TransientError(
                f"{kind} ({status}){detail}", where=where, retry_after=_retry_after(resp)
            )
        if login and status == 400:
            return AuthError(f"login refused (400){detail}", where=where)
        if status == 400:
            return SecretReadError(f"request refused (400){detail}", where=where)
        return BadResponseError(f"unexpected HTTP status {status}{detail}", where=where)

    def _ok_json(self, where: str, resp: requests.Response, *, login: bool) -> Mapping[str, Any]:
        body, problem = _json_body(resp)
        cls: type[Kv2RenderError] = AuthError if login else BadResponseError
        if problem is not None:
            raise cls(problem, where=where, hint="is vault.address a KV2 protocol server?")
        if not isinstance(body, dict):
            raise cls("the response body is not a JSON object", where=where)
        return body

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """KV2-INV-054: a wait drawn from [d/2, d], d = min(cap, base * 2**attempt); a
        server's Retry-After (already capped at 5 minutes) is a floor."""
        ceiling = min(self._backoff_cap, self._backoff_base * (2.0**attempt))
        delay = ceiling * (0.5 + 0.5 * self._rng.random())
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay

    def _wait(self, delay: float) -> bool:
        """Sleep ``delay``; True when the stop event fired (a stop interrupts the wait)."""
        if self._stop is not None and self._sleep is time.sleep:
            return self._stop.wait(delay)
        self._sleep(delay)
        return self._stop is not None and self._stop.is_set()

    def set_deadline(self, seconds: float | None, label: str = "") -> None:
        """Bound every login, read and retry wait of this store to ``seconds`` from now
        (KV2-INV-354: --once's ``once_timeout``); None or 0 removes the bound. ``label``
        names the setting in messages (``--timeout 60s``)."""
        if not seconds:
            self._deadline = None
            return
        self._deadline = self._clock() + seconds
        self._deadline_label = label or f"a {seconds:g}s deadline"

    def _left(self) -> float | None:
        return None if self._deadline is None else self._deadline - self._clock()

    def _with_retries(self, where: str, call: Callable[[], _T]) -> _T:
        attempt = 0
        while True:
            if self._stop is not None and self._stop.is_set():
                raise TransientError("stopping: request not sent", where=where)
            try:
                return call()
            except TransientError as exc:
                delay = self._backoff(attempt, exc.retry_after)
                left = self._left()
                out_of_time = False
                if left is not None:
                    # KV2-INV-354: the last wait is cut so that one more attempt still starts
                    # _LAST_ATTEMPT before the deadline; with less than that left, stop.
                    room = left - _LAST_ATTEMPT
                    # A Retry-After past the deadline: the server said no attempt can succeed
                    # in time, so none is made (a wait would only delay the same exit).
                    late = exc.retry_after is not None and exc.retry_after > room
                    out_of_time = room <= 0 or late
                    delay = min(delay, max(room, 0.0))
                if attempt >= self._max_retries or out_of_time:
                    raise self._gave_up(exc, attempt, out_of_time) from exc
                attempt += 1
                if left is None:
                    log.warning("%s; retry %d/%d in %.2fs", exc, attempt, self._max_retries, delay)
                else:
                    log.warning(
                        "%s; retry %d/%d in %.2fs, %.0fs left of %s",
                        exc,
                        attempt,
                        self._max_retries,
                        delay,
                        max(0.0, left),
                        self._deadline_label,
                    )
                if self._wait(delay):
                    raise

    def _gave_up(self, exc: TransientError, attempt: int, out_of_time: bool) -> TransientError:
        # KV2-FC-054: name the number of attempts and the last cause; KV2-FC-354: and the
        # deadline when that is what ended the retries.
        attempts = f"{attempt + 1} attempt" + ("s" if attempt else "")
        why = f"{self._deadline_label} ran out" if out_of_time else "gave up"
        hint = exc.hint
        if out_of_time:
            more = "raise --timeout (once_timeout) if the server needs longer to start"
            hint = f"{hint}; {more}" if hint else more
        return TransientError(
            f"{exc.message} ({why} after {attempts})",
            where=exc.where,
            hint=hint,
            retry_after=exc.retry_after,
        )

    # ------------------------------------------------------------------ reads

    def read(self, location: SecretLocation) -> SecretVersion:
        """GET <mount>/data/<path>[?version=N], retried on TransientError; one re-login on 403."""
        where = str(location)
        self.ensure_token()
        relogged = False
        while True:
            generation = self._generation
            try:
                return self._with_retries(where, lambda: self._read_once(location))
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
        return getattr(exc, "http_status", None) == 403

    def _read_once(self, location: SecretLocation) -> SecretVersion:
        where = str(location)
        self._refresh_header()
        resp = self._send(
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
            raise self._status_error(where, resp, location=location)
        return _secret_version(where, location, self._ok_json(where, resp, login=False))

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
        result = self._with_retries("login", lambda: self._auth.login(self._transport))
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
        resp = self._with_retries(where, lambda: self._checked(where, call()))
        return self._ok_json(where, resp, login=True)

    def _checked(self, where: str, resp: requests.Response) -> requests.Response:
        if resp.status_code != 200:
            raise self._status_error(where, resp)
        return resp

    def renew(self) -> TokenInfo:
        """POST auth/token/renew-self; the new TTL tells the daemon whether it was extended."""
        where = "auth/token/renew-self"
        body = self._token_call(
            where, lambda: self._send(where, self._token_api.renew_self, login=True)
        )
        auth = body.get("auth")
        if not isinstance(auth, Mapping):
            raise AuthError("the renew-self response has no auth object", where=where)
        lease = auth.get("lease_duration")
        ttl = float(lease) if isinstance(lease, int | float) and lease > 0 else None
        info = TokenInfo(ttl, bool(auth.get("renewable")), self._clock())
        with self._lock:
            self._token_info = info
        log.info(
            "token renewed: %s, %s",
            "no expiry" if ttl is None else f"ttl {ttl:g}s",
            "renewable" if info.renewable else "not renewable",
        )
        return info

    def lookup_self(self) -> TokenInfo:
        """GET auth/token/lookup-self: the current token's TTL and renewability."""
        where = "auth/token/lookup-self"
        body = self._token_call(
            where, lambda: self._send(where, self._token_api.lookup_self, login=True)
        )
        data = body.get("data")
        if not isinstance(data, Mapping):
            raise AuthError("the lookup-self response has no data object", where=where)
        raw = data.get("ttl")
        ttl = float(raw) if isinstance(raw, int | float) and raw > 0 else None
        info = TokenInfo(ttl, bool(data.get("renewable")), self._clock())
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


class _LoginTransport:
    """The LoginTransport auth.py talks through: unauthenticated POSTs for logins and
    token-bearing GETs for lookup-self, on the store's session."""

    def __init__(self, store: HvacSecretStore) -> None:
        self._store = store

    def post(
        self, path: str, body: Mapping[str, Any], *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        store = self._store
        ns = namespace if namespace is not None else store._settings.namespace
        adapter = store._new_adapter(token="", namespace=ns)
        secrets = [v for v in body.values() if isinstance(v, str)]
        resp = store._send(
            path, lambda: adapter.post(f"/v1/{path}", json=dict(body)), login=True, secrets=secrets
        )
        if resp.status_code != 200:
            raise store._status_error(path, resp, secrets=secrets)
        return store._ok_json(path, resp, login=True)

    def get(self, path: str, *, token: str) -> Mapping[str, Any]:
        store = self._store
        adapter = store._new_adapter(token=token, namespace=store._settings.namespace)
        resp = store._send(path, lambda: adapter.get(f"/v1/{path}"), login=True, secrets=[token])
        if resp.status_code != 200:
            raise store._status_error(path, resp, secrets=[token])
        return store._ok_json(path, resp, login=True)


def _not_found(where: str, location: SecretLocation, body: Any, detail: str) -> SecretNotFoundError:
    """404: a KV2 404 for a deleted or destroyed version carries data.metadata (§2.2)."""
    data = body.get("data") if isinstance(body, Mapping) else None
    meta = data.get("metadata") if isinstance(data, Mapping) else None
    if isinstance(meta, Mapping):
        version = meta.get("version")
        which = f"version {version}" if isinstance(version, int) else "this version"
        if meta.get("destroyed") is True:
            return SecretDestroyedError(
                f"{which} is destroyed; its data is gone",
                where=where,
                hint="write a new version, or pin a version that still exists",
            )
        if meta.get("deletion_time"):
            return SecretDeletedError(
                f"{which} is deleted",
                where=where,
                hint="undelete it (vault kv undelete) or write a new version",
            )
    if location.version is not None:
        return SecretNotFoundError(
            f"no version {location.version} at this path{detail}",
            where=where,
            hint="check the ?version= of the reference",
        )
    return SecretNotFoundError(
        f"no secret at this path{detail}",
        where=where,
        hint=f"check the mount ({location.mount!r}), the path and vault.namespace",
    )


def _secret_version(where: str, location: SecretLocation, body: Mapping[str, Any]) -> SecretVersion:
    """Validate a 200 KV2 read (issue 4 "Bad input"). A future deletion_time on a 200 is a
    scheduled deletion (delete_version_after), not a deleted version (§2.1)."""
    data = body.get("data")
    if not isinstance(data, Mapping):
        raise BadResponseError("the response has no data object", where=where)
    if data.get("data") is None:
        raise BadResponseError(
            "the response has no data.data",
            where=where,
            hint="is the mount a KV version 2 engine?",
        )
    values = data["data"]
    if not isinstance(values, Mapping):
        raise BadResponseError(
            f"data.data is a JSON {type(values).__name__}, not an object", where=where
        )
    metadata = data.get("metadata")
    if not isinstance(metadata, Mapping):
        raise BadResponseError(
            "the response has no data.metadata",
            where=where,
            hint="is the mount a KV version 2 engine?",
        )
    version = metadata.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise BadResponseError("data.metadata.version is not an integer", where=where)
    if location.version is not None and version != location.version:
        raise BadResponseError(
            f"asked for version {location.version}, the server answered version {version}",
            where=where,
        )
    if not _valid_text(values):
        # A lone surrogate (JSON "\ud800") decodes in Python but cannot be written out.
        raise BadResponseError("data.data holds text that is not valid Unicode", where=where)
    log.debug("read %s: version %d", where, version)
    return SecretVersion(location, version, dict(values), dict(metadata))


def _valid_text(value: Any) -> bool:
    """True when every string (keys included) in a decoded JSON value encodes as UTF-8."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def open_store(
    cfg: Config,
    *,
    stop_event: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    once: bool = False,
) -> HvacSecretStore:
    """The real store for a loaded config: its authenticator, pool sized for the pass.
    ``once``: for a --once run (the AppRole secret_id file outlives a failed run)."""
    return HvacSecretStore(
        cfg.vault,
        build_authenticator(cfg.auth, cfg.vault, once=once),
        clock=clock,
        sleep=sleep,
        stop_event=stop_event,
        pool_size=cfg.template_config.concurrency,
    )
