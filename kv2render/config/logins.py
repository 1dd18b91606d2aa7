"""The settings of the auto_auth methods that log in (or present a client certificate):
every method but token_file (config/methods.py). Imported only when a config names one of
them, so a token_file config never creates these dataclasses at start-up (KV2-NFR-520).
config/methods.py parses the block and builds these; store/auth.py acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kv2render.config.auth import DEFAULT_KUBERNETES_TOKEN_PATH, NOT_A_KEY

__all__ = [
    "SETTINGS",
    "AppRoleSettings",
    "BearerTokenFileSettings",
    "CertSettings",
    "JwtSettings",
    "KubernetesSettings",
    "MtlsSettings",
]


@dataclass(frozen=True)
class AppRoleSettings:
    method: ClassVar[str] = "approle"
    role_id_file_path: Path
    secret_id_file_path: Path | None = None
    # Vault Agent default: true (auth/approle/approle.go); a consumed secret_id is gone.
    remove_secret_id_file_after_reading: bool = True


@dataclass(frozen=True)
class KubernetesSettings:
    method: ClassVar[str] = "kubernetes"
    role: str
    token_path: Path = DEFAULT_KUBERNETES_TOKEN_PATH


@dataclass(frozen=True)
class JwtSettings:
    method: ClassVar[str] = "jwt"
    role: str
    path: Path
    # Vault Agent defaults (auth/jwt/jwt.go): the JWT file is removed after reading, the
    # link itself when it is a symlink (KV2-INV-494).
    remove_jwt_after_reading: bool = True
    remove_jwt_follows_symlinks: bool = False


@dataclass(frozen=True)
class CertSettings:
    """TLS certificate auth: the client certificate of the connection is the credential."""

    method: ClassVar[str] = "cert"
    client_cert: Path = field(metadata=NOT_A_KEY)  # vault.client_cert
    client_key: Path = field(metadata=NOT_A_KEY)  # vault.client_key
    name: str | None = None  # the cert role; None: the server picks by certificate


@dataclass(frozen=True)
class BearerTokenFileSettings:
    method: ClassVar[str] = "bearer_token_file"
    token_file_path: Path


@dataclass(frozen=True)
class MtlsSettings:
    """No login, no token: the TLS client certificate is the identity."""

    method: ClassVar[str] = "mtls"
    client_cert: Path = field(metadata=NOT_A_KEY)
    client_key: Path = field(metadata=NOT_A_KEY)


SETTINGS: dict[str, type[Any]] = {
    "approle": AppRoleSettings,
    "kubernetes": KubernetesSettings,
    "jwt": JwtSettings,
    "cert": CertSettings,
    "bearer_token_file": BearerTokenFileSettings,
    "mtls": MtlsSettings,
}
