"""Process-supervisor mode: ``env_template`` and ``exec`` (issue 16, KV2-*-47x..48x).

Vault Agent's vocabulary (vault-agent.md §1.8), read the same in HCL, JSON and YAML::

    env_template "DB_PASSWORD" { contents = "...", error_on_missing_key = true }
    exec { command = ["./my-app"], restart_on_secret_changes = "always",
           restart_stop_signal = "SIGTERM" }

    env_template: {DB_PASSWORD: {contents: ..., error_on_missing_key: true}}
    exec: {command: [./my-app], restart_on_secret_changes: always}

Each ``env_template`` is rendered in memory into one environment variable of the child
that ``exec`` runs (kv2render.daemon.supervisor); nothing is written to disk. This module
parses both blocks into frozen values; ``build`` calls :func:`supervisor_settings` once.

The rules are OpenBao Agent 2.7's, measured (KV2-INV-470): ``env_template`` needs ``exec``
and refuses ``template``; a file-only key in an ``env_template`` is refused by name.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from kv2render.config.values import (
    Section,
    as_bool,
    as_path,
    as_str,
    as_text,
    denylist_alias,
    function_denylist,
    kind_of,
    show,
)
from kv2render.errors import ConfigError, raise_all

__all__ = [
    "ENV_TEMPLATE_KEYS",
    "EXEC_KEYS",
    "ExecSpec",
    "EnvTemplateSpec",
    "KILL_TIMEOUT",
    "agent_defaults",
    "supervisor_settings",
]

# Vault Agent's exec server gives a stopped child 30 s before SIGKILL and has no key for it
# ([OB] agent/exec/exec.go KillTimeout); kv2render keeps the same fixed value (KV2-INV-474).
KILL_TIMEOUT = 30.0

ENV_TEMPLATE_KEYS = (
    "contents",
    "source",
    "error_on_missing_key",
    "left_delimiter",
    "right_delimiter",
    "syntax",
    "function_denylist",
)
EXEC_KEYS = ("command", "restart_on_secret_changes", "restart_stop_signal")

# Keys of a file template that mean nothing for an environment variable: refused by name,
# as OpenBao Agent does ("env_template[A]: 'destination' is not allowed").
_FILE_ONLY_KEYS = (
    "destination",
    "perms",
    "user",
    "group",
    "backup",
    "command",
    "command_timeout",
    "exec",
    "wait",
    "sandbox_path",
    "create_dest_dirs",
    "error_fatal",
    "ref",
    "whole_secret",
    "render_interval",
)


@dataclass(frozen=True)
class EnvTemplateSpec:
    """One ``env_template``: the variable ``name`` and the body that renders its value."""

    name: str
    contents: str | None = None
    source: Path | None = None  # absolute
    error_on_missing_key: bool = True
    syntax: Literal["jinja2", "consul-template"] = "consul-template"
    left_delimiter: str | None = None
    right_delimiter: str | None = None
    function_denylist: tuple[str, ...] = ()  # KV2-INV-496

    @property
    def where(self) -> str:
        return f"env_template.{self.name}"


@dataclass(frozen=True)
class ExecSpec:
    """The ``exec`` block: the supervised child and when it restarts."""

    command: tuple[str, ...]
    restart_on_secret_changes: Literal["always", "never"] = "always"
    restart_stop_signal: int = int(signal.SIGTERM)

    @property
    def stop_signal_name(self) -> str:
        return signal.Signals(self.restart_stop_signal).name


def supervisor_settings(
    top: Section, base: Path, has_templates: bool
) -> tuple[tuple[EnvTemplateSpec, ...], ExecSpec | None]:
    """The env templates and the exec block of the top-level ``top`` (both may be absent)."""
    envs = _env_templates(top.get("env_template"), base)
    exec_spec = None if top.get("exec") is None else _exec(top.get("exec"))
    if envs and exec_spec is None:
        raise ConfigError(
            "needs a top-level exec block: the variables are given to the program it runs",
            where="env_template",
            hint="add exec: {command: [...]}, or render a file with a template instead",
        )
    if exec_spec is not None and not envs:
        raise ConfigError(
            "needs at least one env_template: exec runs a program with rendered variables",
            where="exec",
            hint="add env_template: {NAME: {contents: ...}}, or start the program yourself",
        )
    if envs and has_templates:
        # OpenBao Agent: "'template' cannot be specified with 'env_template' entries".
        raise ConfigError(
            "cannot be used together with template entries (as in Vault Agent)",
            where="env_template",
            hint="run one kv2render for the files and another for the supervised program",
        )
    return envs, exec_spec


def _entries(raw: Any) -> list[tuple[str, Any]]:
    """``{NAME: body}``, or HCL's ``[{NAME: body}, ...]``, as (name, body) pairs."""
    items: list[tuple[str, Any]] = []
    blocks = raw if isinstance(raw, list) else [raw]
    for block in blocks:
        if not isinstance(block, Mapping):
            raise ConfigError(
                f"must be a mapping of variable name to template, got {kind_of(block)}",
                where="env_template",
                hint="env_template: {DB_PASSWORD: {contents: ...}}",
            )
        items.extend(block.items())
    return items


def _env_templates(raw: Any, base: Path) -> tuple[EnvTemplateSpec, ...]:
    if raw is None:
        return ()
    problems: list[ConfigError] = []
    specs: dict[str, EnvTemplateSpec] = {}
    for name, body in _entries(raw):
        try:
            spec = _env_template(name, body, base)
        except ConfigError as exc:
            problems.append(exc)
            continue
        if spec.name in specs:
            problems.append(ConfigError("is set twice", where=spec.where))
            continue
        specs[spec.name] = spec
    raise_all(problems)
    return tuple(specs.values())


def _env_template(name: Any, body: Any, base: Path) -> EnvTemplateSpec:
    if not isinstance(name, str) or not name or "=" in name or "\0" in name:
        raise ConfigError(
            f"the variable name {show(name)} cannot be an environment variable name",
            where="env_template",
        )
    where = f"env_template.{name}"
    if isinstance(body, list) and len(body) == 1:
        body = body[0]  # HCL-JSON's one-item block list
    if isinstance(body, Mapping):
        # KV2-FC-470: a file-only key is refused by its name, not as an unknown key.
        problems = [
            ConfigError(
                "is not allowed in an env_template: the value goes into an environment "
                "variable, not a file",
                where=f"{where}.{key}",
                hint="remove it, or render a file with a template instead",
            )
            for key in body
            if key in _FILE_ONLY_KEYS
        ]
        raise_all(problems)
    sec = Section(body, where, ENV_TEMPLATE_KEYS)
    bodies = [key for key in ("source", "contents") if sec.has(key)]
    if len(bodies) != 1:
        got = " and ".join(bodies) if bodies else "none"
        raise ConfigError(f"needs exactly one of source or contents (got {got})", where=where)
    syntax = sec.opt("syntax", as_str) or "consul-template"
    if syntax not in ("jinja2", "consul-template"):
        raise ConfigError(
            f"must be 'jinja2' or 'consul-template', got {show(syntax)}", where=sec.at("syntax")
        )
    missing = sec.opt("error_on_missing_key", as_bool)
    return EnvTemplateSpec(
        name=name,
        contents=sec.opt("contents", as_text),
        source=sec.opt("source", as_path, base),
        error_on_missing_key=True if missing is None else bool(missing),
        syntax=cast(Literal["jinja2", "consul-template"], syntax),
        left_delimiter=sec.opt("left_delimiter", as_text),
        right_delimiter=sec.opt("right_delimiter", as_text),
        function_denylist=function_denylist(sec, syntax),
    )


def _exec(raw: Any) -> ExecSpec:
    if isinstance(raw, list) and len(raw) == 1:
        raw = raw[0]
    sec = Section(raw, "exec", EXEC_KEYS)
    if not sec.has("command"):
        raise ConfigError("is required", where=sec.at("command"), hint='command: ["./my-app"]')
    command = sec.get("command")
    if not isinstance(command, list) or not command:
        raise ConfigError(
            f"must be a non-empty list (the program and its arguments), got {kind_of(command)}",
            where=sec.at("command"),
            hint='command: ["./my-app", "--flag"] (no shell is involved)',
        )
    for index, arg in enumerate(command):
        if not isinstance(arg, str):
            raise ConfigError(
                f"must be a string, got {kind_of(arg)}", where=f"{sec.at('command')}[{index}]"
            )
    if not command[0].strip():
        raise ConfigError("must name a program", where=f"{sec.at('command')}[0]")
    restart = sec.opt("restart_on_secret_changes", as_str) or "always"
    if restart not in ("always", "never"):
        raise ConfigError(
            f"must be 'always' or 'never', got {show(restart)}",
            where=sec.at("restart_on_secret_changes"),
        )
    stop = sec.opt("restart_stop_signal", _signal_number)
    return ExecSpec(
        command=tuple(command),
        restart_on_secret_changes=cast(Literal["always", "never"], restart),
        restart_stop_signal=int(signal.SIGTERM) if stop is None else stop,
    )


def _signal_number(value: Any, where: str) -> int:
    """``SIGTERM``, ``sigterm`` or ``TERM`` -> its number; an unknown name is an error."""
    text = as_str(value, where).upper()
    name = text if text.startswith("SIG") else f"SIG{text}"
    member = getattr(signal.Signals, name, None) if name.isidentifier() else None
    if not isinstance(member, signal.Signals) or name.startswith("SIG_"):
        raise ConfigError(
            f"is not a signal name, got {show(value)}",
            where=where,
            hint="e.g. SIGTERM (the default), SIGINT, SIGQUIT, SIGHUP, SIGUSR1",
        )
    return int(member)


def agent_defaults(tree: dict[str, Any]) -> list[str]:
    """Vault Agent's defaults written into an agent config's env templates (KV2-INV-472).

    consul-template syntax always, and ``error_on_missing_key`` false unless set, as for
    the agent's file templates. HCL's block lists become the YAML form
    (``env_template: {NAME: {...}}``, ``exec: {...}``), so that convert-config prints
    kv2render's vocabulary. Returns the env templates that got the lenient default."""
    if isinstance(tree.get("exec"), list) and len(tree["exec"]) == 1:
        tree["exec"] = tree["exec"][0]
    raw = tree.get("env_template")
    pairs = _pairs(raw)
    if pairs is None:
        return []  # supervisor_settings reports the bad shape
    if len({name for name, _ in pairs}) == len(pairs):
        tree["env_template"] = dict(pairs)  # a name set twice stays a list: reported later
    lenient: list[str] = []
    for name, body in pairs:
        item = body[0] if isinstance(body, list) and len(body) == 1 else body
        if not isinstance(item, dict):
            continue  # supervisor_settings reports the bad entry with its name
        item["syntax"] = "consul-template"
        denylist_alias(item)
        if "error_on_missing_key" not in item:
            item["error_on_missing_key"] = False
            lenient.append(f"env_template.{name}")
        if isinstance(tree["env_template"], dict):
            tree["env_template"][name] = item
    return lenient


def _pairs(raw: Any) -> list[tuple[Any, Any]] | None:
    if raw is None:
        return None
    blocks = raw if isinstance(raw, list) else [raw]
    if not all(isinstance(block, dict) for block in blocks):
        return None
    return [pair for block in blocks for pair in block.items()]
