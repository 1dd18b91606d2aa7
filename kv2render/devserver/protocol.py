"""Wire shapes: success envelopes, error bodies and replies, per flavour.

Byte-level facts follow the wire reference (kv2-wire.md §1.2, §1.3, §2.2, §8):
Go's encoder writes compact JSON with a trailing newline, map keys sorted and
``<``, ``>``, ``&`` escaped; the KV "404 with data" body is pre-marshalled, so it
has no trailing newline. Every JSON reply carries ``Content-Type: application/json``
exactly, which hvac compares with ``==`` before it parses ``errors``.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

VAULT, OPENBAO, OVH = "vault", "openbao", "ovh"
FLAVORS = (VAULT, OPENBAO, OVH)

JSON_CT = "application/json"

# go-multierror's Error() for one wrapped error: what Vault and OpenBao put on the
# wire for ACL denials (kv2-wire.md §1.3).
PERMISSION_DENIED = "1 error occurred:\n\t* permission denied\n\n"
# Vault since PR #25953 adds "invalid token" for unknown/expired tokens; the exact
# layout is not documented (kv2-wire.md §10 item 1), so this is a two-item multierror.
INVALID_TOKEN_VAULT = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"
UNSUPPORTED_OPERATION = "1 error occurred:\n\t* unsupported operation\n\n"
SEALED = "Vault is sealed"

# OVHcloud error codes are not documented in the reference (§8); these are
# stable dev values so clients can see the field, not real OKMS codes.
OVH_ERROR_CODES = {
    400: 17125376,
    401: 17125377,
    403: 17125379,
    404: 17125380,
    405: 17125381,
    409: 17125385,
    429: 17125405,
    500: 17125632,
    503: 17125635,
}


class ApiError(Exception):
    """A non-2xx outcome; the router turns it into the flavour's error body."""

    def __init__(self, status: int, *messages: str, data: Any = None) -> None:
        super().__init__(status, messages)
        self.status = status
        self.messages = list(messages)
        self.data = data


class RawNotFound(Exception):
    """KV2's 404 that carries the full envelope with data and no ``errors`` key."""

    def __init__(self, data: Any, warnings: list[str] | None = None) -> None:
        super().__init__("raw 404")
        self.data = data
        self.warnings = warnings


@dataclass
class Reply:
    """What goes on the wire: status, body bytes (None: no body) and extra headers."""

    status: int
    body: bytes | None
    headers: list[tuple[str, str]] = field(default_factory=list)


MAX_BODY = 32 * 1024 * 1024  # Vault's default max_request_size


@dataclass
class Request:
    """One HTTP request as the router sees it (httpserver.py builds it)."""

    method: str  # HTTP verb as sent, upper case
    path: str  # percent-decoded, after /v1/ (and the ovh base), e.g. "secret/data/app"
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = field(repr=False)
    peer_cert: dict[str, Any] | None = None  # verified TLS client certificate
    op: str = ""  # read | list | write | delete | patch
    data: dict[str, Any] = field(default_factory=dict, repr=False)

    def token_id(self) -> str | None:
        token = self.headers.get("x-vault-token")
        if token:
            return token
        return self.bearer()

    def bearer(self) -> str | None:
        value = self.headers.get("authorization", "")
        scheme, _, credential = value.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return credential.strip()
        return None

    def qparam(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


def sort_keys(obj: Any) -> Any:
    """Sort map keys recursively, as Go's encoder does for map[string]interface{}."""
    if isinstance(obj, dict):
        return {k: sort_keys(obj[k]) for k in sorted(obj)}
    if isinstance(obj, list):
        return [sort_keys(v) for v in obj]
    return obj


def _mark_numbers(obj: Any, mark: str) -> Any:
    text = getattr(obj, "json_text", None)
    if isinstance(text, str) and not isinstance(obj, bool):
        return f"{mark}{text}{mark}"
    if isinstance(obj, dict):
        return {k: _mark_numbers(v, mark) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_mark_numbers(v, mark) for v in obj]
    return obj


def encode(obj: Any, newline: bool = True) -> bytes:
    """Go json.Marshal/Encoder bytes: compact, UTF-8, HTML-safe escapes."""
    # A number stored from a request keeps the text it was written with (Vault stores
    # json.Number): each is encoded as a placeholder string holding a fresh random mark,
    # which no stored string can contain, then put back as the bare literal.
    mark = "N" + secrets.token_hex(8)
    text = json.dumps(_mark_numbers(obj, mark), separators=(",", ":"), ensure_ascii=False)
    if mark in text:
        text = re.sub(f'"{mark}([-+.eE0-9]+){mark}"', lambda m: m.group(1), text)
    # Those characters can only occur inside JSON strings, so a global replace is
    # exactly Go's HTMLEscape behaviour.
    text = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    return (text + "\n" if newline else text).encode("utf-8")


class Wire:
    """Builds replies for one flavour."""

    def __init__(self, flavor: str) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"flavor: must be one of {', '.join(FLAVORS)}, got {flavor!r}")
        self.flavor = flavor

    def _envelope(
        self,
        data: Any,
        auth: dict[str, Any] | None,
        warnings: list[str] | None,
        mount_type: str,
    ) -> dict[str, Any]:
        if self.flavor == OVH:
            env: dict[str, Any] = {"request_id": str(uuid.uuid4()), "data": sort_keys(data)}
            if warnings is not None:
                env["warnings"] = warnings
            return env
        env = {
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": sort_keys(data),
            "wrap_info": None,
            "warnings": warnings,
            "auth": auth,
        }
        if self.flavor == VAULT:  # OpenBao dropped mount_type (kv2-wire.md §1.2, §7)
            env["mount_type"] = mount_type
        return env

    def ok(
        self,
        data: Any = None,
        *,
        auth: dict[str, Any] | None = None,
        warnings: list[str] | None = None,
        mount_type: str = "",
        lease_duration: int = 0,
    ) -> Reply:
        env = self._envelope(data, auth, warnings, mount_type)
        if lease_duration and self.flavor != OVH:
            env["lease_duration"] = lease_duration
        return Reply(200, encode(env))

    def no_content(self) -> Reply:
        return Reply(204, None)

    def raw_not_found(self, data: Any, warnings: list[str] | None = None) -> Reply:
        if self.flavor == OVH:
            if data is None:
                return self.error(404, ["not found"])
            return self.error(404, ["secret version is deleted or destroyed"], data=data)
        # RespondWithStatusCode marshals before the router fills mount_type: "" (§2.2)
        env = self._envelope(data, None, warnings, "")
        return Reply(404, encode(env, newline=False))

    def error(self, status: int, messages: list[str], data: Any = None) -> Reply:
        body: dict[str, Any]
        if self.flavor == OVH:
            if not messages and status == 404:
                messages = ["not found"]
            body = {
                "error_id": str(uuid.uuid4()),
                "error_code": OVH_ERROR_CODES.get(status, 17125632),
                "errors": messages,
                "request_id": str(uuid.uuid4()),
            }
            if data is not None:
                body["data"] = sort_keys(data)
        else:
            body = {"errors": messages}
            if data is not None:
                body["data"] = sort_keys(data)
        return Reply(status, encode(body))

    def from_error(self, exc: ApiError | RawNotFound) -> Reply:
        if isinstance(exc, RawNotFound):
            return self.raw_not_found(exc.data, exc.warnings)
        return self.error(exc.status, exc.messages, exc.data)

    def cli_name(self) -> str:
        return "bao" if self.flavor == OPENBAO else "vault"

    def product(self) -> str:
        return "OpenBao" if self.flavor == OPENBAO else "Vault"
