"""Config value parsers: ``parse(value, where, ...) -> typed value``, or a ConfigError naming
``where`` and the fix (STYLE.md convention 3), plus :class:`Section`, one mapping of the tree
whose keys are checked on entry (strict keys, KV2-INV-030).

Split out of ``config.py``; nothing here reads files or the environment.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kv2render.errors import ConfigError, InlineCredentialError, raise_all

log = logging.getLogger("kv2render.config")

# Vault Agent keys a user may bring along that kv2render does not implement: say why.
UNSUPPORTED = {
    "sink": "a token sink belongs in auto_auth: auto_auth.sink (type file, config.path)",
    "cache": "kv2render has no cache/proxy; remove it",
    "listener": "write 'metrics: {address: 127.0.0.1:9102}' for the metrics/health listener",
    "api_proxy": "kv2render has no API proxy; remove it",
    "telemetry": "metrics are Prometheus, served when 'metrics:' is set; remove it",
    # In a template: the agent's exec {command, timeout} is command/command_timeout here.
    "exec": "in a template, use command and command_timeout; a top-level exec block runs "
    "a supervised program (process-supervisor mode)",
    "wrap_ttl": "response-wrapped tokens are not supported",
    "wait": "quiescence timers are not supported yet",
    "sandbox_path": "consul-template's file function is not supported",
}


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_HINT = "write a duration such as 30s, 5m, 1h30m or 250ms, or whole seconds"


def parse_duration(value: Any, where: str, *, allow_zero: bool = False) -> float:
    """Seconds from ``30s``, ``5m``, ``1h30m``, ``250ms`` or a bare integer (Vault Agent's
    ParseDurationSecond accepts integers as seconds). Raises ConfigError naming ``where``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(
            f"must be a duration, got {kind_of(value)}", where=where, hint=_DURATION_HINT
        )
    if isinstance(value, int):
        seconds = float(value)
    elif value.strip().isdigit():
        seconds = float(int(value.strip()))
    else:
        text = value.strip()
        parts = list(_DURATION_PART.finditer(text))
        if not parts or "".join(m.group(0) for m in parts) != text:
            raise ConfigError(f"not a duration: {show(value)}", where=where, hint=_DURATION_HINT)
        seconds = sum(float(m.group(1)) * _DURATION_UNITS[m.group(2)] for m in parts)
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(f"must be greater than zero, got {show(value)}", where=where)
    return seconds


class Section:
    """One mapping of the tree, its key path, and its allowed keys (checked on entry)."""

    def __init__(self, data: Any, where: str, allowed: tuple[str, ...]) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"must be a mapping, got {kind_of(data)}",
                where=where or "config",
                hint="a block may also be a list holding exactly one mapping",
            )
        problems: list[ConfigError] = []
        for key in data:
            if not isinstance(key, str):
                problems.append(
                    ConfigError(
                        f"keys must be strings, got {kind_of(key)}", where=where or "config"
                    )
                )
            elif key not in allowed:
                problems.append(unknown_key(join_key(where, key), key, allowed))
        # Every wrong key of the block, not only the first (KV2-INV-398).
        raise_all(problems)
        self.data: Mapping[str, Any] = data
        self.where = where

    def at(self, key: str) -> str:
        return join_key(self.where, key)

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def section(self, key: str, allowed: tuple[str, ...]) -> Section:
        value = self.data.get(key)
        return Section({} if value is None else value, self.at(key), allowed)

    def opt(self, key: str, parse: Any, *args: Any, **kwargs: Any) -> Any:
        """``parse(value, where, ...)`` when the key is set, else None."""
        value = self.data.get(key)
        return None if value is None else parse(value, self.at(key), *args, **kwargs)


def unknown_key(where: str, key: str, allowed: tuple[str, ...]) -> ConfigError:
    if key in UNSUPPORTED:
        return ConfigError("not supported by kv2render", where=where, hint=UNSUPPORTED[key])
    close = _close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(allowed)}"
    return ConfigError("unknown key", where=where, hint=hint)


def as_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, got {kind_of(value)}", where=where)
    if not value.strip():
        raise ConfigError("must not be empty", where=where)
    return value.strip()


def as_text(value: Any, where: str) -> str:
    """A non-empty string kept exactly as written (template bodies keep their whitespace)."""
    if not isinstance(value, str):
        raise ConfigError(f"must be a string, got {kind_of(value)}", where=where)
    if not value:
        raise ConfigError("must not be empty", where=where)
    return value


def as_bool(value: Any, where: str) -> bool:
    # YAML booleans, plus Vault-style "true"/"false" strings (HCL and env-derived values).
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ConfigError(f"must be true or false, got {show(value)}", where=where)


def as_int(value: Any, where: str, *, minimum: int | None = None) -> int:
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        number = int(value)
    if number is None:
        raise ConfigError(f"must be an integer, got {show(value)}", where=where)
    if minimum is not None and number < minimum:
        raise ConfigError(f"must be at least {minimum}, got {number}", where=where)
    return number


def as_path(value: Any, where: str, base: Path) -> Path:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = as_str(value, where)
    if "\0" in text:
        raise ConfigError("must not contain a NUL byte", where=where)
    if text.startswith("~"):
        raise ConfigError(
            f"'~' is not expanded, got {show(text)}", where=where, hint="write the full path"
        )
    return Path(os.path.normpath(base / text))  # an absolute `text` replaces `base`


def as_address(value: Any, where: str) -> str:
    text = as_str(value, where)
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
        raise ConfigError(f"must be http(s)://host[:port][/prefix], got {show(text)}", where=where)
    if parts.query or parts.fragment:
        raise ConfigError("must not carry a query or a fragment", where=where)
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1"):
        raise ConfigError(
            f"must not end in /v1, got {show(text)}",
            where=where,
            hint="kv2render adds /v1 itself; give the base address",
        )
    return f"{parts.scheme.lower()}://{parts.netloc}{prefix}"


def as_perms(value: Any, where: str) -> int:
    hint = "write an octal string such as '0640' (or YAML 0640 / 0o640)"
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and re.fullmatch(r"(0[oO])?[0-7]{1,4}", value.strip()):
        mode = int(value.strip().lower().removeprefix("0o"), 8)
    else:
        raise ConfigError(f"must be an octal file mode, got {show(value)}", where=where, hint=hint)
    if not 0 <= mode <= 0o7777:
        raise ConfigError(f"is not a file mode: {show(value)}", where=where, hint=hint)
    if mode & 0o7000:
        # Also catches `perms: 640` (decimal 640 = 0o1200), the usual unquoted mistake.
        if isinstance(value, int):
            hint = (
                f"the number {value} is decimal (= 0o{mode:o}); for an octal mode write it "
                "with a leading zero in HCL (0640), or as a string ('0640')"
            )
        raise ConfigError(
            f"sets setuid/setgid/sticky bits ({mode:04o}), refused on rendered files",
            where=where,
            hint=hint,
        )
    return mode


def denylist_alias(item: dict[str, Any]) -> None:
    """In an agent template: ``function_blacklist``, consul-template's old name, joins
    ``function_denylist`` (KV2-INV-496); another shape is left for function_denylist() to
    report (the key is unknown to kv2render's own vocabulary)."""
    if "function_blacklist" not in item:
        return
    old, new = item["function_blacklist"], item.get("function_denylist")
    if new is None:
        item["function_denylist"] = item.pop("function_blacklist")
    elif isinstance(old, list) and isinstance(new, list):
        item["function_denylist"] = [*new, *old]
        del item["function_blacklist"]


def function_denylist(sec: Section, syntax: str) -> tuple[str, ...]:
    """A template's ``function_denylist``: consul-template function names, each one an error
    when the template calls it (KV2-INV-496). A string is split on commas, as the agent's
    decoder does. Names are exact: consul-template matches no globs."""
    if not sec.has("function_denylist"):
        return ()
    where = sec.at("function_denylist")
    value = sec.get("function_denylist")
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise ConfigError(
            f"must be a list of function names, got {kind_of(value)}",
            where=where,
            hint='e.g. function_denylist = ["env", "mustEnv"]',
        )
    if syntax != "consul-template":
        # KV2-FC-495: Jinja2 templates have no consul-template functions to deny.
        raise ConfigError(
            "applies to consul-template templates only",
            where=where,
            hint="set syntax: consul-template, or remove the key: a Jinja2 template calls "
            "only kv2(), secret(), range() and filters, none reads the environment or files",
        )
    names = tuple(dict.fromkeys(item for item in items if item))
    globs = [name for name in names if re.search(r"[*?\[]", name)]
    if globs:
        # Measured: OpenBao Agent 2.7.2 denies nothing for "*", "en*" or "e?v"; neither
        # does kv2render, but the operator most likely meant a pattern.
        log.warning(
            "%s: %s deny nothing: names are exact, OpenBao Agent matches no globs either; "
            "list each function",
            where,
            ", ".join(repr(g) for g in globs),
        )
    return names


def as_owner(value: Any, where: str) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"must be a name or an id >= 0, got {value}", where=where)
        return value
    text = as_str(value, where)
    return int(text) if text.isdigit() else text


def as_command(value: Any, where: str) -> tuple[str, ...] | str:
    if isinstance(value, str):
        return as_str(value, where)  # run by /bin/sh -c
    if isinstance(value, list) and value:
        for i, arg in enumerate(value):
            if not isinstance(arg, str):
                raise ConfigError(f"must be a string, got {kind_of(arg)}", where=f"{where}[{i}]")
        if not value[0].strip():
            raise ConfigError("must name a program", where=f"{where}[0]")
        return tuple(value)
    raise ConfigError(f"must be an argv list or a shell string, got {show(value)}", where=where)


# --------------------------------------------------------------------------------------------
# Small helpers


def join_key(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def kind_of(value: Any) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    if isinstance(value, Mapping):
        return "a mapping"
    return "nothing" if value is None else f"a {type(value).__name__}"


def show(value: Any) -> str:
    """A short repr for messages; only used on values that are not credentials."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _close_matches(word: str, possibilities: Any, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """difflib's suggestions, imported only when a key or value is wrong."""
    import difflib

    return difflib.get_close_matches(word, possibilities, n=n, cutoff=cutoff)
