"""``auto_auth.sink "file"``: where the operator asked for the token to be written
(issue 16, KV2-INV-490).

    auto_auth { sink "file" { config { path = "...", mode = 0640, uid = N, gid = N } } }
      --parse_sinks--> (FileSink(path, mode, uid, gid), ...)

Vault Agent's keys and defaults (vault-agent.md §1.4, measured on OpenBao 2.7,
openbao-real.md): ``path`` required; ``mode`` an integer, default 0640 (HCL ``0640`` is
octal, JSON numbers are decimal); the owner as OpenBao reads it (``uid``/``gid``) or as
Vault >= 1.18 names it (``owner``/``group``), numeric ids. A sink needs an
``auto_auth.method`` (the agent refuses a sink without one too). Response wrapping and the
encrypted sink keys are refused (KV2-FC-490): kv2render would otherwise write a bare token
where the operator expected a wrapped or encrypted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kv2render.config.auth import AuthSettings
from kv2render.config.values import Section, as_int, as_path, as_perms, as_str, kind_of
from kv2render.errors import ConfigError, raise_all

__all__ = ["DEFAULT_SINK_MODE", "FileSink", "parse_sinks"]

DEFAULT_SINK_MODE = 0o640  # Vault Agent's file sink default (file_sink.go)

_SINK_KEYS = ("type", "config", "wrap_ttl", "dh_type", "dh_path", "derive_key", "aad",
              "aad_env_var")  # fmt: skip
_REFUSED_KEYS = {
    "wrap_ttl": "response-wrapped tokens are not supported: kv2render writes the token itself",
    "dh_type": "encrypted sinks are not supported",
    "dh_path": "encrypted sinks are not supported",
    "derive_key": "encrypted sinks are not supported",
    "aad": "encrypted sinks are not supported",
    "aad_env_var": "encrypted sinks are not supported",
}
_CONFIG_KEYS = ("path", "mode", "uid", "gid", "owner", "group")
_LOGIN_METHODS = ("approle", "kubernetes", "jwt", "cert", "token_file")


@dataclass(frozen=True)
class FileSink:
    """One ``sink "file"``: the token is written there, bare, no newline (KV2-INV-490)."""

    path: Path
    mode: int = DEFAULT_SINK_MODE
    uid: int | None = None
    gid: int | None = None


def parse_sinks(raw: Any, base: Path, auth: AuthSettings | None) -> tuple[FileSink, ...]:
    """``auto_auth.sink`` (one block or a list) -> FileSinks, or ConfigError naming each
    problem and its fix. ``auth``: the method beside it (None when it failed to parse)."""
    if auth is not None and auth.config.method not in _LOGIN_METHODS:
        raise ConfigError(
            f"method '{auth.type}' has no token to write",
            where="auto_auth.sink",
            hint="a sink needs a method that logs in (approle, jwt, kubernetes, cert, token_file)",
        )
    items = raw if isinstance(raw, list) else [raw]
    sinks: list[FileSink] = []
    problems: list[ConfigError] = []
    for index, item in enumerate(items):
        where = f"auto_auth.sink[{index}]" if isinstance(raw, list) else "auto_auth.sink"
        try:
            sinks.append(_parse_sink(_labelled(item), where, base))
        except ConfigError as exc:
            problems.append(exc)
    raise_all(problems)
    paths = [sink.path for sink in sinks]
    for path in paths:
        if paths.count(path) > 1:
            raise ConfigError(f"two sinks write {path}", where="auto_auth.sink")
    return tuple(sinks)


def _labelled(item: Any) -> Any:
    """HCL's ``sink "file" { ... }`` arrives as ``{"file": {...}}`` (or a one-item list)."""
    if isinstance(item, Mapping) and "type" not in item and len(item) == 1:
        ((label, body),) = item.items()
        if label not in _SINK_KEYS:
            if isinstance(body, list) and len(body) == 1:
                body = body[0]
            if isinstance(body, Mapping):
                return {"type": label, **body}
    return item


def _parse_sink(item: Any, where: str, base: Path) -> FileSink:
    sec = Section(item, where, _SINK_KEYS)
    refused = [key for key in _REFUSED_KEYS if sec.has(key)]
    if refused:
        raise ConfigError(
            "not supported by kv2render",
            where=", ".join(sec.at(key) for key in refused),
            hint="; ".join(f"{key}: {_REFUSED_KEYS[key]}" for key in refused)
            + "; remove the key to get a plain token file",
        )
    kind = sec.opt("type", as_str)
    if kind != "file":
        raise ConfigError(
            "must be 'file'" if kind else "is required",
            where=sec.at("type"),
            hint='kv2render writes file sinks only: sink "file" { config { path = ... } }',
        )
    config = sec.get("config")
    if isinstance(config, list) and len(config) == 1:
        config = config[0]
    if not isinstance(config, Mapping):
        raise ConfigError(f"must be a mapping, got {kind_of(config)}", where=sec.at("config"))
    conf = Section(config, sec.at("config"), _CONFIG_KEYS)
    if not conf.has("path"):
        raise ConfigError("is required", where=conf.at("path"), hint="the token file to write")
    mode = conf.opt("mode", as_perms)
    return FileSink(
        path=as_path(conf.get("path"), conf.at("path"), base),
        mode=DEFAULT_SINK_MODE if mode is None else mode & 0o777,
        uid=_owner_id(conf, "uid", "owner"),
        gid=_owner_id(conf, "gid", "group"),
    )


def _owner_id(conf: Section, openbao: str, vault: str) -> int | None:
    """OpenBao's ``uid``/``gid`` or Vault's ``owner``/``group``: a numeric id; not both."""
    if conf.has(openbao) and conf.has(vault):
        raise ConfigError(
            f"is set twice: as {openbao} and {vault}",
            where=conf.at(vault),
            hint=f"keep one ({openbao} is OpenBao's name, {vault} Vault's)",
        )
    key = openbao if conf.has(openbao) else vault
    value = conf.opt(key, as_int, minimum=0)
    return None if value is None else int(value)
