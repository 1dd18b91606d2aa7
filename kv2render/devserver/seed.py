"""Seed files: YAML (or a dict) describing mounts, secrets, policies and logins.

See examples/dev-seed.yaml for a commented example. Unknown keys are errors that
name their place, like the rest of kv2render's configuration (STYLE.md #2, #3).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import yaml

from kv2render.devserver._time import parse_duration
from kv2render.devserver.state import State

TOP_KEYS = {
    "namespaces",
    "mounts",
    "secrets",
    "policies",
    "tokens",
    "approle",
    "userpass",
    "jwt",
    "kubernetes",
    "cert",
}


class SeedError(ValueError):
    """A seed file that cannot be applied; the message names the place."""


class SeedTarget(Protocol):
    """The DevServer methods a seed calls. A Protocol, because server.py imports this
    module to apply its seed and this module may not import server.py back (no import
    cycle, docs/architecture.md)."""

    @property
    def state(self) -> State: ...

    def add_namespace(self, path: str) -> None: ...

    def add_mount(self, path: str, version: int = 2, namespace: str = "") -> None: ...

    def add_policy(self, name: str, rules: Mapping[str, Iterable[str]]) -> None: ...

    def put(
        self, path: str, data: Mapping[str, Any], mount: str = "secret", cas: int | None = None
    ) -> int: ...

    def create_token(
        self,
        policies: Iterable[str] = ("default",),
        ttl: float | None = None,
        renewable: bool = True,
        num_uses: int = 0,
        *,
        token_id: str | None = None,
        namespace: str = "",
        explicit_max_ttl: int = 0,
    ) -> str: ...

    def add_approle(
        self,
        role_name: str,
        role_id: str,
        secret_id: str | None,
        policies: Iterable[str] = (),
        token_ttl: float | None = None,
        renewable: bool = True,
        mount: str = "approle",
        *,
        namespace: str = "",
        token_max_ttl: float | None = None,
    ) -> None: ...

    def add_userpass(
        self,
        username: str,
        password: str,
        policies: Iterable[str] = (),
        mount: str = "userpass",
        *,
        namespace: str = "",
    ) -> None: ...

    def add_jwt(
        self,
        jwt: str,
        role: str,
        policies: Iterable[str] = (),
        method: str = "kubernetes",
        mount: str | None = None,
        *,
        namespace: str = "",
    ) -> None: ...

    def add_cert_role(
        self, name: str, policies: Iterable[str] = (), mount: str = "cert", *, namespace: str = ""
    ) -> None: ...


def load_seed(seed: str | Path | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(seed, Mapping):
        return dict(seed)
    path = Path(seed)
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SeedError(f"seed {path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise SeedError(f"seed {path}: not valid YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SeedError(f"seed {path}: top level must be a mapping")
    return loaded


def _keys(where: str, entry: Any, allowed: set[str], required: set[str]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise SeedError(f"{where}: must be a mapping")
    unknown = set(entry) - allowed
    if unknown:
        raise SeedError(f"{where}: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    missing = required - set(entry)
    if missing:
        raise SeedError(f"{where}: missing keys {sorted(missing)}")
    return entry


def _list(where: str, value: Any) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SeedError(f"{where}: must be a list")
    return value


def _ttl(where: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        return parse_duration(value, where)
    except ValueError as exc:
        raise SeedError(str(exc)) from exc


def apply_seed(srv: SeedTarget, seed: str | Path | Mapping[str, Any]) -> None:
    data = load_seed(seed)
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise SeedError(
            f"seed: unknown top-level keys {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}"
        )
    try:
        _apply(srv, data)
    except SeedError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise SeedError(f"seed: {exc}") from exc


def _apply(srv: SeedTarget, data: dict[str, Any]) -> None:
    for i, ns in enumerate(_list("namespaces", data.get("namespaces"))):
        if not isinstance(ns, str):
            raise SeedError(f"namespaces[{i}]: must be a string like 'team-a/'")
        srv.add_namespace(ns)
    mounts = data.get("mounts") or {}
    if not isinstance(mounts, dict):
        raise SeedError("mounts: must be a mapping of mount path -> options")
    for path, opts in mounts.items():
        opts = _keys(
            f"mounts.{path}",
            opts or {},
            {"version", "max_versions", "cas_required", "delete_version_after"},
            set(),
        )
        srv.add_mount(str(path), int(opts.get("version", 2)))
        config = {k: v for k, v in opts.items() if k != "version"}
        if config:
            kv = srv.state.kv2(str(path))
            kv.write_config(config)
    _apply_secrets(srv, data.get("secrets") or {})
    policies = data.get("policies") or {}
    if not isinstance(policies, dict):
        raise SeedError("policies: must be a mapping of name -> {path: [capabilities]}")
    for name, rules in policies.items():
        if not isinstance(rules, dict):
            raise SeedError(f"policies.{name}: must be a mapping of path -> [capabilities]")
        srv.add_policy(str(name), rules)
    for i, tok in enumerate(_list("tokens", data.get("tokens"))):
        where = f"tokens[{i}]"
        tok = _keys(
            where, tok, {"id", "policies", "ttl", "renewable", "num_uses", "namespace"}, {"id"}
        )
        srv.create_token(
            tok.get("policies", ["default"]),
            _ttl(f"{where}.ttl", tok.get("ttl")),
            bool(tok.get("renewable", True)),
            int(tok.get("num_uses", 0)),
            token_id=str(tok["id"]),
            namespace=str(tok.get("namespace", "")),
        )
    _apply_logins(srv, data)


def _apply_secrets(srv: SeedTarget, secrets: Any) -> None:
    if not isinstance(secrets, dict):
        raise SeedError("secrets: must be a mapping of 'mount/path' -> data or list of versions")
    for full, value in secrets.items():
        where = f"secrets.{full}"
        mount = srv.state.find_mount(str(full).strip("/"))
        if mount is None:
            raise SeedError(f"{where}: no mount hosts this path; declare it under 'mounts:'")
        name = str(full).strip("/")[len(mount.path) :]
        if not name:
            raise SeedError(f"{where}: names a mount, not a secret; use 'mount/path'")
        versions = value if isinstance(value, list) else [value]
        for n, version in enumerate(versions, 1):
            if not isinstance(version, dict):
                raise SeedError(f"{where}: version {n} must be a mapping of key -> value")
            if mount.version == 1:
                mount.write(name, version)
            else:
                srv.put(name, version, mount=mount.path)


def _apply_logins(srv: SeedTarget, data: dict[str, Any]) -> None:
    for i, role in enumerate(_list("approle", data.get("approle"))):
        where = f"approle[{i}]"
        allowed = {
            "role_name",
            "role_id",
            "secret_id",
            "policies",
            "token_ttl",
            "token_max_ttl",
            "renewable",
        }
        role = _keys(where, role, allowed | {"mount", "namespace"}, {"role_name", "role_id"})
        srv.add_approle(
            str(role["role_name"]),
            str(role["role_id"]),
            str(role["secret_id"]) if role.get("secret_id") is not None else None,
            role.get("policies", ()),
            _ttl(f"{where}.token_ttl", role.get("token_ttl")),
            bool(role.get("renewable", True)),
            str(role.get("mount", "approle")),
            namespace=str(role.get("namespace", "")),
            token_max_ttl=_ttl(f"{where}.token_max_ttl", role.get("token_max_ttl")),
        )
    for i, user in enumerate(_list("userpass", data.get("userpass"))):
        user = _keys(
            f"userpass[{i}]",
            user,
            {"username", "password", "policies", "mount", "namespace"},
            {"username", "password"},
        )
        srv.add_userpass(
            str(user["username"]),
            str(user["password"]),
            user.get("policies", ()),
            str(user.get("mount", "userpass")),
            namespace=str(user.get("namespace", "")),
        )
    for method in ("kubernetes", "jwt"):
        for i, grant in enumerate(_list(method, data.get(method))):
            grant = _keys(
                f"{method}[{i}]",
                grant,
                {"jwt", "role", "policies", "mount", "namespace"},
                {"jwt", "role"},
            )
            srv.add_jwt(
                str(grant["jwt"]).strip(),
                str(grant["role"]),
                grant.get("policies", ()),
                method=method,
                mount=grant.get("mount"),
                namespace=str(grant.get("namespace", "")),
            )
    for i, role in enumerate(_list("cert", data.get("cert"))):
        role = _keys(f"cert[{i}]", role, {"name", "policies", "mount", "namespace"}, {"name"})
        srv.add_cert_role(
            str(role["name"]),
            role.get("policies", ()),
            str(role.get("mount", "cert")),
            namespace=str(role.get("namespace", "")),
        )
