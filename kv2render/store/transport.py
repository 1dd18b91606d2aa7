"""The store's transport: TLS, connection pools, and the guards on every exchange.

Used only by the store (KV2-INV-050: the HTTP stack stays behind the store). Three
things requests and urllib3 do not give us:

* one SSLContext holding the trust store and the client certificate, with an SNI
  override (``tls_server_name``) and no certifi bundle mixed into a private CA;
* a deadline on the whole exchange (KV2-INV-283): ``timeout`` in requests is an idle
  timeout per socket read, so a server trickling a byte at a time would hold a pass
  forever. A watchdog thread shuts the socket down when the deadline passes;
* a bound on the body (KV2-INV-282): at most 4 MiB after decompression, read as a
  stream, so a 10 MB answer or a gzip bomb is refused before it is all in memory.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import socket
import ssl
import threading
import time
import warnings
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kv2render.config import VaultSettings
from kv2render.errors import BadResponseError, ConfigError
from kv2render.refs import hide_marked

if TYPE_CHECKING:
    import requests

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "Exchange",
    "adapter_class",
    "bounded_body_hook",
    "json_depth",
    "new_session",
    "pem_certificates",
    "ssl_context",
]

MAX_BODY_BYTES = 4 << 20  # a KV2 secret is at most 512 KiB by default in Vault
MAX_JSON_DEPTH = 64

log = logging.getLogger(__name__)


class _HideMarked(logging.Filter):
    """urllib3 logs request lines at trace level; a path computed from a secret value shows
    redacted there too (KV2-INV-497)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        hidden = hide_marked(text)
        if hidden != text:
            record.msg, record.args = hidden, ()
        return True


for _name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection"):
    logging.getLogger(_name).addFilter(_HideMarked())


def _reason(exc: BaseException) -> str:
    from kv2render.redact import scrub_http

    return scrub_http(str(exc) or type(exc).__name__)


# -- TLS -----------------------------------------------------------------------------------


def pem_certificates(directory: Path) -> str:
    """Every PEM certificate in the files of ``directory``, concatenated.

    ``vault.ca_path`` is a plain directory of PEM files (Vault's CAPath). OpenSSL's
    capath only finds certificates under c_rehash'ed names, so each file is read and
    the certificates are loaded as cadata instead: no temp file, any file name works.
    """
    where = "vault.ca_path"
    try:
        entries = sorted(p for p in directory.iterdir() if p.is_file())
    except OSError as exc:
        raise ConfigError(
            f"cannot list the CA directory {directory} ({exc.strerror})", where=where
        ) from exc
    chunks: list[str] = []
    for entry in entries:
        try:
            text = entry.read_text(encoding="ascii", errors="ignore")
        except OSError:
            continue
        if "-----BEGIN CERTIFICATE-----" in text:
            chunks.append(text)
    if not chunks:
        raise ConfigError(f"no PEM certificate found in {directory}", where=where)
    return "\n".join(chunks)


def ssl_context(settings: VaultSettings) -> ssl.SSLContext:
    """One SSLContext carrying the trust store and the client certificate (issue 6).

    Precedence follows Vault's client: ca_cert wins over ca_path; with neither, the
    system store (or certifi's bundle where the system has none). Only the configured
    CA is trusted when one is given: requests' default certifi bundle is not added.
    """
    if settings.tls_skip_verify:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif settings.ca_cert is not None:
        try:
            ctx = ssl.create_default_context(cafile=str(settings.ca_cert))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the CA bundle {settings.ca_cert} ({_reason(exc)})",
                where="vault.ca_cert",
                hint="give a PEM file of CA certificates",
            ) from exc
    elif settings.ca_path is not None:
        try:
            ctx = ssl.create_default_context(cadata=pem_certificates(settings.ca_path))
        except ssl.SSLError as exc:
            raise ConfigError(
                f"cannot load the CA certificates in {settings.ca_path} ({_reason(exc)})",
                where="vault.ca_path",
            ) from exc
    else:
        ctx = ssl.create_default_context()
        if not ctx.cert_store_stats().get("x509_ca"):
            import certifi  # requests' own dependency

            ctx.load_verify_locations(cafile=certifi.where())
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # Vault's listener default minimum
    if settings.client_cert is not None:
        key = str(settings.client_key) if settings.client_key is not None else None
        try:
            ctx.load_cert_chain(str(settings.client_cert), key)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load the client certificate {settings.client_cert} "
                f"with key {settings.client_key} ({_reason(exc)})",
                where="vault.client_cert",
                hint="give PEM files for vault.client_cert and vault.client_key",
            ) from exc
    return ctx


# -- the deadline ---------------------------------------------------------------------------


class Exchange:
    """One HTTP exchange's deadline; ``fired`` tells the caller the watchdog cut it off.
    ``timeout`` is the exchange's own budget in seconds (for messages). A slotted class:
    nothing compares or prints it, and a dataclass costs import time (KV2-NFR-520)."""

    __slots__ = ("deadline", "timeout", "fired", "_conn")

    def __init__(self, deadline: float, timeout: float = 0.0) -> None:
        self.deadline = deadline
        self.timeout = timeout
        self.fired = False
        self._conn: Any = None


class _Watchdog:
    """One daemon thread for every exchange in flight: at an exchange's deadline, it shuts
    its socket down, so the blocked read in the caller's thread returns at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Exchange]] = []
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, exchange: Exchange) -> None:
        with self._cond:
            heapq.heappush(self._heap, (exchange.deadline, next(self._seq), exchange))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="kv2render-deadline", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2]._conn is False or self._heap[0][0] <= now):
                    _, _, exchange = heapq.heappop(self._heap)
                    if exchange._conn is not False:
                        _cut(exchange)
                timeout = self._heap[0][0] - now if self._heap else None
                self._cond.wait(timeout)

    def done(self, exchange: Exchange) -> None:
        # Marked finished under the lock, so no cut can follow; the entry leaves the heap
        # lazily (no O(n) removal per request).
        with self._cond:
            exchange._conn = False


def _cut(exchange: Exchange) -> None:
    exchange.fired = True
    sock = getattr(exchange._conn, "sock", None)
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


_WATCHDOG = _Watchdog()
_CURRENT = threading.local()


def begin(timeout: float, deadline: float | None = None) -> Exchange:
    """Start the deadline of the calling thread's next exchange: ``timeout`` seconds from
    now, or the overall ``deadline`` (a ``time.monotonic()`` reading, --once's
    ``once_timeout``, KV2-INV-354) when that comes first."""
    now = time.monotonic()
    end_at = now + timeout if deadline is None else min(now + timeout, deadline)
    exchange = Exchange(end_at, max(0.0, end_at - now))
    _CURRENT.exchange = exchange
    return exchange


def remaining(default: float) -> float:
    """Seconds left for the calling thread's exchange (``default`` outside one): the connect
    and read timeouts handed to urllib3, so that a connect to a silent host cannot outlive the
    deadline either (the watchdog can only cut a socket once it exists)."""
    exchange: Exchange | None = getattr(_CURRENT, "exchange", None)
    if exchange is None:
        return default
    return max(0.001, min(default, exchange.deadline - time.monotonic()))


def end(exchange: Exchange) -> None:
    _WATCHDOG.done(exchange)
    _CURRENT.exchange = None


def _track(conn: Any) -> None:
    """Called by our connections as a request starts: the watchdog now knows the socket."""
    exchange: Exchange | None = getattr(_CURRENT, "exchange", None)
    if exchange is None or exchange._conn is not None:
        return
    exchange._conn = conn
    _WATCHDOG.watch(exchange)


# -- the body bound -------------------------------------------------------------------------


def bounded_body_hook(response: Any, *args: Any, **kwargs: Any) -> Any:
    """A requests response hook: read the body now, as a stream, refusing it past
    MAX_BODY_BYTES of decoded bytes. requests runs hooks before it reads the body itself."""
    if getattr(response, "_content_consumed", False):
        return response
    chunks: list[bytes] = []
    size = 0
    # iter_content decodes gzip/deflate (so the bound counts inflated bytes) and turns
    # urllib3's read errors into requests' own, which the store maps.
    for chunk in response.iter_content(65536):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            response.close()
            raise BadResponseError(
                f"the response body is larger than {MAX_BODY_BYTES >> 20} MiB",
                where=response.request.path_url.split("?", 1)[0] if response.request else None,
                hint="is vault.address a KV2 protocol server?",
            )
        chunks.append(chunk)
    response._content = b"".join(chunks)
    response._content_consumed = True
    return response


def json_depth(value: Any) -> int:
    """The nesting depth of a decoded JSON value (iterative: no recursion limit)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


# -- the adapter ----------------------------------------------------------------------------


@cache
def adapter_class() -> type[Any]:
    """The HTTPAdapter subclass, defined on first use so requests loads lazily."""
    import requests.adapters
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class _HTTPConnection(HTTPConnection):
        def request(self, *args: Any, **kwargs: Any) -> None:
            _track(self)
            super().request(*args, **kwargs)

    class _HTTPSConnection(HTTPSConnection):
        def request(self, *args: Any, **kwargs: Any) -> None:
            _track(self)
            super().request(*args, **kwargs)

    class _HTTPPool(HTTPConnectionPool):
        ConnectionCls = _HTTPConnection

    class _HTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _HTTPSConnection

    class _Adapter(requests.adapters.HTTPAdapter):
        """A pooled HTTPAdapter whose connections report to the deadline watchdog and, for
        https, use our SSLContext and, when ``tls_server_name`` is set, send that SNI name
        and check the certificate against it (requests has no option for either)."""

        def __init__(
            self, ctx: ssl.SSLContext | None, server_name: str | None, pool_size: int
        ) -> None:
            self._ctx = ctx
            self._server_name = server_name
            super().__init__(pool_connections=2, pool_maxsize=pool_size, max_retries=0)

        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            if self._ctx is not None:
                kwargs["ssl_context"] = self._ctx
                if self._server_name:
                    kwargs["server_hostname"] = self._server_name
                    kwargs["assert_hostname"] = self._server_name
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            timeout = kwargs.get("timeout")
            if isinstance(timeout, int | float):
                kwargs["timeout"] = remaining(float(timeout))
            return super().send(request, *args, **kwargs)

        def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
            # The SSLContext already holds the trust store and the client certificate;
            # requests' version would add certifi's CA bundle on top of a private CA.
            return None

    return _Adapter


# -- the session ----------------------------------------------------------------------------


def new_session(settings: VaultSettings, pool_size: int) -> requests.Session:
    """The store's one pooled requests.Session: our adapter for http and https, the body
    bound, and nothing taken from the environment."""
    import requests

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
    adapter = adapter_class()(
        ssl_context(settings) if https else None,
        settings.tls_server_name,
        max(1, pool_size),
    )
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    # The body is read as a stream under a size bound (KV2-INV-282).
    session.hooks["response"].append(bounded_body_hook)
    # hvac quirk (§6.1): a session's truthy verify/cert replaces the verify=/cert=
    # arguments. Both are set explicitly; the CA and client cert live in the SSLContext.
    session.verify = verify
    session.cert = None
    return session


# ------------------------------------------------------------------ warnings at start


def transport_warnings(vault: VaultSettings) -> list[str]:
    """The transport settings that expose tokens and secrets (KV2-INV-190)."""
    found: list[str] = []
    if vault.tls_skip_verify:
        found.append(
            "vault.tls_skip_verify is on: the server's TLS certificate is NOT verified; "
            "anyone on the path can read the secrets and the token"
        )
    if vault.address.startswith("http://") and not _is_loopback(vault.address):
        found.append(
            f"vault.address {vault.address} is plain http to a non-loopback host: tokens "
            "and secrets cross the network unencrypted"
        )
    return found


def warn_transport(vault: VaultSettings) -> None:
    # KV2-INV-190: said on every start, never the default; and by check (KV2-INV-400).
    for text in transport_warnings(vault):
        log.warning("%s", text)


def _is_loopback(address: str) -> bool:
    from urllib.parse import urlsplit

    from kv2render.refs import is_loopback_host

    # KV2-INV-381: one test of loopback; "127.example.com" is not one (startswith was).
    return is_loopback_host(urlsplit(address).hostname or "")
