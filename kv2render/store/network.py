"""A failed HTTP exchange (requests, urllib3, ssl, hvac exceptions) -> a kv2render error.

    exchange_error(exc, ...)   network, timeout, bad URL, bad header
    tls_error(exc, ...)        certificate problems are not transient; a plain-text peer is
                               a wrong address; a refused client certificate is an AuthError

Texts name the innermost cause, bounded and scrubbed of credentials and header values
(KV2-INV-350); no body is ever quoted. requests and urllib3 are imported inside the
functions: they are loaded only when a store is built (issue 4 "Start-up stays lean"); hvac
is client.py's alone (KV2-INV-050), which maps hvac's own exceptions itself.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

from kv2render.config import VaultSettings
from kv2render.errors import AuthError, ConfigError, Kv2RenderError, SecretReadError, TransientError
from kv2render.redact import scrub_http
from kv2render.refs import hide_marked

__all__ = ["exchange_error", "tls_error"]


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it wraps (requests/urllib3 nest them in args/reason)."""
    found = [exc]
    while len(found) < 8:
        inner = found[-1]
        nxt = inner.__cause__ or inner.__context__
        reason = getattr(inner, "reason", None)  # urllib3's MaxRetryError: not typed
        if nxt is None and isinstance(reason, BaseException):
            nxt = reason
        if nxt is None and inner.args and isinstance(inner.args[0], BaseException):
            nxt = inner.args[0]
        if nxt is None or nxt in found:
            break
        found.append(nxt)
    return found


def short(exc: BaseException, credentials: Iterable[str] = ()) -> str:
    """A one-line reason for a low-level error: the innermost cause, no bodies, bounded, and
    scrubbed of credentials and header values (KV2-INV-350: requests quotes a header value it
    refuses)."""
    inner = chain(exc)[-1]
    # KV2-INV-497: a URL in the text may hold a path computed from a secret value.
    return scrub_http(hide_marked(str(inner)) or type(inner).__name__, credentials)


def exchange_error(
    exc: Exception,
    *,
    where: str,
    vault: VaultSettings,
    identity: str,
    login: bool,
    budget: float,
    credentials: Iterable[str],
) -> Kv2RenderError | None:
    """The kv2render error for an exception raised while sending one request, or None when
    ``exc`` is not a transport failure (the caller re-raises it). ``identity``: the
    credential to check (the authenticator's); ``budget``: the seconds the exchange had;
    ``credentials``: what it carried, scrubbed from any text."""
    import requests

    secrets = list(credentials)
    address = vault.address
    if isinstance(exc, requests.exceptions.SSLError):
        return tls_error(exc, where=where, vault=vault, login=login, credentials=secrets)
    if isinstance(exc, requests.exceptions.Timeout):
        return TransientError(f"no answer from {address} within {budget:.3g}s", where=where)
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = short(exc, secrets)
        reset = "reset" in reason.lower() or "eof" in reason.lower()
        return TransientError(
            f"cannot reach {address} ({reason})",
            where=where,
            hint=client_cert_hint(vault) if reset else None,
        )
    if isinstance(
        exc,
        requests.exceptions.InvalidURL
        | requests.exceptions.InvalidSchema
        | requests.exceptions.MissingSchema,
    ):
        return SecretReadError(f"vault.address {address!r} is not a usable URL", where=where)
    if isinstance(exc, requests.exceptions.InvalidHeader | UnicodeEncodeError):
        # KV2-INV-351: a header value HTTP cannot carry (a line break, a non-Latin-1
        # character) is refused before any byte is sent; a retry would send the same
        # header again, so it is not transient. auth.py refuses such credentials first;
        # this is the net under it, and the text never quotes the value.
        return AuthError(
            f"a request header holds a character HTTP headers cannot carry ({type(exc).__name__})",
            where=where,
            hint=f"check {identity} and vault.namespace",
        )
    if isinstance(exc, requests.exceptions.RequestException):
        return TransientError(f"request failed ({short(exc, secrets)})", where=where)
    return None


def tls_error(
    exc: BaseException,
    *,
    where: str,
    vault: VaultSettings,
    login: bool,
    credentials: Iterable[str],
) -> Kv2RenderError:
    """A certificate problem is not transient: retrying cannot fix it."""
    # urllib3 checks tls_server_name itself and raises its own CertificateError.
    from urllib3.util.ssl_match_hostname import CertificateError

    verify = next(
        (e for e in chain(exc) if isinstance(e, ssl.SSLCertVerificationError | CertificateError)),
        None,
    )
    if verify is not None:
        cls: type[Kv2RenderError] = AuthError if login else SecretReadError
        # ssl.SSLCertVerificationError has verify_message; urllib3's CertificateError not.
        message = verify.verify_message if isinstance(verify, ssl.SSLCertVerificationError) else ""
        why = message or str(verify)
        return cls(
            "TLS: the server certificate could not be verified "
            f"({scrub_http(str(why), limit=160)})",
            where=where,
            hint="check vault.ca_cert / VAULT_CACERT, vault.ca_path and vault.tls_server_name",
        )
    reason = short(exc, credentials)
    lowered = reason.lower()
    if "wrong version number" in lowered and vault.address.startswith("https://"):
        # OpenSSL's word for a peer that answered in plain text: a plain-HTTP listener
        # (the real OpenBao dev server, measured). Retrying cannot fix an address.
        return ConfigError(
            f"the server at this address does not speak TLS ({reason})",
            where="vault.address",
            hint=f"use {vault.address.replace('https://', 'http://', 1)} "
            "if the server really has no TLS, or check the port",
        )
    if any(s in lowered for s in ("certificate required", "bad certificate", "unknown ca")):
        return AuthError(
            f"TLS: the server refused this client's certificate ({reason})",
            where=where,
            hint="check vault.client_cert / vault.client_key (VAULT_CLIENT_CERT)",
        )
    return TransientError(f"TLS error ({reason})", where=where, hint=client_cert_hint(vault))


def client_cert_hint(vault: VaultSettings) -> str | None:
    """With TLS 1.3 a server that requires a client certificate may just close the
    connection (EOF / reset) instead of sending an alert: say so when none is set."""
    if vault.address.startswith("https") and vault.client_cert is None:
        return (
            "if the server requires a client certificate, set vault.client_cert and "
            "vault.client_key"
        )
    return None
