"""Tokens, path-prefix policies and the dev login backends.

Tokens expire on the injectable monotonic clock. Policies are a dev-sized subset
of Vault ACLs: a rule path ending in ``*`` (Vault glob) or ``/`` (dev shorthand)
matches by prefix, ``+`` matches one segment, anything else matches exactly; the
most specific (longest) matching rule wins, and ``deny`` beats everything.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kv2render.devserver._time import DEFAULT_TTL, Clock, human_duration

CAPABILITIES = frozenset({"create", "read", "update", "patch", "delete", "list", "sudo", "deny"})


_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def new_token_id(openbao: bool = False) -> str:
    if openbao:
        # Measured on OpenBao 2.7.2: "s." and 24 base62 characters (KV2-AC-342).
        return "s." + "".join(secrets.choice(_ALNUM) for _ in range(24))
    # Vault's service-token prefix (kv2-wire.md §4.1).
    return "hvs." + secrets.token_urlsafe(18)


def new_accessor(openbao: bool = False) -> str:
    if openbao:
        return "".join(secrets.choice(_ALNUM) for _ in range(24))
    return secrets.token_urlsafe(18)


@dataclass
class Token:
    id: str = field(repr=False)
    accessor: str
    policies: list[str]
    issued: float  # clock reading
    ttl: int  # creation_ttl in seconds; 0 = never expires
    expire_at: float | None
    renewable: bool
    num_uses: int = 0  # 0 = unlimited; otherwise uses left
    display_name: str = "token"
    path: str = "auth/token/create"
    meta: dict[str, str] | None = None
    orphan: bool = False
    explicit_max_ttl: int = 0
    entity_id: str = ""
    namespace: str = ""  # "" = root namespace, else "ns1/"
    last_renewal: float | None = None
    max_ttl: int = 0  # a role's token_max_ttl: caps renewals without showing in lookups

    @property
    def is_root(self) -> bool:
        return "root" in self.policies

    def actor(self) -> dict[str, str]:
        return {"actor": self.display_name, "client_id": self.entity_id or self.accessor}


class TokenStore:
    def __init__(self, clock: Clock, openbao: bool = False) -> None:
        self.clock = clock
        self.openbao = openbao  # OpenBao-shaped token ids and accessors
        self.tokens: dict[str, Token] = {}

    def create(
        self,
        policies: Iterable[str],
        ttl: int | None,
        renewable: bool = True,
        num_uses: int = 0,
        *,
        token_id: str | None = None,
        display_name: str = "token",
        path: str = "auth/token/create",
        meta: dict[str, str] | None = None,
        orphan: bool = False,
        explicit_max_ttl: int = 0,
        entity_id: str = "",
        namespace: str = "",
        no_default_policy: bool = False,
        max_ttl: int = 0,
    ) -> Token:
        pols = sorted(set(policies))
        if "root" in pols:
            pols = ["root"]
        elif not no_default_policy and "default" not in pols:
            pols = sorted([*pols, "default"])
        root = pols == ["root"]
        effective = 0 if root and not ttl else (ttl or DEFAULT_TTL)
        if explicit_max_ttl and effective > explicit_max_ttl:
            effective = explicit_max_ttl
        now = self.clock()
        token = Token(
            id=token_id or new_token_id(self.openbao),
            accessor=new_accessor(self.openbao),
            policies=pols,
            issued=now,
            ttl=effective,
            expire_at=now + effective if effective else None,
            renewable=renewable and effective > 0,
            num_uses=num_uses,
            display_name=display_name,
            path=path,
            meta=meta,
            orphan=orphan,
            explicit_max_ttl=explicit_max_ttl,
            entity_id=entity_id,
            namespace=namespace,
            max_ttl=max_ttl,
        )
        self.tokens[token.id] = token
        return token

    def lookup(self, token_id: str | None) -> Token | None:
        """The live token, or None (unknown, revoked, expired or used up)."""
        if not token_id:
            return None
        token = self.tokens.get(token_id)
        if token is None:
            return None
        if token.expire_at is not None and self.clock() >= token.expire_at:
            del self.tokens[token_id]
            return None
        return token

    def use(self, token: Token) -> None:
        """Count one use; a limited-use token dies after its last use (Vault num_uses)."""
        if token.num_uses > 0:
            token.num_uses -= 1
            if token.num_uses == 0:
                # The request that spends the last use still runs; a lookup-self made with it
                # shows num_uses -1 on OpenBao (measured, KV2-AC-342), as Vault marks a token
                # whose revocation is pending.
                if self.openbao:
                    token.num_uses = -1
                self.tokens.pop(token.id, None)

    def revoke(self, token_id: str) -> None:
        self.tokens.pop(token_id, None)

    def renew(self, token: Token, increment: int | None) -> tuple[int, list[str] | None]:
        """New TTL and an optional cap warning; raises ValueError when not renewable."""
        if not token.renewable or token.ttl == 0:
            raise ValueError("lease is not renewable")
        now = self.clock()
        wanted = increment if increment else token.ttl
        max_ttl = min(t for t in (token.explicit_max_ttl, token.max_ttl, DEFAULT_TTL) if t)
        remaining_max = max(0, int(token.issued + max_ttl - now))
        warnings = None
        if wanted > remaining_max:
            if self.openbao:  # measured wording: what is left of the max, in humanDuration
                shown = (human_duration(wanted), human_duration(remaining_max))
            else:
                shown = (f"{wanted}s", f"{remaining_max}s")
            warnings = [
                f'TTL of "{shown[0]}" exceeded the effective max_ttl of "{shown[1]}"; '
                "TTL value is capped accordingly"
            ]
            wanted = remaining_max
        token.expire_at = now + wanted
        token.last_renewal = now
        return wanted, warnings


def auth_block(token: Token, lease: int | None = None) -> dict[str, Any]:
    """The HTTPAuth object of login/create/renew responses (kv2-wire.md §1.2, §5)."""
    return {
        "client_token": token.id,
        "accessor": token.accessor,
        "policies": list(token.policies),
        "token_policies": list(token.policies),
        "metadata": token.meta,
        "lease_duration": token.ttl if lease is None else lease,
        "renewable": token.renewable,
        "entity_id": token.entity_id,
        "token_type": "service",
        "orphan": token.orphan,
        "mfa_requirement": None,
        "num_uses": token.num_uses,
    }


# -- policies ------------------------------------------------------------------------


def _rule_matches(pattern: str, path: str) -> bool:
    if pattern.endswith("*") or pattern.endswith("/"):
        prefix = pattern[:-1] if pattern.endswith("*") else pattern
        return _segments_match(prefix, path[: len(prefix)]) and len(path) >= len(prefix)
    return _segments_match(pattern, path)


def _segments_match(pattern: str, path: str) -> bool:
    if "+" not in pattern:
        return pattern == path
    pat_parts, path_parts = pattern.split("/"), path.split("/")
    if len(pat_parts) != len(path_parts):
        return False
    return all(p in ("+", q) for p, q in zip(pat_parts, path_parts, strict=True))


class Policies:
    def __init__(self) -> None:
        self.rules: dict[str, dict[str, frozenset[str]]] = {}

    def add(self, name: str, rules: dict[str, Iterable[str]]) -> None:
        if name in ("root",):
            raise ValueError("policy name 'root' is reserved")
        parsed: dict[str, frozenset[str]] = {}
        for path, caps in rules.items():
            if isinstance(caps, dict):  # accept {"capabilities": [...]} like HCL/JSON policies
                caps = caps.get("capabilities", [])
            capset = frozenset(str(c) for c in caps)
            unknown = capset - CAPABILITIES
            if unknown:
                raise ValueError(
                    f"policy {name!r} path {path!r}: unknown capabilities {sorted(unknown)}; "
                    f"use {sorted(CAPABILITIES)}"
                )
            parsed[path.lstrip("/")] = capset
        self.rules[name] = parsed

    def allowed(self, token: Token, path: str, capability: str | tuple[str, ...]) -> bool:
        if token.is_root:
            return True
        merged: dict[str, set[str]] = {}
        for name in token.policies:
            for pattern, caps in self.rules.get(name, {}).items():
                merged.setdefault(pattern, set()).update(caps)
        best: str | None = None
        for pattern in merged:
            if _rule_matches(pattern, path) and (best is None or _more_specific(pattern, best)):
                best = pattern
        if best is None or "deny" in merged[best]:
            return False
        wanted = (capability,) if isinstance(capability, str) else capability
        return any(c in merged[best] for c in wanted)

    def touches(self, token: Token, mount_path: str) -> bool:
        """Any capability somewhere under a mount (what sys/internal/ui/mounts checks)."""
        if token.is_root:
            return True
        for name in token.policies:
            for pattern, caps in self.rules.get(name, {}).items():
                if "deny" in caps or not caps:
                    continue
                stem = pattern.rstrip("*")
                if stem.startswith(mount_path) or mount_path.startswith(stem):
                    return True
        return False


def _more_specific(a: str, b: str) -> bool:
    exact_a = not (a.endswith("*") or a.endswith("/"))
    exact_b = not (b.endswith("*") or b.endswith("/"))
    if exact_a != exact_b:
        return exact_a
    return len(a.rstrip("*")) > len(b.rstrip("*"))


# -- login backends ------------------------------------------------------------------


@dataclass
class AppRole:
    name: str
    role_id: str
    secret_ids: set[str] = field(repr=False)
    policies: list[str]
    token_ttl: int | None
    renewable: bool
    token_max_ttl: int = 0


@dataclass
class JwtGrant:
    jwt: str = field(repr=False)
    role: str = ""
    policies: list[str] = field(default_factory=list)


@dataclass
class AuthMounts:
    """Login configuration keyed by namespace-qualified auth mount ('auth/approle/')."""

    approle: dict[str, dict[str, AppRole]] = field(default_factory=dict)
    userpass: dict[str, dict[str, tuple[str, list[str]]]] = field(default_factory=dict)
    jwt: dict[str, tuple[str, list[JwtGrant]]] = field(
        default_factory=dict
    )  # mount -> (method, grants)
    cert: dict[str, dict[str, list[str]]] = field(default_factory=dict)

    def method_of(self, mount: str) -> str | None:
        if mount in self.approle:
            return "approle"
        if mount in self.userpass:
            return "userpass"
        if mount in self.jwt:
            return self.jwt[mount][0]
        if mount in self.cert:
            return "cert"
        return None


def jwt_claims(jwt: str) -> dict[str, Any]:
    """Best-effort decode of a JWT payload (no verification: dev server)."""
    try:
        payload = jwt.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        return claims if isinstance(claims, dict) else {}
    except (IndexError, ValueError):
        return {}


def entity_for(kind: str, name: str) -> str:
    """A stable entity id per login identity, like Vault's identity store."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"kv2render-devserver:{kind}:{name}"))
