"""Configuration: Vault Agent vocabulary, parsed once, strictly, then frozen.

Data flow of :func:`load`::

    file (.yaml/.yml/.json/.hcl) -> tree (plain dicts/lists)
      -> unwrap Vault Agent's one-item block lists (``method: [{...}]``)
      -> environment (BAO_* before VAULT_*) written over the ``vault`` block
      -> CLI overrides (dotted keys: ``{"vault.address": ...}``) written over that
      -> inline-credential scan of the whole tree (before anything else can echo it)
      -> one strict validation pass -> frozen dataclasses

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

import difflib
import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import yaml

from kv2render import refs
from kv2render.errors import ConfigError, InlineCredentialError
from kv2render.refs import SecretRef

__all__ = [
    "AuthSettings",
    "AuthType",
    "Config",
    "TemplateConfig",
    "TemplateSpec",
    "VaultSettings",
    "describe",
    "load",
    "parse_duration",
]

log = logging.getLogger(__name__)

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
    num_retries: int = 12  # resolved count of retries; the file's 0 means 12 and -1 means 0
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
    # Vault Agent's auto_auth.method backoff keys (autoauth/index.mdx): 1s doubling to 5m.
    min_backoff: float = 1.0
    max_backoff: float = 300.0
    exit_on_err: bool = False


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


# --------------------------------------------------------------------------------------------
# Vocabulary

_TOP_KEYS = (
    "vault",
    "auto_auth",
    "template_config",
    "template",
    "status_file",
    "pid_file",
    "exit_after_auth",
)
_VAULT_KEYS = (
    "address",
    "ca_cert",
    "ca_path",
    "client_cert",
    "client_key",
    "tls_server_name",
    "tls_skip_verify",
    "namespace",
    "retry",
    "timeout",
)
_METHOD_KEYS = (
    "type",
    "mount_path",
    "namespace",
    "config",
    "min_backoff",
    "max_backoff",
    "exit_on_err",
)
_TEMPLATE_CONFIG_KEYS = (
    "static_secret_render_interval",
    "exit_on_retry_failure",
    "max_output_bytes",
    "concurrency",
)
_TEMPLATE_KEYS = (
    "source",
    "contents",
    "ref",
    "destination",
    "perms",
    "user",
    "group",
    "create_dest_dirs",
    "error_on_missing_key",
    "backup",
    "command",
    "command_timeout",
    "syntax",
    "left_delimiter",
    "right_delimiter",
    "render_interval",
)
# Keys that make sense for a Jinja2/consul-template body but not for a raw `ref:` output.
_TEMPLATE_ONLY_KEYS = ("syntax", "left_delimiter", "right_delimiter", "error_on_missing_key")

# Method -> {config key: (kind, required, default)}. Key names are Vault Agent's
# (vault-agent.md §1.5); bearer_token_file and mtls are kv2render's (issue 6, OVHcloud).
_Kind = Literal["path", "str", "bool"]
_METHOD_CONFIG: dict[str, dict[str, tuple[_Kind, bool, Any]]] = {
    "token_file": {"token_file_path": ("path", True, None)},
    "approle": {
        "role_id_file_path": ("path", True, None),
        "secret_id_file_path": ("path", False, None),
        # Vault Agent default: true (auth/approle/approle.go); a consumed secret_id is gone.
        "remove_secret_id_file_after_reading": ("bool", False, True),
    },
    "kubernetes": {
        "role": ("str", True, None),
        "token_path": ("path", False, "/var/run/secrets/kubernetes.io/serviceaccount/token"),
    },
    "jwt": {"role": ("str", True, None), "path": ("path", True, None)},
    "cert": {"name": ("str", False, None)},
    "bearer_token_file": {"token_file_path": ("path", True, None)},
    "mtls": {},
}
_MOUNTED_METHODS = ("approle", "kubernetes", "jwt", "cert")
_CLIENT_CERT_METHODS = ("cert", "mtls")

# Inline credentials, refused at any depth (spec decision 2): key -> where it belongs instead.
_CREDENTIAL_KEYS = {
    "token": "auto_auth method token_file (token_file_path) or the VAULT_TOKEN/BAO_TOKEN "
    "environment variable",
    "client_token": "auto_auth method token_file (token_file_path) or the VAULT_TOKEN/BAO_TOKEN "
    "environment variable",
    "vault_token": "the VAULT_TOKEN/BAO_TOKEN environment variable",
    "bearer_token": "auto_auth method bearer_token_file (token_file_path)",
    "access_token": "auto_auth method bearer_token_file (token_file_path)",
    "secret_id": "secret_id_file_path",
    # role_id is not secret in Vault, but Vault Agent only has role_id_file_path; one rule
    # ("credentials come from files") is easier to audit than a list of exceptions.
    "role_id": "role_id_file_path",
    "jwt": "a file: 'path' (jwt method) or 'token_path' (kubernetes method)",
    "password": "a file or the environment; kv2render reads no password from its config",
    "private_key": "vault.client_key (a file path)",
    "client_key_pem": "vault.client_key (a file path)",
    "client_key_bytes": "vault.client_key (a file path)",
}

# Vault Agent keys a user may bring along that kv2render does not implement: say why.
_UNSUPPORTED = {
    "sink": "kv2render never writes tokens to disk; remove the sink",
    "cache": "kv2render has no cache/proxy; remove it",
    "listener": "kv2render has no listener; remove it",
    "api_proxy": "kv2render has no API proxy; remove it",
    "telemetry": "kv2render exports no telemetry; remove it",
    "env_template": "process-supervisor mode is not supported; render a file instead",
    "exec": "process-supervisor mode is not supported; use template.command",
    "wrap_ttl": "response-wrapped tokens are not supported",
    "wait": "quiescence timers are not supported yet",
    "sandbox_path": "consul-template's file function is not supported",
    "function_denylist": "consul-template's file/env functions are not available anyway",
}

# Agent stanzas an HCL config may carry that do not affect rendering: warned, not fatal.
_AGENT_IGNORED = ("listener", "cache", "api_proxy", "telemetry")

# (env suffix, vault key). Each is read as BAO_<suffix> then VAULT_<suffix> (OpenBao's
# api/env.go LookupBaoVariable order).
_ENV_VAULT = (
    ("ADDR", "address"),
    ("CACERT", "ca_cert"),
    ("CAPATH", "ca_path"),
    ("CLIENT_CERT", "client_cert"),
    ("CLIENT_KEY", "client_key"),
    ("NAMESPACE", "namespace"),
    ("TLS_SERVER_NAME", "tls_server_name"),
    ("SKIP_VERIFY", "tls_skip_verify"),
)
_ENV_PATH_KEYS = ("ca_cert", "ca_path", "client_cert", "client_key")
# Override keys holding paths: a relative one came from the CLI, so it is relative to the cwd.
_OVERRIDE_PATH_KEYS = (
    "vault.ca_cert",
    "vault.ca_path",
    "vault.client_cert",
    "vault.client_key",
    "status_file",
    "pid_file",
)

_DEFAULT_RETRIES = 12  # consul-template DefaultRetryAttempts
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_HINT = "write a duration such as 30s, 5m, 1h30m or 250ms, or whole seconds"


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
    BAO_TOKEN/VAULT_TOKEN, ``auth.env_token`` is left ``None`` instead of failing.
    """
    environ: Mapping[str, str] = os.environ if env is None else env
    if path is None:
        config_path, base, tree = None, Path.cwd(), {}
    else:
        config_path = Path(os.path.abspath(path))
        base = config_path.parent
        tree = _load_tree(config_path)
    if not isinstance(tree, Mapping):
        raise ConfigError(
            f"the top level must be a mapping, got {_kind(tree)}",
            where=str(config_path or "config"),
        )
    tree = _unwrap_blocks(tree)
    _apply_env(tree, environ)
    _apply_overrides(tree, overrides or {})
    _refuse_inline_credentials(tree, "")
    return _build(tree, config_path, base, environ, require_credentials)


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
            "config": {k: _jsonable(v) for k, v in auth.config.items()},
            "token_present": auth.env_token is not None if auth.type == "token_env" else None,
        },
        "template_config": {
            "static_secret_render_interval": config.template_config.static_secret_render_interval,
            "exit_on_retry_failure": config.template_config.exit_on_retry_failure,
            "max_output_bytes": config.template_config.max_output_bytes,
            "concurrency": config.template_config.concurrency,
        },
        "templates": [_describe_template(spec) for spec in config.templates],
        "status_file": _opt_str(config.status_file),
        "pid_file": _opt_str(config.pid_file),
        "exit_after_auth": config.exit_after_auth,
    }


def parse_duration(value: Any, where: str, *, allow_zero: bool = False) -> float:
    """Seconds from ``30s``, ``5m``, ``1h30m``, ``250ms`` or a bare integer (Vault Agent's
    ParseDurationSecond accepts integers as seconds). Raises ConfigError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(
            f"must be a duration, got {_kind(value)}", where=where, hint=_DURATION_HINT
        )
    if isinstance(value, int):
        seconds = float(value)
    elif value.strip().isdigit():
        seconds = float(int(value.strip()))
    else:
        text = value.strip()
        parts = list(_DURATION_PART.finditer(text))
        if not parts or "".join(m.group(0) for m in parts) != text:
            raise ConfigError(f"not a duration: {_show(value)}", where=where, hint=_DURATION_HINT)
        seconds = sum(float(m.group(1)) * _DURATION_UNITS[m.group(2)] for m in parts)
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(f"must be greater than zero, got {_show(value)}", where=where)
    return seconds


# --------------------------------------------------------------------------------------------
# Reading the file into a tree


def _load_tree(path: Path) -> Any:
    """The file as plain dicts/lists; the seam where each format plugs in."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read the config file: {reason}", where=str(path)) from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _load_json(text, path)
    if suffix == ".hcl":
        return _load_hcl(text, path)
    return _load_yaml(text, path)  # .yaml, .yml, and anything else (YAML is a JSON superset)


def _load_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicate_pairs)
    except json.JSONDecodeError as exc:
        # exc.msg is the parser's complaint only, never the document's text.
        raise ConfigError(
            f"invalid JSON (column {exc.colno}): {exc.msg}", where=f"{path}:{exc.lineno}"
        ) from None
    except _DuplicateKey as exc:
        raise ConfigError(f"duplicate key '{exc.key}'", where=str(path)) from None


class _DuplicateKey(Exception):
    def __init__(self, key: str, line: int | None = None) -> None:
        super().__init__(key)
        self.key = key
        self.line = line


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise _DuplicateKey(key, key_node.start_mark.line + 1)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str, path: Path) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"duplicate key '{exc.key}'", where=f"{path}:{exc.line}") from None
    except yaml.YAMLError as exc:
        # str(exc) quotes the offending source line, which could hold a secret: use the
        # position and the parser's complaint only.
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "syntax error"
        if mark is None:
            raise ConfigError(f"invalid YAML: {problem}", where=str(path)) from None
        raise ConfigError(
            f"invalid YAML (column {mark.column + 1}): {problem}", where=f"{path}:{mark.line + 1}"
        ) from None


def _load_hcl(text: str, path: Path) -> Any:
    """Vault Agent HCL, in the same tree shape as its JSON form (blocks are lists).

    Agent stanzas that do not change what is rendered are dropped with a warning
    (KV2-FC-251); the others stay and fail validation with a reason."""
    import hcl2  # lazy: only HCL users pay for the parser
    from hcl2.utils import SerializationOptions

    options = SerializationOptions(
        with_comments=False,
        explicit_blocks=False,
        strip_string_quotes=True,
        preserve_heredocs=False,
    )
    try:
        tree = hcl2.loads(text, serialization_options=options)
    except Exception as exc:  # noqa: BLE001 - lark raises many types; their text quotes input
        line = getattr(exc, "line", None)
        where = f"{path}:{line}" if isinstance(line, int) else str(path)
        raise ConfigError(f"invalid HCL ({type(exc).__name__})", where=where) from None
    for key in _AGENT_IGNORED:
        if isinstance(tree, dict) and tree.pop(key, None) is not None:
            log.warning("%s: ignoring the agent '%s' stanza (%s)", path, key, _UNSUPPORTED[key])
    return tree


# --------------------------------------------------------------------------------------------
# Tree rewriting: block shapes, environment, overrides, credential scan


def _unwrap(value: Any) -> Any:
    """Vault Agent's HCL/JSON shape gives singleton blocks as one-item lists."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], Mapping):
        return dict(value[0])
    return dict(value) if isinstance(value, Mapping) else value


def _unwrap_blocks(tree: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(tree)
    for key in ("vault", "auto_auth", "template_config"):
        if key in out:
            out[key] = _unwrap(out[key])
    if isinstance(out.get("vault"), dict) and "retry" in out["vault"]:
        out["vault"]["retry"] = _unwrap(out["vault"]["retry"])
    auto_auth = out.get("auto_auth")
    if isinstance(auto_auth, dict) and "method" in auto_auth:
        auto_auth["method"] = method = _unwrap(auto_auth["method"])
        if isinstance(method, dict) and "config" in method:
            method["config"] = _unwrap(method["config"])
    if isinstance(out.get("template"), Mapping):
        out["template"] = [out["template"]]  # one `template {}` block in HCL-as-JSON
    return out


def _env_lookup(environ: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
    """(name, value) of BAO_<suffix>, else VAULT_<suffix>; empty counts as unset."""
    for name in (f"BAO_{suffix}", f"VAULT_{suffix}"):
        value = environ.get(name, "")
        if value.strip():
            return name, value.strip()
    return None


def _env_bool(name: str, value: str) -> bool:
    # Departs on purpose from Vault Agent, whose setBoolFlag treats any non-empty value as
    # true (so VAULT_SKIP_VERIFY=false disables verification): garbage is an error here.
    lowered = value.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ConfigError(f"must be true/1/yes or false/0/no, got {_show(value)}", where=name)


def _apply_env(tree: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Write the environment over the file's ``vault`` block (env beats file)."""
    if tree.get("vault") is None:
        tree["vault"] = {}
    vault = tree["vault"]
    if not isinstance(vault, dict):
        return  # validation reports the bad block
    for suffix, key in _ENV_VAULT:
        found = _env_lookup(environ, suffix)
        if found is None:
            continue
        name, value = found
        if key == "tls_skip_verify":
            vault[key] = _env_bool(name, value)
        elif key == "address":
            vault[key] = _address(value, name)
        elif key in _ENV_PATH_KEYS:
            vault[key] = os.path.abspath(value)  # relative to the cwd, like the Vault CLI
        else:
            vault[key] = value
    found = _env_lookup(environ, "MAX_RETRIES")
    if found is not None:
        # VAULT_MAX_RETRIES is the API client's literal count (0 = no retries); the config
        # key uses consul-template's encoding (0 = default 12, -1 = none).
        count = _int(found[1], found[0], minimum=0)
        retry = vault.setdefault("retry", {})
        if isinstance(retry, dict):
            retry["num_retries"] = count if count > 0 else -1


def _apply_overrides(tree: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = tree
        for i, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    "cannot override inside a non-mapping", where=".".join(parents[: i + 1])
                )
            node = child
        if dotted in _OVERRIDE_PATH_KEYS and isinstance(value, str | os.PathLike):
            value = os.path.abspath(value)
        node[leaf] = value


def _walk(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """(key path, key) for every mapping key at any depth."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            path = _join(where, str(key))
            yield path, str(key)
            yield from _walk(value, path)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{where}[{i}]")


def _refuse_inline_credentials(tree: Any, where: str) -> None:
    """KV2 spec decision 2: credentials live in files or the environment, never in config.
    Runs before validation so no later error message can quote the value."""
    for path, key in _walk(tree, where):
        hint = _CREDENTIAL_KEYS.get(key.lower())
        if hint is not None:
            raise InlineCredentialError(
                "inline credentials are refused", where=path, hint=f"use {hint}"
            )


# --------------------------------------------------------------------------------------------
# Validation


class _Section:
    """One mapping of the tree, its key path, and its allowed keys (checked on entry)."""

    def __init__(self, data: Any, where: str, allowed: tuple[str, ...]) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"must be a mapping, got {_kind(data)}",
                where=where or "config",
                hint="a block may also be a list holding exactly one mapping",
            )
        for key in data:
            if not isinstance(key, str):
                raise ConfigError(
                    f"keys must be strings, got {_kind(key)}", where=where or "config"
                )
            if key not in allowed:
                raise _unknown_key(_join(where, key), key, allowed)
        self.data: Mapping[str, Any] = data
        self.where = where

    def at(self, key: str) -> str:
        return _join(self.where, key)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def section(self, key: str, allowed: tuple[str, ...]) -> _Section:
        value = self.data.get(key)
        return _Section({} if value is None else value, self.at(key), allowed)

    def opt(self, key: str, parse: Any, *args: Any, **kwargs: Any) -> Any:
        """``parse(value, where, ...)`` when the key is set, else None."""
        value = self.data.get(key)
        return None if value is None else parse(value, self.at(key), *args, **kwargs)


def _unknown_key(where: str, key: str, allowed: tuple[str, ...]) -> ConfigError:
    if key in _UNSUPPORTED:
        return ConfigError("not supported by kv2render", where=where, hint=_UNSUPPORTED[key])
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(allowed)}"
    return ConfigError("unknown key", where=where, hint=hint)


def _build(
    tree: Mapping[str, Any],
    config_path: Path | None,
    base: Path,
    environ: Mapping[str, str],
    require_credentials: bool,
) -> Config:
    top = _Section(tree, "", _TOP_KEYS)
    vault = _vault_settings(top.section("vault", _VAULT_KEYS), base)
    auth = _auth_settings(top, vault, base, environ, require_credentials)
    return Config(
        path=config_path,
        vault=vault,
        auth=auth,
        template_config=_template_config(top.section("template_config", _TEMPLATE_CONFIG_KEYS)),
        # A Vault Agent HCL config's templates are consul-template (Go) templates.
        templates=_templates(
            top,
            base,
            vault.address,
            hcl=config_path is not None and config_path.suffix.lower() == ".hcl",
        ),
        status_file=top.opt("status_file", _path, base),
        pid_file=top.opt("pid_file", _path, base),
        exit_after_auth=bool(top.opt("exit_after_auth", _bool)),
    )


def _vault_settings(sec: _Section, base: Path) -> VaultSettings:
    if not sec.has("address"):
        raise ConfigError(
            "is not set",
            where="vault.address",
            hint="set it in the config or VAULT_ADDR/BAO_ADDR",
        )
    retry = sec.section("retry", ("num_retries",))
    num_retries = _DEFAULT_RETRIES
    if retry.has("num_retries"):
        raw = _int(retry.get("num_retries"), retry.at("num_retries"), minimum=-1)
        # Vault Agent (config.go): 0 -> the default 12, -1 -> retries disabled.
        num_retries = {0: _DEFAULT_RETRIES, -1: 0}.get(raw, raw)
    settings = VaultSettings(
        address=_address(sec.get("address"), sec.at("address")),
        ca_cert=sec.opt("ca_cert", _path, base),
        ca_path=sec.opt("ca_path", _path, base),
        client_cert=sec.opt("client_cert", _path, base),
        client_key=sec.opt("client_key", _path, base),
        tls_server_name=sec.opt("tls_server_name", _str),
        tls_skip_verify=bool(sec.opt("tls_skip_verify", _bool)),
        namespace=sec.opt("namespace", _str),
        num_retries=num_retries,
        timeout=sec.opt("timeout", parse_duration) or 30.0,
    )
    if (settings.client_cert is None) != (settings.client_key is None):
        missing = "client_key" if settings.client_key is None else "client_cert"
        raise ConfigError(
            "is required when the other half of the client certificate is set",
            where=f"vault.{missing}",
            hint=f"set vault.{missing} or VAULT_{missing.upper()}/BAO_{missing.upper()}",
        )
    return settings


def _auth_settings(
    top: _Section,
    vault: VaultSettings,
    base: Path,
    environ: Mapping[str, str],
    require_credentials: bool,
) -> AuthSettings:
    if not top.has("auto_auth"):
        # Issue 4: with no auto_auth the token comes from the environment. With auto_auth,
        # an environment token is ignored (Vault Agent blanks the runner's token too).
        found = _env_lookup(environ, "TOKEN")
        if found is None and require_credentials:
            raise ConfigError(
                "no credentials: auto_auth is not configured and no token is in the environment",
                where="auto_auth",
                hint="set VAULT_TOKEN or BAO_TOKEN, or configure auto_auth",
            )
        return AuthSettings(type="token_env", env_token=None if found is None else found[1])
    auto_auth = top.section("auto_auth", ("method",))
    if not auto_auth.has("method"):
        raise ConfigError("is required", where="auto_auth.method", hint="add method: {type: ...}")
    return _method(auto_auth.get("method"), vault, base)


def _method_label(raw: Any) -> Any:
    """HCL's ``method "approle" { ... }`` arrives as ``{"approle": {...}}``."""
    if isinstance(raw, Mapping) and "type" not in raw and len(raw) == 1:
        ((label, body),) = raw.items()
        if label not in _METHOD_KEYS and isinstance(body, Mapping):
            return {"type": label, **body}
    return raw


def _method(raw: Any, vault: VaultSettings, base: Path) -> AuthSettings:
    sec = _Section(_method_label(raw), "auto_auth.method", _METHOD_KEYS)
    if not sec.has("type"):
        raise ConfigError(
            "is required", where=sec.at("type"), hint=f"one of {', '.join(_METHOD_CONFIG)}"
        )
    kind = _str(sec.get("type"), sec.at("type"))
    if kind not in _METHOD_CONFIG:
        close = difflib.get_close_matches(kind, _METHOD_CONFIG, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ConfigError(
            f"auth method '{kind}' is not supported",
            where=sec.at("type"),
            hint=f"{hint}supported: {', '.join(_METHOD_CONFIG)}",
        )
    if kind in _CLIENT_CERT_METHODS and (vault.client_cert is None or vault.client_key is None):
        raise ConfigError(
            f"method '{kind}' needs vault.client_cert and vault.client_key",
            where=sec.at("type"),
            hint="set them in the vault block or VAULT_CLIENT_CERT/VAULT_CLIENT_KEY",
        )
    mount_path = ""
    if kind in _MOUNTED_METHODS:
        mount_path = (sec.opt("mount_path", _str) or f"auth/{kind}").strip("/")
        if not mount_path:
            raise ConfigError("must not be empty", where=sec.at("mount_path"))
        if not mount_path.startswith("auth/"):
            # Same reading as auth.py: a bare 'approle-prod' means 'auth/approle-prod'.
            mount_path = f"auth/{mount_path}"
    elif sec.has("mount_path"):
        raise ConfigError(f"method '{kind}' has no login mount", where=sec.at("mount_path"))
    min_backoff = sec.opt("min_backoff", parse_duration) or 1.0
    max_backoff = sec.opt("max_backoff", parse_duration) or 300.0
    if max_backoff < min_backoff:
        raise ConfigError("must not be smaller than min_backoff", where=sec.at("max_backoff"))
    return AuthSettings(
        type=cast(AuthType, kind),
        mount_path=mount_path,
        namespace=sec.opt("namespace", _str),
        config=_method_config(sec, kind, base),
        min_backoff=min_backoff,
        max_backoff=max_backoff,
        exit_on_err=bool(sec.opt("exit_on_err", _bool)),
    )


def _method_config(method: _Section, kind: str, base: Path) -> Mapping[str, Any]:
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
            out[key] = _path(value, sec.at(key), base)
        elif value_kind == "bool":
            out[key] = _bool(value, sec.at(key))
        else:
            out[key] = _str(value, sec.at(key))
    return MappingProxyType(out)


def _template_config(sec: _Section) -> TemplateConfig:
    default = TemplateConfig()
    interval = sec.opt("static_secret_render_interval", parse_duration)
    max_bytes = sec.opt("max_output_bytes", _int, minimum=1)
    concurrency = sec.opt("concurrency", _int, minimum=1)
    return TemplateConfig(
        static_secret_render_interval=interval or default.static_secret_render_interval,
        exit_on_retry_failure=bool(sec.opt("exit_on_retry_failure", _bool)),
        max_output_bytes=max_bytes or default.max_output_bytes,
        concurrency=concurrency or default.concurrency,
    )


def _templates(
    top: _Section, base: Path, address: str, *, hcl: bool = False
) -> tuple[TemplateSpec, ...]:
    raw = top.get("template")
    if raw is None or raw == []:
        raise ConfigError(
            "at least one template is required", where="template", hint="add a 'template' list"
        )
    if not isinstance(raw, list):
        raise ConfigError(f"must be a list of templates, got {_kind(raw)}", where="template")
    specs: list[TemplateSpec] = []
    seen: dict[Path, int] = {}
    for index, item in enumerate(raw):
        spec = _template(index, item, base, address, hcl=hcl)
        if spec.destination in seen:
            other = seen[spec.destination]
            raise ConfigError(
                f"'{spec.destination}' is also the destination of template[{other}]",
                where=f"{spec.where}.destination",
                hint="each template needs its own destination",
            )
        seen[spec.destination] = index
        specs.append(spec)
    return tuple(specs)


def _template(index: int, raw: Any, base: Path, address: str, *, hcl: bool) -> TemplateSpec:
    sec = _Section(raw, f"template[{index}]", _TEMPLATE_KEYS)
    bodies = [key for key in ("source", "contents", "ref") if sec.has(key)]
    if len(bodies) != 1:
        got = " and ".join(bodies) if bodies else "none"
        raise ConfigError(
            f"needs exactly one of source, contents or ref (got {got})", where=sec.where
        )
    if not sec.has("destination"):
        raise ConfigError("is required", where=sec.at("destination"))
    destination = _path(sec.get("destination"), sec.at("destination"), base)
    source = sec.opt("source", _path, base)
    if source == destination:
        raise ConfigError("must differ from source", where=sec.at("destination"))
    ref = _template_ref(sec, address)
    perms = sec.opt("perms", _perms)
    if perms is None:
        perms = 0o600
        if hcl:
            # Vault Agent would write 0644 (KV2-INV-253, KV2-AC-265): say why this differs.
            log.info("%s: no perms set; writing 0600, not Vault Agent's 0644", sec.where)
    if perms & 0o044:
        log.warning("%s.perms %04o lets group/other read %s", sec.where, perms, destination)
    return TemplateSpec(
        index=index,
        destination=destination,
        source=source,
        contents=sec.opt("contents", _text),
        ref=ref,
        perms=perms,
        user=sec.opt("user", _owner),
        group=sec.opt("group", _owner),
        create_dest_dirs=bool(sec.opt("create_dest_dirs", _bool)),
        error_on_missing_key=_missing_key_mode(sec, hcl=hcl),
        backup=bool(sec.opt("backup", _bool)),
        command=sec.opt("command", _command),
        command_timeout=sec.opt("command_timeout", parse_duration) or 30.0,
        syntax=_syntax(sec, source, hcl=hcl),
        left_delimiter=sec.opt("left_delimiter", _text),
        right_delimiter=sec.opt("right_delimiter", _text),
        render_interval=sec.opt("render_interval", parse_duration),
    )


def _missing_key_mode(sec: _Section, *, hcl: bool) -> bool:
    value = sec.opt("error_on_missing_key", _bool)
    if value is None:
        # kv2render configs are strict; a Vault Agent HCL config keeps Vault Agent's default
        # (false) so existing templates render unchanged (KV2-INV-253, KV2-AC-266).
        return not hcl
    return bool(value)


def _template_ref(sec: _Section, address: str) -> SecretRef | None:
    if not sec.has("ref"):
        return None
    for key in _TEMPLATE_ONLY_KEYS:
        if sec.has(key):
            raise ConfigError(
                "applies to source/contents templates only",
                where=sec.at(key),
                hint="a ref: output is written raw and always fails on a missing key",
            )
    where = sec.at("ref")
    ref = refs.parse_ref(_str(sec.get("ref"), where), where=where)
    refs.check_authority(ref, address, where=where)
    return ref


def _syntax(
    sec: _Section, source: Path | None, *, hcl: bool
) -> Literal["jinja2", "consul-template"]:
    if not sec.has("syntax"):
        # Vault Agent templates conventionally end in .ctmpl: treat them as consul-template.
        ctmpl = hcl or (source is not None and source.suffix == ".ctmpl")
        return "consul-template" if ctmpl else "jinja2"
    value = _str(sec.get("syntax"), sec.at("syntax"))
    if value not in ("jinja2", "consul-template"):
        raise ConfigError(
            f"must be 'jinja2' or 'consul-template', got {_show(value)}", where=sec.at("syntax")
        )
    return cast(Literal["jinja2", "consul-template"], value)


# --------------------------------------------------------------------------------------------
# Value parsers: parse(value, where, ...) -> typed value, or ConfigError naming `where`.


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, got {_kind(value)}", where=where)
    if not value.strip():
        raise ConfigError("must not be empty", where=where)
    return value.strip()


def _text(value: Any, where: str) -> str:
    """A non-empty string kept exactly as written (template bodies keep their whitespace)."""
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, got {_kind(value)}", where=where)
    if not value:
        raise ConfigError("must not be empty", where=where)
    return value


def _bool(value: Any, where: str) -> bool:
    # YAML booleans, plus Vault-style "true"/"false" strings (HCL and env-derived values).
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"must be true or false, got {_show(value)}", where=where)


def _int(value: Any, where: str, *, minimum: int | None = None) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    if number is None:
        raise ConfigError(f"must be an integer, got {_show(value)}", where=where)
    if minimum is not None and number < minimum:
        raise ConfigError(f"must be at least {minimum}, got {number}", where=where)
    return number


def _path(value: Any, where: str, base: Path) -> Path:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = _str(value, where)
    if "\0" in text:
        raise ConfigError("must not contain a NUL byte", where=where)
    if text.startswith("~"):
        raise ConfigError(
            f"'~' is not expanded, got {_show(text)}", where=where, hint="write the full path"
        )
    return Path(os.path.normpath(base / text))  # an absolute `text` replaces `base`


def _address(value: Any, where: str) -> str:
    text = _str(value, where)
    parts = urlsplit(text)
    if "@" in parts.netloc:
        # Never echo it: the user-info part of a URL is a credential.
        raise InlineCredentialError(
            "credentials in the address are refused",
            where=where,
            hint="remove the user:password@ part and configure auto_auth",
        )
    try:
        port_ok = parts.port is None or 0 < parts.port
    except ValueError:
        port_ok = False
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or not port_ok:
        raise ConfigError(f"must be http(s)://host[:port][/prefix], got {_show(text)}", where=where)
    if parts.query or parts.fragment:
        raise ConfigError("must not carry a query or a fragment", where=where)
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1"):
        raise ConfigError(
            f"must not end in /v1, got {_show(text)}",
            where=where,
            hint="kv2render adds /v1 itself; give the base address",
        )
    return f"{parts.scheme.lower()}://{parts.netloc}{prefix}"


def _perms(value: Any, where: str) -> int:
    hint = "write an octal string such as '0640' (or YAML 0640 / 0o640)"
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"(0[oO])?[0-7]{1,4}", value.strip()):
        mode = int(value.strip().lower().removeprefix("0o"), 8)
    else:
        raise ConfigError(f"must be an octal file mode, got {_show(value)}", where=where, hint=hint)
    if not 0 <= mode <= 0o7777:
        raise ConfigError(f"is not a file mode: {_show(value)}", where=where, hint=hint)
    if mode & 0o7000:
        # Also catches `perms: 640` (decimal 640 = 0o1200), the usual unquoted mistake.
        raise ConfigError(
            f"sets setuid/setgid/sticky bits ({mode:04o}), refused on rendered files",
            where=where,
            hint=hint,
        )
    return mode


def _owner(value: Any, where: str) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"must be a name or an id >= 0, got {value}", where=where)
        return value
    text = _str(value, where)
    return int(text) if text.isdigit() else text


def _command(value: Any, where: str) -> tuple[str, ...] | str:
    if isinstance(value, str):
        return _str(value, where)  # run by /bin/sh -c
    if isinstance(value, list) and value:
        for i, arg in enumerate(value):
            if not isinstance(arg, str):
                raise ConfigError(f"must be a string, got {_kind(arg)}", where=f"{where}[{i}]")
        if not value[0].strip():
            raise ConfigError("must name a program", where=f"{where}[0]")
        return tuple(value)
    raise ConfigError(f"must be an argv list or a shell string, got {_show(value)}", where=where)


# --------------------------------------------------------------------------------------------
# Small helpers


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _kind(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, Mapping):
        return "a mapping"
    return "nothing" if value is None else f"a {type(value).__name__}"


def _show(value: Any) -> str:
    """A short repr for messages; only used on values that are not credentials."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _opt_str(value: Path | None) -> str | None:
    return None if value is None else str(value)


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Path) else value


def _describe_template(spec: TemplateSpec) -> dict[str, Any]:
    if spec.ref is not None:
        body: dict[str, Any] = {"ref": str(spec.ref), "secret": str(spec.ref.location)}
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
