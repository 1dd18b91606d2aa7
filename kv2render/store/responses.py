"""A KV2 server's answer -> a value or a kv2render error (issue 4 "Error mapping").

    json_body(resp)          the body, when it is JSON of bounded depth (wire reference §6.2)
    ok_json(...)             a 200's body as a JSON object, or the error that says why not
    status_error(...)        a non-2xx answer -> the Kv2RenderError subclass, ``http_status`` set
    secret_version(...)      a 200 KV2 read -> SecretVersion, every field checked

Server ``errors`` strings are metadata, shown on one line, bounded, and scrubbed of the
credentials the request carried (KV2-INV-350). Never imports hvac or requests at run time:
the response object is only read (``status_code``, ``headers``, ``content``).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from kv2render import jsonnum
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
from kv2render.model import SecretVersion
from kv2render.redact import scrub_http
from kv2render.refs import SecretLocation, hide_marked
from kv2render.store import transport

if TYPE_CHECKING:
    import requests

__all__ = [
    "errors_text",
    "json_body",
    "ok_json",
    "one_line",
    "retry_after",
    "secret_version",
    "status_error",
]

log = logging.getLogger("kv2render.store.client")  # one logger name for the hvac boundary

MAX_RETRY_AFTER = 300.0  # a server's Retry-After is honoured up to this many seconds
_MAX_ERROR_TEXT = 300  # server `errors` strings are metadata, but bounded
_MULTIERROR_HEADER = re.compile(r"\d+ errors? occurred:\s*")  # go-multierror's first line
_HTTP_TO_HTTPS = b"Client sent an HTTP request to an HTTPS server"


def one_line(error: str) -> str:
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


def errors_text(body: Any) -> str:
    """The server's ``errors`` strings (metadata), each on one line, joined and truncated."""
    if not isinstance(body, Mapping):
        return ""
    errors = body.get("errors")
    if not isinstance(errors, list):
        return ""
    text = "; ".join(line for line in (one_line(str(e)) for e in errors) if line)
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "..."


def json_body(resp: requests.Response) -> tuple[Any, str | None]:
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


def ok_json(where: str, resp: requests.Response, *, login: bool) -> Mapping[str, Any]:
    """A 200's body as a JSON object; AuthError (login) or BadResponseError (read) if not."""
    body, problem = json_body(resp)
    cls: type[Kv2RenderError] = AuthError if login else BadResponseError
    if problem is not None:
        raise cls(problem, where=where, hint="is vault.address a KV2 protocol server?")
    if not isinstance(body, dict):
        raise cls("the response body is not a JSON object", where=where)
    return body


def retry_after(resp: requests.Response) -> float | None:
    """A Retry-After header (seconds or an HTTP date) in seconds, bounded to 5 minutes."""
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
    return max(0.0, min(seconds, MAX_RETRY_AFTER))


# --------------------------------------------------------------------------- status -> error


def status_error(
    where: str,
    resp: requests.Response,
    *,
    address: str,
    identity: str,
    location: SecretLocation | None = None,
    credentials: Iterable[str] = (),
) -> Kv2RenderError:
    """Map a non-2xx answer (or a redirect) to a kv2render error.

    ``location`` None: the request was a login or a token call. ``identity`` names the
    credential to check (the authenticator's), ``address`` is vault.address, and
    ``credentials`` are scrubbed from the server's text (defence in depth: a server that
    echoes a submitted credential back). The error carries ``http_status``, so that the
    store tells a 403 from other AuthErrors.
    """
    status = resp.status_code
    body, _problem = json_body(resp)
    errors = scrub_http(errors_text(body), credentials, limit=None)
    error = _map_status(
        _Answer(where, status, errors, body, location, identity),
        resp,
        address=address,
    )
    error.http_status = status
    return error


class _Answer:
    """What a status mapping looks at: one answer, read once. A plain class, not a
    dataclass: it never leaves this module, and a frozen dataclass costs start-up time
    (docs/performance.md)."""

    __slots__ = ("body", "detail", "errors", "identity", "location", "login", "status", "where")

    def __init__(
        self,
        where: str,
        status: int,
        errors: str,
        body: Any,
        location: SecretLocation | None,
        identity: str,
    ) -> None:
        self.where = where
        self.status = status
        # The server's errors strings, on one line and scrubbed; a server may quote the
        # path, which may be one computed from a secret value (KV2-INV-497).
        self.errors = errors = hide_marked(errors)
        self.detail = f": {errors}" if errors else ""
        self.body = body
        self.location = location  # None: a login or a token call
        self.login = location is None
        self.identity = identity


def _map_status(answer: _Answer, resp: requests.Response, *, address: str) -> Kv2RenderError:
    status, where, detail = answer.status, answer.where, answer.detail
    if status == 400 and answer.body is None and _HTTP_TO_HTTPS in resp.content[:200]:
        # Go's HTTPS listener answering a plain-HTTP request (the real OpenBao and Vault
        # do): the address is wrong, not the credential. Recognised, never quoted.
        return ConfigError(
            "the server speaks HTTPS but the address says http://",
            where="vault.address",
            hint=f"use {address.replace('http://', 'https://', 1)}",
        )
    if 300 <= status < 400:
        return BadResponseError(
            f"the server answered {status} (a redirect); redirects are not followed, "
            "so the token is never sent elsewhere",
            where=where,
            hint="point vault.address at the server itself",
        )
    if status in (401, 403):
        return _refused(answer)
    if status == 404:
        return _missing(answer)
    if status == 429 or status >= 500:
        kind = "rate limited" if status == 429 else "server error"
        return TransientError(
            f"{kind} ({status}){detail}", where=where, retry_after=retry_after(resp)
        )
    if answer.login and status == 400:
        return AuthError(f"login refused (400){detail}", where=where)
    if status == 400:
        return SecretReadError(f"request refused (400){detail}", where=where)
    return BadResponseError(f"unexpected HTTP status {status}{detail}", where=where)


def _refused(answer: _Answer) -> Kv2RenderError:
    """401 and 403: a credential refused, a token rejected, or a policy that denies."""
    where, detail = answer.where, answer.detail
    if answer.status == 401:
        return AuthError(f"401 unauthorized{detail}", where=where, hint=f"check {answer.identity}")
    if answer.location is None:
        return AuthError(f"login refused (403){detail}", where=where)
    if "invalid token" in answer.errors.lower():
        return AuthError(
            f"the token was rejected (403{detail})",
            where=where,
            hint=f"check {answer.identity}",
        )
    return AccessDeniedError(
        f"permission denied (403){detail}", where=where, hint=_policy_hint(answer.location)
    )


def _missing(answer: _Answer) -> Kv2RenderError:
    """404: no namespace, no login mount, or no secret (version) at the path."""
    where, login = answer.where, answer.login
    if "namespace not found" in answer.errors.lower():
        # OpenBao's answer to an X-Vault-Namespace that does not exist, on any path
        # (kv2-wire.md §2.3); neither a mount_path nor the secret's path is at fault.
        cls: type[Kv2RenderError] = AuthError if login else SecretNotFoundError
        return cls(
            "namespace not found (404)",
            where=where,
            hint="check vault.namespace (--namespace, BAO_NAMESPACE, VAULT_NAMESPACE)"
            + (" and auto_auth.method.namespace" if login else ""),
        )
    if answer.location is None:
        return AuthError(
            f"nothing answers at this path (404){answer.detail}",
            where=where,
            hint="check auto_auth.method.mount_path and auto_auth.method.namespace",
        )
    return _not_found(where, answer.location, answer.body, answer.detail)


def _policy_hint(location: SecretLocation) -> str:
    # KV2-INV-497: shown_*: a path computed from a secret value shows redacted.
    return f'grant "read" on "{location.shown_mount}/data/{location.shown_path}"'


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
        hint=f"check the mount ({location.shown_mount!r}), the path and vault.namespace",
    )


# --------------------------------------------------------------------------- 200 -> secret


def secret_version(where: str, location: SecretLocation, body: Mapping[str, Any]) -> SecretVersion:
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
