"""Configuration: Vault Agent vocabulary, parsed once, strictly, then frozen.

CONTRACT STUB: the dataclasses and ``load`` signature are fixed; the body is
being implemented. Nothing after ``load()`` reads ``os.environ``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from kv2render.refs import SecretRef

AuthType = Literal[
    "token_env", "token_file", "approle", "kubernetes", "jwt", "cert", "bearer_token_file", "mtls"
]


@dataclass(frozen=True)
class VaultSettings:
    address: str  # base URL, may carry a path prefix (no trailing '/')
    ca_cert: Path | None = None
    ca_path: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    tls_server_name: str | None = None
    tls_skip_verify: bool = False
    namespace: str | None = None
    num_retries: int = 12  # Vault Agent's default; 0 in config means 12, -1 disables
    timeout: float = 30.0  # seconds per request (connect and read)


@dataclass(frozen=True)
class AuthSettings:
    """auto_auth.method. ``type == "token_env"`` when there is no auto_auth: the token
    then came from BAO_TOKEN / VAULT_TOKEN and sits in ``env_token`` (never in a repr)."""

    type: AuthType
    mount_path: str = ""  # 'auth/<type>' by default; '' for token_env/token_file/bearer/mtls
    namespace: str | None = None  # login requests only
    config: Mapping[str, Any] = field(default_factory=dict)  # method keys, paths resolved
    env_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TemplateConfig:
    static_secret_render_interval: float = 300.0  # seconds
    exit_on_retry_failure: bool = False
    max_output_bytes: int = 1 << 20
    concurrency: int = 8  # concurrent reads per pass


@dataclass(frozen=True)
class TemplateSpec:
    """One ``template`` entry. Exactly one of source / contents / ref is set."""

    index: int  # position in the config's template list (for 'template[N]' messages)
    destination: Path  # absolute
    source: Path | None = None  # absolute
    contents: str | None = None
    ref: SecretRef | None = None
    perms: int = 0o600
    user: str | int | None = None
    group: str | int | None = None
    create_dest_dirs: bool = False
    error_on_missing_key: bool = True
    backup: bool = False
    command: tuple[str, ...] | str | None = None  # argv list, or a string run by /bin/sh -c
    command_timeout: float = 30.0
    syntax: Literal["jinja2", "consul-template"] = "jinja2"
    left_delimiter: str | None = None
    right_delimiter: str | None = None
    render_interval: float | None = None  # per-template override of the poll interval

    @property
    def where(self) -> str:
        return f"template[{self.index}]"


@dataclass(frozen=True)
class Config:
    path: Path | None
    vault: VaultSettings
    auth: AuthSettings
    template_config: TemplateConfig
    templates: tuple[TemplateSpec, ...]
    status_file: Path | None = None
    pid_file: Path | None = None
    exit_after_auth: bool = False


def load(
    path: str | os.PathLike[str] | None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Read, validate and freeze a config. Raises ConfigError naming the key path and fix.

    Precedence: CLI ``overrides`` > environment (BAO_* before VAULT_*) > file > default.
    """
    raise NotImplementedError
