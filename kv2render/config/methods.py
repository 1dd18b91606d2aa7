"""The auto_auth methods' settings and their one parser (KV2-INV-030), imported only when a
config has ``auto_auth`` (config/auth.py says why).

    TokenFileSettings        token_file_path                              (here)
    AppRoleSettings          role_id_file_path, secret_id_file_path, remove_...
    KubernetesSettings       role, token_path
    JwtSettings              role, path, remove_jwt_after_reading, remove_jwt_follows_...
    CertSettings             name; the TLS client certificate (from the vault block)
    BearerTokenFileSettings  token_file_path           (kv2render's, issue 6)
    MtlsSettings             the TLS client certificate (kv2render's, issue 6)

The settings classes other than TokenFileSettings live in config/logins.py, imported only
when a config names one of their methods (KV2-NFR-520). Field names are Vault Agent's key
names (vault-agent.md §1.5); paths are resolved against the config's folder.
:func:`parse_method` is the one validation of the method block.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

from kv2render.config.auth import (
    DEFAULT_KUBERNETES_TOKEN_PATH,
    MOUNTED_METHODS,
    AuthSettings,
    AuthType,
    login_mount,
)
from kv2render.config.values import Section, as_bool, as_path, as_str, parse_duration
from kv2render.errors import ConfigError

__all__ = [
    "DEFAULT_KUBERNETES_TOKEN_PATH",
    "TokenFileSettings",
    "parse_method",
]


@dataclass(frozen=True)
class TokenFileSettings:
    method: ClassVar[str] = "token_file"
    token_file_path: Path


_METHOD_KEYS = (
    "type",
    "mount_path",
    "namespace",
    "config",
    "min_backoff",
    "max_backoff",
    "exit_on_err",
)

# Method -> {config key: (kind, required, default)}, in the order keys are checked.
_Kind = Literal["path", "str", "bool"]
_METHOD_CONFIG: dict[str, dict[str, tuple[_Kind, bool, Any]]] = {
    "token_file": {"token_file_path": ("path", True, None)},
    "approle": {
        "role_id_file_path": ("path", True, None),
        "secret_id_file_path": ("path", False, None),
        "remove_secret_id_file_after_reading": ("bool", False, True),
    },
    "kubernetes": {
        "role": ("str", True, None),
        "token_path": ("path", False, str(DEFAULT_KUBERNETES_TOKEN_PATH)),
    },
    "jwt": {
        "role": ("str", True, None),
        "path": ("path", True, None),
        "remove_jwt_after_reading": ("bool", False, True),
        "remove_jwt_follows_symlinks": ("bool", False, False),
    },
    "cert": {"name": ("str", False, None)},
    "bearer_token_file": {"token_file_path": ("path", True, None)},
    "mtls": {},
}
_CLIENT_CERT_METHODS = ("cert", "mtls")


def _method_label(raw: Any) -> Any:
    """HCL's ``method "approle" { ... }`` arrives as ``{"approle": {...}}``."""
    if isinstance(raw, Mapping) and "type" not in raw and len(raw) == 1:
        ((label, body),) = raw.items()
        if label not in _METHOD_KEYS and isinstance(body, Mapping):
            return {"type": label, **body}
    return raw


def parse_method(
    raw: Any, base: Path, client_cert: tuple[Path | None, Path | None] | None
) -> AuthSettings | None:
    """``auto_auth.method`` -> AuthSettings, or ConfigError naming the key and the fix.

    ``client_cert``: vault.client_cert and vault.client_key, or None when the vault block
    has a problem of its own (already recorded); a cert or mtls method then yields None.
    """
    sec = Section(_method_label(raw), "auto_auth.method", _METHOD_KEYS)
    if not sec.has("type"):
        raise ConfigError(
            "is required", where=sec.at("type"), hint=f"one of {', '.join(_METHOD_CONFIG)}"
        )
    kind = as_str(sec.get("type"), sec.at("type"))
    if kind not in _METHOD_CONFIG:
        close = _close_matches(kind, _METHOD_CONFIG)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            f"auth method '{kind}' is not supported",
            where=sec.at("type"),
            hint=f"{hint}supported: {', '.join(_METHOD_CONFIG)}",
        )
    # The checks run in the order the keys were always checked: one error per block.
    cert_pair = _client_cert(sec, kind, client_cert)
    mount_path = _mount_path(sec, kind)
    min_backoff = sec.opt("min_backoff", parse_duration) or 1.0
    max_backoff = sec.opt("max_backoff", parse_duration) or 300.0
    if max_backoff < min_backoff:
        raise ConfigError("must not be smaller than min_backoff", where=sec.at("max_backoff"))
    namespace = sec.opt("namespace", as_str)
    keys = _method_config(sec, kind, base)
    if kind in _CLIENT_CERT_METHODS:
        if cert_pair is None:
            return None
        keys.update(client_cert=cert_pair[0], client_key=cert_pair[1])
    return AuthSettings(
        type=cast(AuthType, kind),
        mount_path=mount_path,
        namespace=namespace,
        config=_settings_class(kind)(**keys),
        min_backoff=min_backoff,
        max_backoff=max_backoff,
        exit_on_err=bool(sec.opt("exit_on_err", as_bool)),
    )


def _settings_class(kind: str) -> type[Any]:
    """The settings class of method ``kind``. The other methods' classes live in
    config/logins.py, imported only for a config that uses one of them: a token_file config
    never creates their six dataclasses (KV2-NFR-520)."""
    if kind == "token_file":
        return TokenFileSettings
    from kv2render.config import logins

    return logins.SETTINGS[kind]


def _client_cert(
    sec: Section, kind: str, client_cert: tuple[Path | None, Path | None] | None
) -> tuple[Path, Path] | None:
    """The client certificate a cert or mtls method needs, from the vault block."""
    if kind not in _CLIENT_CERT_METHODS or client_cert is None:
        return None
    cert, key = client_cert
    if cert is None or key is None:
        raise ConfigError(
            f"method '{kind}' needs vault.client_cert and vault.client_key",
            where=sec.at("type"),
            hint="set them in the vault block or VAULT_CLIENT_CERT/VAULT_CLIENT_KEY",
        )
    return cert, key


def _mount_path(sec: Section, kind: str) -> str:
    if kind not in MOUNTED_METHODS:
        if sec.has("mount_path"):
            raise ConfigError(f"method '{kind}' has no login mount", where=sec.at("mount_path"))
        return ""
    raw = sec.opt("mount_path", as_str) or ""
    if raw and not raw.strip("/"):
        raise ConfigError("must not be empty", where=sec.at("mount_path"))
    return login_mount(kind, raw)


def _method_config(method: Section, kind: str, base: Path) -> dict[str, Any]:
    spec = _METHOD_CONFIG[kind]
    sec = method.section("config", tuple(spec))
    out: dict[str, Any] = {}
    for key, (value_kind, required, default) in spec.items():
        value = sec.get(key)
        if value is None:
            if required:
                raise ConfigError(f"is required for method '{kind}'", where=sec.at(key))
            if default is None:
                continue
            value = default
        if value_kind == "path":
            out[key] = as_path(value, sec.at(key), base)
        elif value_kind == "bool":
            out[key] = as_bool(value, sec.at(key))
        else:
            out[key] = as_str(value, sec.at(key))
    return out


def _close_matches(word: str, possibilities: Any) -> list[str]:
    """difflib's suggestion, imported only when a value is wrong."""
    import difflib

    return difflib.get_close_matches(word, possibilities, n=1, cutoff=0.6)
