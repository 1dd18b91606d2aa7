"""``auto_auth.method``, parsed once into typed settings (KV2-INV-030): the part every
run needs.

    AuthSettings(type, mount_path, namespace, config, backoff, exit_on_err)
      config: one frozen dataclass per method, its fields named as Vault Agent names the
      keys of ``auto_auth.method.config`` (vault-agent.md §1.5), paths resolved:

        token_env          TokenEnvSettings (here)  no auto_auth: BAO_TOKEN / VAULT_TOKEN
        token_file         config/methods.py        (TokenFileSettings)
        approle, kubernetes, jwt, cert, bearer_token_file, mtls
                           config/logins.py         (AppRoleSettings, ...)

The auto_auth methods' settings and their one parser (:func:`methods.parse_method`) live in
``methods.py``, imported only when a config has ``auto_auth``: a token from the
environment, the common ``--once`` case, does not pay for seven frozen dataclasses at
start-up (KV2-NFR-230, docs/performance.md); and ``logins.py`` only when the method is not
token_file, the common agent-config case (KV2-NFR-520). The store's auth methods take these settings
as they are and check nothing again. A login mount path is normalised in one place,
:func:`login_mount`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol

__all__ = [
    "AuthSettings",
    "AuthType",
    "MethodSettings",
    "TokenEnvSettings",
    "config_keys",
    "login_mount",
]

AuthType = Literal[
    "token_env", "token_file", "approle", "kubernetes", "jwt", "cert", "bearer_token_file", "mtls"
]

# A field that is not a key of auto_auth.method.config (the environment token, the client
# certificate taken from the vault block): left out of config_keys().
NOT_A_KEY = {"config_key": False}
MOUNTED_METHODS = ("approle", "kubernetes", "jwt", "cert")
# The kubernetes method's default token_path (Vault Agent's); config/methods.py and
# config/logins.py both need it, and neither imports the other at load time.
DEFAULT_KUBERNETES_TOKEN_PATH = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")


class MethodSettings(Protocol):
    """What every method's settings have: the method they are for (a frozen dataclass
    each: TokenEnvSettings here, TokenFileSettings in config/methods.py, the others in
    config/logins.py)."""

    method: ClassVar[str]
    __dataclass_fields__: ClassVar[dict[str, Any]]  # a dataclass: config_keys() reads its fields


@dataclass(frozen=True)
class TokenEnvSettings:
    """No auto_auth: the token came from BAO_TOKEN / VAULT_TOKEN (never in a repr)."""

    method: ClassVar[str] = "token_env"
    token: str | None = field(default=None, repr=False, metadata=NOT_A_KEY)
    variable: str | None = field(default=None, metadata=NOT_A_KEY)  # where the token came from


def login_mount(kind: str, mount_path: str) -> str:
    """The one reading of a login mount: 'auth/<type>' by default, and a bare
    'approle-prod' means 'auth/approle-prod'; '' for a method with no login mount."""
    if kind not in MOUNTED_METHODS:
        return ""
    mount = mount_path.strip("/") or f"auth/{kind}"
    return mount if mount.startswith("auth/") else f"auth/{mount}"


@dataclass(frozen=True)
class AuthSettings:
    """auto_auth.method. ``type == "token_env"`` when there is no auto_auth: the token then
    came from BAO_TOKEN / VAULT_TOKEN and sits in ``config.token`` (never in a repr)."""

    type: AuthType
    mount_path: str = ""  # normalised by login_mount(): 'auth/<type>' by default
    namespace: str | None = None  # login requests only
    config: MethodSettings = field(default_factory=TokenEnvSettings)
    # Vault Agent's auto_auth.method backoff keys (autoauth/index.mdx): 1s doubling to 5m.
    min_backoff: float = 1.0
    max_backoff: float = 300.0
    exit_on_err: bool = False

    def __post_init__(self) -> None:
        if self.config.method != self.type:
            # A programming error, never bad input: parse_method builds both from one type.
            raise TypeError(f"auth type {self.type!r} with {type(self.config).__name__}")
        object.__setattr__(self, "mount_path", login_mount(self.type, self.mount_path))


def config_keys(config: MethodSettings) -> dict[str, Any]:
    """The method's ``auto_auth.method.config`` keys that are set, as parsed (for
    ``describe()`` and ``check``'s warnings). Never a credential: only paths and names."""
    return {
        f.name: getattr(config, f.name)
        for f in dataclasses.fields(config)
        if f.metadata.get("config_key", True) and getattr(config, f.name) is not None
    }
