"""Vault Agent configs (HCL or JSON) read as kv2render configs (issue 9, KV2-*-25x..27x).

Data flow::

    agent.hcl / agent JSON --config_sources--> tree
      --agent_reason--> is it a Vault Agent config? (rule below)
      --normalize--> AgentTree: the tree in kv2render's vocabulary, with the agent's
                     defaults written in, plus the notices about what changed
        config.load:     logs the notices, validates the tree as any other config
        convert_config:  prints the tree as kv2render YAML, the changes as comments

Because both paths go through :func:`normalize`, ``convert-config``'s YAML loads to
the same templates as the agent file (KV2-AC-268) by construction.

Which files are Vault Agent configs (the documented rule):

- a ``.hcl`` file, always (kv2render's own format is YAML or JSON);
- a ``.json`` file whose name ends in ``.agent.json``;
- any other ``.json`` file showing a shape only Vault Agent's HCL-as-JSON gives: a
  stanza kv2render does not have (``listener``, ``cache``, ``telemetry``, ...),
  ``auto_auth.sink``, a ``vault``/``auto_auth``/``template_config``/``method`` block
  written as a one-item list, a single ``template`` object, or a template key only the
  agent knows (``exec``, ``wait``, ``error_fatal``, ``sandbox_path``).

YAML is never an agent config: Vault Agent does not read YAML.

Semantics follow the agent's (KV2-INV-253), with one deliberate exception: a template
without ``perms`` is written 0600, not 0644, said once at start.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from kv2render.config.listener import metrics_listener
from kv2render.config.values import Section, denylist_alias, kind_of
from kv2render.errors import ConfigError

if TYPE_CHECKING:
    import yaml

__all__ = [
    "AgentTree",
    "Notice",
    "agent_reason",
    "convert_config",
    "normalize",
]

# The config stage's logger: users filter on one name whichever module speaks.
log = logging.getLogger("kv2render.config")

AGENT_JSON_SUFFIX = ".agent.json"

# Stanzas whose absence would change what is rendered or written: refused (KV2-FC-251).
# env_template/exec (process-supervisor mode) are kv2render vocabulary since issue 16.
_REFUSED: dict[str, str] = {}

# Top-level stanzas and settings that do not change what is rendered: dropped, warned.
_IGNORED_TOP = {
    "cache": "kv2render has no cache",
    "api_proxy": "kv2render has no API proxy",
    "log_level": "use --log-level",
    "log_format": "use --log-format",
    "log_file": "kv2render logs to stderr",
    "log_rotate_bytes": "kv2render logs to stderr",
    "log_rotate_duration": "kv2render logs to stderr",
    "log_rotate_max_files": "kv2render logs to stderr",
    "disable_idle_connections": "kv2render manages its own connections",
    "disable_keep_alives": "kv2render manages its own connections",
}
_IGNORED_TEMPLATE_CONFIG = {
    "max_connections_per_host": "template_config.concurrency (default 8) bounds parallel reads",
    "lease_renewal_threshold": "KV2 secrets have no lease; static_secret_render_interval "
    "sets the poll",
}
_IGNORED_TEMPLATE = {
    # consul-template's quiescence timers: renders happen at once instead (§2.6).
    "wait": "quiescence timers are not implemented; a change renders at the next poll",
    "error_fatal": "each template's error is reported and the others keep rendering",
    "sandbox_path": "the file function it confines is not supported anyway",
}
_AGENT_TEMPLATE_KEYS = ("exec", *_IGNORED_TEMPLATE)


class Notice(NamedTuple):
    """One log line ``config.load`` emits for an agent config (metadata only). NamedTuples
    here, not frozen dataclasses: as immutable, a sixth of the import cost (KV2-NFR-520)."""

    level: int
    message: str


class AgentTree(NamedTuple):
    """An agent config in kv2render's vocabulary and what changed on the way.

    ``changes`` are ``(key path, what happened)`` pairs for convert-config's comments."""

    tree: dict[str, Any]
    notices: tuple[Notice, ...]
    changes: tuple[tuple[str, str], ...]


# --------------------------------------------------------------------------------------------
# Detection


def agent_reason(path: Path, tree: Any) -> str | None:
    """Why ``tree`` (as read, before block unwrapping) is a Vault Agent config, or None."""
    suffix = path.suffix.lower()
    if suffix == ".hcl":
        return "an HCL file"
    if suffix != ".json" or not isinstance(tree, Mapping):
        return None
    if path.name.lower().endswith(AGENT_JSON_SUFFIX):
        return f"the name ends in {AGENT_JSON_SUFFIX}"
    # The shapes of the module docstring's rule, checked in its order; a reason is never "".
    return (
        _stanza_reason(tree)
        or _block_list_reason(tree)
        or _auto_auth_reason(tree)
        or _template_reason(tree)
    )


def _stanza_reason(tree: Mapping[str, Any]) -> str | None:
    for key in tree:
        if key in _REFUSED or key in _IGNORED_TOP or key in ("listener", "telemetry"):
            return f"it has the agent-only '{key}' stanza"
    return None


def _block_list_reason(tree: Mapping[str, Any]) -> str | None:
    for key in ("vault", "auto_auth", "template_config"):
        if isinstance(tree.get(key), list):
            return f"'{key}' is an HCL-JSON block list"
    return None


def _auto_auth_reason(tree: Mapping[str, Any]) -> str | None:
    auto_auth = _first(tree.get("auto_auth"))
    if not isinstance(auto_auth, Mapping):
        return None
    if "sink" in auto_auth:
        return "it has an auto_auth sink"
    if isinstance(auto_auth.get("method"), list):
        return "'auto_auth.method' is an HCL-JSON block list"
    return None


def _template_reason(tree: Mapping[str, Any]) -> str | None:
    templates = tree.get("template")
    if isinstance(templates, Mapping):
        return "'template' is a single HCL-JSON block"
    for item in templates if isinstance(templates, list) else ():
        for key in item if isinstance(item, Mapping) else ():
            if key in _AGENT_TEMPLATE_KEYS:
                return f"a template has the agent-only '{key}' key"
    return None


def _first(value: Any) -> Any:
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


# --------------------------------------------------------------------------------------------
# Agent tree -> kv2render tree


def normalize(tree: Mapping[str, Any], path: Path, *, reason: str | None = None) -> AgentTree:
    """The unwrapped agent ``tree`` in kv2render's vocabulary, with the agent's defaults.

    Raises ConfigError naming every refused stanza in one message (KV2-FC-251, KV2-AC-264).
    Never quotes a value: only key paths and reasons reach a notice or an error."""
    out = copy.deepcopy(dict(tree))
    _refuse(out)
    found = _Found()
    metrics_listener(out, found.changes, found.ignored)
    _drop_ignored_settings(out, found)
    _canonical_method(out)
    _canonical_sinks(out)
    templates = out.get("template")
    for index, item in enumerate(templates if isinstance(templates, list) else ()):
        if not isinstance(item, dict):
            continue  # config_build reports the bad entry with its position
        _normalize_template(item, f"template[{index}]", found)
    # Process-supervisor mode (KV2-INV-472): env templates get the agent's defaults too.
    # config.supervise (and signal) load only for a config that has them (KV2-NFR-520).
    if "env_template" in out or "exec" in out:
        _supervisor_defaults(out, found)
    return AgentTree(out, _notices(path, reason, found), tuple(found.changes))


def _supervisor_defaults(out: dict[str, Any], found: _Found) -> None:
    from kv2render.config.supervise import agent_defaults

    for where in agent_defaults(out):
        found.lenient.append(where)
        found.changes.append((f"{where}.error_on_missing_key", "false, Vault Agent's default"))


class _Found:
    """What :func:`normalize` changed, gathered for the notices and convert-config. A plain
    class: a dataclass costs ~0.3 ms to create at import (KV2-NFR-520)."""

    __slots__ = ("changes", "ignored", "no_perms", "lenient")

    def __init__(self) -> None:
        self.changes: list[tuple[str, str]] = []
        self.ignored: list[str] = []  # one clause of the warning each
        self.no_perms: list[str] = []  # templates now written 0600
        self.lenient: list[str] = []  # templates with missingkey=zero

    def drop(self, where: str, why: str, clause: str) -> None:
        self.ignored.append(clause)
        self.changes.append((where, f"dropped: {why}"))


def _drop_ignored_settings(out: dict[str, Any], found: _Found) -> None:
    for key, why in _IGNORED_TOP.items():
        if key in out:
            del out[key]
            found.drop(key, why, f"ignoring the agent '{key}' stanza ({why})")
    template_config = out.get("template_config")
    if isinstance(template_config, dict):
        for key, why in _IGNORED_TEMPLATE_CONFIG.items():
            if key in template_config:
                del template_config[key]
                where = f"template_config.{key}"
                found.drop(where, why, f"ignoring '{where}' ({why})")


def _normalize_template(item: dict[str, Any], where: str, found: _Found) -> None:
    for key, why in _IGNORED_TEMPLATE.items():
        if key in item:
            del item[key]
            found.drop(f"{where}.{key}", why, f"ignoring '{where}.{key}' ({why})")
    _exec_block(item, where)
    _agent_command(item)
    denylist_alias(item)
    if _agent_perms(item):
        found.no_perms.append(where)
        item["perms"] = "0600"  # stated, so convert-config's YAML shows the mode
        found.changes.append(
            (f"{where}.perms", "not set: kv2render writes 0600 where Vault Agent writes 0644")
        )
    if "error_on_missing_key" not in item:
        # Vault Agent's default (missingkey=zero): templates render as before (KV2-AC-266).
        item["error_on_missing_key"] = False
        found.lenient.append(where)
        found.changes.append(
            (f"{where}.error_on_missing_key", "false, Vault Agent's default; true is safer")
        )
    # KV2-INV-251: every template of an agent config is a consul-template template.
    item.setdefault("syntax", "consul-template")
    # consul-template's Finalize default (vault-agent.md §1.7); kv2render's is false.
    item.setdefault("create_dest_dirs", True)


def _notices(path: Path, reason: str | None, found: _Found) -> tuple[Notice, ...]:
    notices = [Notice(logging.INFO, f"{path}: read as a Vault Agent config ({reason or 'agent'})")]
    if found.ignored:
        notices.append(
            Notice(
                logging.WARNING,
                f"{path}: "
                + "; ".join(found.ignored)
                + ". None of these changes what is rendered.",
            )
        )
    if found.no_perms:
        # KV2-INV-253, KV2-AC-265: the one deliberate departure, said once with its reason.
        notices.append(
            Notice(
                logging.INFO,
                f"{_places(found.no_perms)}: no perms set; writing 0600, not Vault Agent's "
                "0644: rendered files hold secrets, so kv2render keeps them owner-only by "
                "default; set perms to choose another mode",
            )
        )
    if found.lenient:
        notices.append(
            Notice(
                logging.WARNING,
                f"{_places(found.lenient)}: error_on_missing_key is false (Vault Agent's "
                "default): a missing key is written as '<no value>' instead of failing; "
                "set error_on_missing_key = true",
            )
        )
    return tuple(notices)


def _places(where: list[str]) -> str:
    """The templates a notice is about, short: a config of a hundred templates gets one
    readable line, not a hundred names (KV2-INV-521)."""
    if len(where) <= _PLACES_SHOWN:
        return ", ".join(where)
    return f"{where[0]}, {where[1]}, ..., {where[-1]} ({len(where)} in all)"


_PLACES_SHOWN = 4


def _refuse(tree: dict[str, Any]) -> None:
    found = [key for key in _REFUSED if key in tree]
    if found:
        raise ConfigError(
            "not supported by kv2render",
            where=", ".join(found),
            hint="; ".join(f"{key}: {_REFUSED[key]}" for key in found),
        )


def _canonical_method(tree: dict[str, Any]) -> None:
    """``method "approle" { ... }`` (``{"approle": {...}}``) as ``{type: approle, ...}``."""
    auto_auth = tree.get("auto_auth")
    method = auto_auth.get("method") if isinstance(auto_auth, dict) else None
    if isinstance(method, dict) and "type" not in method and len(method) == 1:
        ((label, body),) = method.items()
        if isinstance(body, Mapping):
            auto_auth["method"] = {"type": label, **body}  # type: ignore[index]


def _exec_block(item: dict[str, Any], where: str) -> None:
    """``exec { command, timeout }`` -> ``command`` + ``command_timeout`` (Vault >= 1.14)."""
    if "exec" not in item:
        return
    raw = _first(item.pop("exec"))
    sec = Section(raw, f"{where}.exec", ("command", "timeout"))
    if not sec.has("command"):
        raise ConfigError("is required", where=sec.at("command"))
    for key in ("command", "command_timeout"):
        if key in item:
            raise ConfigError(
                f"is set twice: as {where}.{key} and in {where}.exec",
                where=f"{where}.{key}",
                hint="keep exec (the current agent form) and remove the old key",
            )
    item["command"] = sec.get("command")
    if sec.has("timeout"):
        item["command_timeout"] = sec.get("timeout")


def _agent_command(item: dict[str, Any]) -> None:
    """``command`` as consul-template decodes it (KV2-INV-492): a string is split on every
    comma, spaces kept (``StringToWeakSliceHookFunc(",")``), and a one-item list runs in
    ``/bin/sh -c``. Measured with OpenBao Agent 2.7: ``"sh,-c,echo hi"`` runs argv
    ``[sh, -c, "echo hi"]``; ``"echo hi"`` and ``["echo hi"]`` run in a shell."""
    command = item.get("command")
    if isinstance(command, str) and "," in command:
        item["command"] = command.split(",")
    elif isinstance(command, list) and len(command) == 1 and isinstance(command[0], str):
        item["command"] = command[0]


def _canonical_sinks(tree: dict[str, Any]) -> None:
    """``sink "file" { config { ... } }`` as ``{type: file, config: {...}}`` (convert-config
    prints that). A sink's ``mode`` is the integer's value, as the agent reads it: the HCL
    reader gives ``0640`` as 0o640 and ``420`` as 0o644 (KV2-INV-495)."""
    auto_auth = tree.get("auto_auth")
    sinks = auto_auth.get("sink") if isinstance(auto_auth, dict) else None
    if not isinstance(sinks, list):
        return  # one mapping or a bad value: config/sink.py reads or reports it
    for index, sink in enumerate(sinks):
        if isinstance(sink, dict) and "type" not in sink and len(sink) == 1:
            ((label, body),) = sink.items()
            body = _first(body)
            if isinstance(body, dict):
                sinks[index] = sink = {"type": label, **body}
        if isinstance(sink, dict) and "config" in sink:
            sink["config"] = config = _first(sink["config"])
            if isinstance(config, dict) and "mode" in config:
                config["mode"] = _octal_text(config["mode"])


def _octal_text(mode: Any) -> Any:
    """An integer mode as the octal string it means (``420`` -> ``"0644"``), so that
    convert-config's YAML shows it as one; a mode with setuid/setgid/sticky bits or another
    value is left for config/values.as_perms to refuse with its reason."""
    if type(mode) is int and 0 <= mode <= 0o777:
        return f"0{mode:03o}"
    return mode


def _agent_perms(item: dict[str, Any]) -> bool:
    """Rewrite ``perms`` as the agent reads it; True when no mode was given (0600 then).

    An integer is its value in HCL as in JSON (KV2-INV-495: the HCL reader follows Go's base
    0, so ``perms = 0640`` arrives as 0o640 and ``perms = 420`` as 0o644); a string is octal
    (consul-template's StringToFileModeFunc), config/values.as_perms reads both."""
    perms = item.get("perms")
    if perms is None or (isinstance(perms, str) and perms.strip().strip("0") == ""):
        # Unset, or the agent's 0 ("keep the existing mode, else 0644"): 0600 here.
        item.pop("perms", None)
        return True
    if perms == 0 and not isinstance(perms, bool):
        item.pop("perms")
        return True
    item["perms"] = _octal_text(perms)
    return False


# --------------------------------------------------------------------------------------------
# convert-config


def convert_config(path: str | os.PathLike[str]) -> str:
    """``kv2render convert-config AGENT``: the equivalent kv2render YAML, changes as comments.

    The YAML loads to the same templates as the agent file (KV2-AC-268); relative paths keep
    resolving against the config's directory, so the YAML belongs next to the agent file."""
    from kv2render.config.build import build
    from kv2render.config.sources import (
        apply_env,
        load_tree,
        refuse_inline_credentials,
        unwrap_blocks,
    )

    config_path = Path(os.path.abspath(path))
    raw = load_tree(config_path)
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"the top level must be a mapping, got {kind_of(raw)}", where=str(config_path)
        )
    if config_path.suffix.lower() not in (".hcl", ".json"):
        raise ConfigError(
            "is not a Vault Agent config",
            where=str(config_path),
            hint="convert-config reads Vault Agent HCL or JSON; this file already is kv2render's",
        )
    reason = agent_reason(config_path, raw) or "given to convert-config"
    converted = normalize(unwrap_blocks(raw), config_path, reason=reason)
    refuse_inline_credentials(converted.tree, "")
    # Validate as `check` would (the environment may supply vault.address), so a config
    # kv2render cannot run is reported now rather than after it was saved.
    trial = copy.deepcopy(converted.tree)
    apply_env(trial, os.environ)
    build(trial, config_path, config_path.parent, os.environ, False)
    return _to_yaml(converted, config_path)


@functools.cache
def _dumper() -> type[yaml.SafeDumper]:
    """Multi-line strings (template bodies) as literal blocks, readable and byte-exact.
    Built on first use: only convert-config writes YAML (KV2-NFR-238)."""
    import yaml

    def represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    class _Dumper(yaml.SafeDumper):
        pass

    _Dumper.add_representer(str, represent_str)
    return _Dumper


def _dump(value: Any) -> str:
    import yaml

    return yaml.dump(
        value, Dumper=_dumper(), sort_keys=False, default_flow_style=False, allow_unicode=True
    )


def _to_yaml(converted: AgentTree, path: Path) -> str:
    lines = [
        f"# kv2render config converted from {path.name} by `kv2render convert-config`.",
        f"# Relative paths resolve against this file's directory: save it next to {path.name}.",
    ]
    if converted.changes:
        lines.append("# Changed or dropped on the way (docs/migrating-from-vault-agent.md):")
        lines.extend(f"#   {key}: {what}" for key, what in converted.changes)
    for key, value in converted.tree.items():
        if key == "template" and isinstance(value, list):
            lines.append("template:")
            for index, item in enumerate(value):
                prefix = f"template[{index}]."
                for where, what in converted.changes:
                    if where.startswith(prefix):
                        lines.append(f"  # {where.removeprefix(prefix)}: {what}")
                lines.extend("  " + line for line in _dump([item]).splitlines())
        else:
            lines.extend(_dump({key: value}).splitlines())
    return "\n".join(lines) + "\n"
