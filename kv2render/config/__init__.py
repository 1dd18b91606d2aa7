"""Stage config/: the configuration, parsed once, strictly, then frozen.

It owns reading YAML, JSON and Vault Agent HCL (``sources.py``), Vault Agent's vocabulary
(``agent.py``), the typed value readers (``values.py``) and the one validation pass
(``build.py``); this module holds the frozen dataclasses every other stage imports,
:func:`load` and :func:`describe`. After ``load()`` nothing reads ``os.environ``. It may
import ``redact``, ``model``, ``refs`` and the modules below them (``payload``,
``authority``, ``errors``, ``jsonnum``, ...), never a stage: ``store``, ``render``,
``output``, ``runner``, ``daemon``, ``app`` or ``cli`` (docs/architecture.md;
``lint-imports`` checks it).

Data flow of :func:`load`::

    file (.yaml/.yml/.json/.hcl) -> tree (plain dicts/lists)          sources.py
      -> unwrap Vault Agent's one-item block lists (``method: [{...}]``)
      -> a Vault Agent config (.hcl, agent JSON) rewritten into         agent.py
         kv2render's vocabulary with the agent's defaults; notices logged
      -> environment (BAO_* before VAULT_*) written over the ``vault`` block
      -> CLI overrides (dotted keys: ``{"vault.address": ...}``) written over that
      -> inline-credential scan of the whole tree (before anything else can echo it)
      -> one strict validation pass -> frozen dataclasses               build.py
                                      (value parsers: values.py)

Precedence is therefore CLI > environment > file > default (Vault Agent's
``setStringFlag`` order). Nothing after ``load()`` reads ``os.environ``: the
environment is read once, inside ``load``, from the ``env`` mapping.

Departures from Vault Agent, on purpose (each is a spec decision):

- ``vault.address`` has no default (Vault Agent: ``https://127.0.0.1:8200``): a renderer that
  silently talks to a local default server is harder to debug than one that says what is missing.
- ``VAULT_SKIP_VERIFY``/``BAO_SKIP_VERIFY`` are parsed as booleans; Vault Agent turns
  verification off for *any* non-empty value, ``false`` included.
- Relative paths anywhere in the file resolve against the config file's directory, not the
  working directory (a systemd unit runs in ``/``).
- ``template.perms`` defaults to 0600 and refuses setuid/setgid/sticky bits.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from kv2render.config.auth import (
    AuthSettings,
    AuthType,
    TokenEnvSettings,
    config_keys,
)
from kv2render.config.values import kind_of, parse_duration
from kv2render.errors import ConfigError
from kv2render.refs import SecretRef

if TYPE_CHECKING:
    from kv2render.config.build import Checked
    from kv2render.config.sink import FileSink
    from kv2render.config.supervise import EnvTemplateSpec, ExecSpec

__all__ = [
    "AuthSettings",
    "AuthType",
    "Config",
    "TemplateConfig",
    "TemplateSpec",
    "VaultSettings",
    "auth_source",
    "check_load",
    "describe",
    "load",
    "parse_duration",
]

log = logging.getLogger(__name__)


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
    num_retries: int = 12  # resolved count of retries; the file's 0 means 12 and -1 means 0
    timeout: float = 30.0  # seconds per request (connect and read)


@dataclass(frozen=True)
class TemplateConfig:
    static_secret_render_interval: float = 300.0  # seconds
    exit_on_retry_failure: bool = False
    max_output_bytes: int = 1 << 20
    concurrency: int = 8  # concurrent reads per pass
    # Wall-clock budget of one render (KV2-INV-367): 10x the step budget's second of work,
    # far above any real secret file (milliseconds), far below a poll interval.
    render_timeout: float = 10.0
    # Issue 18 (KV2-INV-500): "auto" lists a folder's versions when the server offers it and
    # reads only what changed; "read" reads every due secret, as Vault Agent does.
    change_detection: str = "auto"


@dataclass(frozen=True)
class MetricsSettings:
    """The opt-in HTTP listener: /metrics, /healthz, /readyz (issue 17, KV2-INV-425).

    Off unless configured; loopback unless an address says otherwise."""

    host: str = "127.0.0.1"
    port: int = 9102

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")


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
    whole_secret: bool = False  # a ref: without #key writes the whole secret (KV2-INV-365)
    # consul-template functions this template may not call (KV2-INV-496); exact names.
    function_denylist: tuple[str, ...] = ()

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
    # KV2-INV-354: --once's overall deadline for the server (logins, reads, retry waits);
    # 0 means none (only vault.retry.num_retries bounds the retries). Not used by the daemon.
    once_timeout: float = 60.0
    metrics: MetricsSettings | None = None
    # auto_auth.sink "file" (KV2-INV-490): where the token is written, when asked for.
    sinks: tuple[FileSink, ...] = ()
    # Process-supervisor mode (issue 16, KV2-INV-470): variables rendered in memory for the
    # child that ``exec`` runs; both empty/None otherwise (config/supervise.py).
    env_templates: tuple[EnvTemplateSpec, ...] = ()
    exec: ExecSpec | None = None


# --------------------------------------------------------------------------------------------
# Entry points


def load(
    path: str | os.PathLike[str] | None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    require_credentials: bool = True,
) -> Config:
    """Read, validate and freeze a config. Raises ConfigError naming the key path and fix.

    Precedence: CLI ``overrides`` > environment (BAO_* before VAULT_*) > file > default.

    ``overrides`` maps dotted key paths to values, e.g. ``{"vault.address": URL}``; relative
    paths in it are taken relative to the working directory. ``env`` defaults to
    ``os.environ``; it is read here and nowhere else.

    ``require_credentials=False`` is for the offline ``check``: with no ``auto_auth`` and no
    BAO_TOKEN/VAULT_TOKEN, ``auth.config.token`` is left ``None`` instead of failing.
    """
    # Imported here: these stages import the dataclasses above (no import cycle).
    from kv2render.config.build import build

    environ: Mapping[str, str] = os.environ if env is None else env
    config_path, base, tree = _tree(path, environ, overrides)
    return build(tree, config_path, base, environ, require_credentials)


def check_load(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Checked:
    """``load`` for ``check``: every problem of the file, not only the first (KV2-INV-398).

    Credentials are not required (``require_credentials=False``). A problem that stops the
    reading itself (no such file, a syntax error, an inline credential) is still raised.
    """
    from kv2render.config.build import build_checked

    environ: Mapping[str, str] = os.environ if env is None else env
    config_path, base, tree = _tree(path, environ, None)
    return build_checked(tree, config_path, base, environ, False)


def _tree(
    path: str | os.PathLike[str] | None,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
) -> tuple[Path | None, Path, dict[str, Any]]:
    """The file's tree with the agent rewrite, environment and overrides applied."""
    from kv2render.config.sources import (
        apply_env,
        apply_overrides,
        load_tree,
        refuse_inline_credentials,
        unwrap_blocks,
    )

    if path is None:
        config_path, base, tree = None, Path.cwd(), {}
    else:
        config_path = Path(os.path.abspath(path))
        base = config_path.parent
        tree = load_tree(config_path)
    if not isinstance(tree, Mapping):
        raise ConfigError(
            f"the top level must be a mapping, got {kind_of(tree)}",
            where=str(config_path or "config"),
        )
    agent = None
    if config_path is not None and config_path.suffix.lower() in (".hcl", ".json"):
        # Only HCL and JSON files can be Vault Agent configs; YAML never is, and --once
        # with a YAML config does not pay for importing agentconfig (KV2-NFR-230).
        from kv2render.config import agent as agentconfig

        agent = agentconfig.agent_reason(config_path, tree)
    tree = unwrap_blocks(tree)
    if config_path is not None and agent is not None:
        from kv2render.config import agent as agentconfig

        # KV2-AC-263: a Vault Agent config becomes a kv2render tree with the agent's defaults.
        converted = agentconfig.normalize(tree, config_path, reason=agent)
        tree = converted.tree
        for notice in converted.notices:
            log.log(notice.level, "%s", notice.message)
    apply_env(tree, environ)
    apply_overrides(tree, overrides or {})
    refuse_inline_credentials(tree, "")
    return config_path, base, tree


def auth_source(auth: AuthSettings) -> str:
    """Where the token comes from, in the operator's words, for logs and ``check``: never
    the internal name ``token_env`` (KV2-INV-399)."""
    if isinstance(auth.config, TokenEnvSettings):
        if auth.config.variable is None:
            return "no token (VAULT_TOKEN and BAO_TOKEN are unset and auto_auth is not set)"
        return f"{auth.config.variable} from the environment"
    if auth.mount_path:
        return f"auto_auth {auth.type} at {auth.mount_path}"
    return f"auto_auth {auth.type}"


def describe(config: Config) -> dict[str, Any]:
    """A JSON-able, metadata-only summary for ``check`` and logs. Never a token."""
    auth = config.auth
    return {
        "config": _opt_str(config.path),
        "vault": {
            "address": config.vault.address,
            "namespace": config.vault.namespace,
            "ca_cert": _opt_str(config.vault.ca_cert),
            "ca_path": _opt_str(config.vault.ca_path),
            "client_cert": _opt_str(config.vault.client_cert),
            "client_key": _opt_str(config.vault.client_key),
            "tls_server_name": config.vault.tls_server_name,
            "tls_skip_verify": config.vault.tls_skip_verify,
            "num_retries": config.vault.num_retries,
            "timeout": config.vault.timeout,
        },
        "auth": {
            "type": auth.type,
            "mount_path": auth.mount_path,
            "namespace": auth.namespace,
            "config": {k: _jsonable(v) for k, v in config_keys(auth.config).items()},
            "token_present": (
                auth.config.token is not None if isinstance(auth.config, TokenEnvSettings) else None
            ),
        },
        "template_config": {
            "static_secret_render_interval": config.template_config.static_secret_render_interval,
            "exit_on_retry_failure": config.template_config.exit_on_retry_failure,
            "max_output_bytes": config.template_config.max_output_bytes,
            "concurrency": config.template_config.concurrency,
            "render_timeout": config.template_config.render_timeout,
            "change_detection": config.template_config.change_detection,
        },
        "templates": [_describe_template(spec) for spec in config.templates],
        "status_file": _opt_str(config.status_file),
        "pid_file": _opt_str(config.pid_file),
        "exit_after_auth": config.exit_after_auth,
        "once_timeout": config.once_timeout,
        "metrics": None if config.metrics is None else {"address": config.metrics.address},
        "env_templates": [
            {"name": e.name, "source": _opt_str(e.source), "syntax": e.syntax}
            for e in config.env_templates
        ],
        "exec": None
        if config.exec is None
        else {
            "program": config.exec.command[0],
            "restart_on_secret_changes": config.exec.restart_on_secret_changes,
            "restart_stop_signal": config.exec.stop_signal_name,
        },
    }


# --------------------------------------------------------------------------------------------
# describe() helpers


def _opt_str(value: Path | None) -> str | None:
    return None if value is None else str(value)


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _describe_template(spec: TemplateSpec) -> dict[str, Any]:
    if spec.ref is not None:
        body: dict[str, Any] = {"ref": str(spec.ref), "secret": str(spec.ref.location)}
        body["whole_secret"] = spec.whole_secret
    elif spec.source is not None:
        body = {"source": str(spec.source)}
    else:
        body = {"contents_bytes": len((spec.contents or "").encode())}
    command_kind = (
        None if spec.command is None else ("shell" if isinstance(spec.command, str) else "argv")
    )
    return {
        "index": spec.index,
        "destination": str(spec.destination),
        **body,
        "perms": f"{spec.perms:04o}",
        "user": spec.user,
        "group": spec.group,
        "syntax": None if spec.ref is not None else spec.syntax,
        "command": command_kind,
        "render_interval": spec.render_interval,
    }
