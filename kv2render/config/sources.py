"""Config sources: the file as a plain tree, then the tree rewritten by the environment and
the CLI overrides, then scanned for inline credentials (see ``config.load`` for the order).

Split out of ``config.py``. The environment is read here, once, from the mapping ``load``
passes in; nothing after ``load`` reads ``os.environ`` (STYLE.md convention 2).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kv2render.config.values import as_address, as_int, join_key, show
from kv2render.errors import ConfigError, InlineCredentialError
from kv2render.redact import scrub_quoted

if TYPE_CHECKING:
    import yaml

# One logger name for the whole config stage, whichever module of it speaks.
log = logging.getLogger("kv2render.config")

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


def load_tree(path: Path) -> Any:
    """The file as plain dicts/lists; the seam where each format plugs in."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read the config file: {reason}", where=str(path)) from None
    suffix = path.suffix.lower()
    if suffix == ".json":
        tree = _load_json(text, path)
    elif suffix == ".hcl":
        tree = _load_hcl(text, path)
    else:
        tree = _load_yaml(text, path)  # .yaml, .yml, anything else (YAML is a JSON superset)
    _refuse_expansion(tree, path)
    return tree


# A real config has hundreds or thousands of values; YAML aliases can make a small file
# expand into billions when walked as a tree ("billion laughs"), so walks are bounded.
_MAX_VALUES = 1_000_000


_MAX_DEPTH = 100  # a real config nests five or six levels


def _refuse_expansion(tree: Any, path: Path) -> None:
    """Refuse a tree too large or too deep to walk: the later stages recurse over it."""
    seen = 0
    stack: list[tuple[Any, int]] = [(tree, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_DEPTH:
            raise _too_deep(path)
        seen += 1
        if seen > _MAX_VALUES:
            raise ConfigError(
                f"the config expands to more than {_MAX_VALUES:,} values",
                where=str(path),
                hint="YAML anchors and aliases that refer to each other multiply; "
                "write the values out",
            )
        if isinstance(item, Mapping):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _too_deep(path: Path) -> ConfigError:
    return ConfigError(
        "the config is nested too deeply to read", where=str(path), hint="flatten it"
    )


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
    except RecursionError:
        raise _too_deep(path) from None


class _ComplexKey(Exception):
    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


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


@functools.cache
def _strict_loader() -> type[yaml.SafeLoader]:
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one).

    Built on first use: PyYAML costs an HCL or JSON config's start-up ~10 ms for nothing
    (KV2-NFR-238). libyaml's parser when PyYAML was built with it: the pure-Python one takes
    ~0.5 s on a thousand-template config (benchmarks/run.py); the safe constructors are the
    same."""
    import yaml

    base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class _StrictLoader(base):  # type: ignore[valid-type,misc]
        pass

    _StrictLoader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
    )
    return _StrictLoader


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    import yaml

    seen: set[Any] = set()
    for key_node, _ in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            # '? [1]' or '? {a: 1}': a list or map as a key (unhashable; never a config key).
            raise _ComplexKey(key_node.start_mark.line + 1)
        key = loader.construct_object(key_node)
        if isinstance(key, str) and key in seen:
            raise _DuplicateKey(key, key_node.start_mark.line + 1)
        seen.add(key)
    return loader.construct_mapping(node)


def _load_yaml(text: str, path: Path) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_strict_loader())  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"duplicate key '{exc.key}'", where=f"{path}:{exc.line}") from None
    except _ComplexKey as exc:
        raise ConfigError(
            "a mapping key must be a plain string, not a list or a map", where=f"{path}:{exc.line}"
        ) from None
    except RecursionError:
        raise _too_deep(path) from None
    except yaml.YAMLError as exc:
        # str(exc) quotes the offending source line, which could hold a secret: use the
        # position and the parser's complaint only.
        mark = getattr(exc, "problem_mark", None)
        # The complaint itself quotes tokens ("found undefined alias '<token>'"): hide them.
        problem = scrub_quoted(getattr(exc, "problem", None) or "syntax error", "")
        if mark is None:
            raise ConfigError(f"invalid YAML: {problem}", where=str(path)) from None
        raise ConfigError(
            f"invalid YAML (column {mark.column + 1}): {problem}", where=f"{path}:{mark.line + 1}"
        ) from None


def _load_hcl(text: str, path: Path) -> Any:
    """Vault Agent HCL, in the same tree shape as its JSON form (blocks are lists).
    agentconfig then decides what each agent stanza becomes (KV2-FC-251). kv2render's own
    parser (kv2render/config/hcl.py, KV2-NFR-237): python-hcl2's lark grammar cost more start-up
    time than the rest of an HCL ``--once``."""
    from kv2render.config import hcl  # lazy: YAML and JSON users never import it

    try:
        return hcl.loads(text)
    except hcl.HclError as exc:
        # The message and hint carry positions and fixed words only, never the text.
        raise ConfigError(
            f"invalid HCL (column {exc.column}): {exc.message}",
            where=f"{path}:{exc.line}",
            hint=exc.hint,
        ) from None
    except RecursionError:  # not reachable: hcl.MAX_DEPTH bounds the recursion
        raise _too_deep(path) from None


# --------------------------------------------------------------------------------------------
# Tree rewriting: block shapes, environment, overrides, credential scan


def unwrap_block(value: Any) -> Any:
    """Vault Agent's HCL/JSON shape gives singleton blocks as one-item lists."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], Mapping):
        return dict(value[0])
    return dict(value) if isinstance(value, Mapping) else value


def unwrap_blocks(tree: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(tree)
    for key in ("vault", "auto_auth", "template_config"):
        if key in out:
            out[key] = unwrap_block(out[key])
    if isinstance(out.get("vault"), dict) and "retry" in out["vault"]:
        out["vault"]["retry"] = unwrap_block(out["vault"]["retry"])
    auto_auth = out.get("auto_auth")
    if isinstance(auto_auth, dict) and "method" in auto_auth:
        auto_auth["method"] = method = unwrap_block(auto_auth["method"])
        if isinstance(method, dict) and "type" not in method and len(method) == 1:
            # The labelled form ``method "approle" { config { ... } }``: the block body sits
            # under its label, and its ``config`` block is a one-item list as anywhere else.
            ((label, body),) = method.items()
            if isinstance(body, Mapping) or (isinstance(body, list) and label != "config"):
                method[label] = method = unwrap_block(body)
        if isinstance(method, dict) and "config" in method:
            method["config"] = unwrap_block(method["config"])
    if isinstance(out.get("template"), Mapping):
        out["template"] = [out["template"]]  # one `template {}` block in HCL-as-JSON
    return out


def env_lookup(environ: Mapping[str, str], suffix: str) -> tuple[str, str] | None:
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
    raise ConfigError(f"must be true/1/yes or false/0/no, got {show(value)}", where=name)


def apply_env(tree: dict[str, Any], environ: Mapping[str, str]) -> None:
    """Write the environment over the file's ``vault`` block (env beats file)."""
    if tree.get("vault") is None:
        tree["vault"] = {}
    vault = tree["vault"]
    if not isinstance(vault, dict):
        return  # validation reports the bad block
    for suffix, key in _ENV_VAULT:
        found = env_lookup(environ, suffix)
        if found is None:
            continue
        name, value = found
        if key == "tls_skip_verify":
            vault[key] = _env_bool(name, value)
        elif key == "address":
            vault[key] = as_address(value, name)
        elif key in _ENV_PATH_KEYS:
            vault[key] = os.path.abspath(value)  # relative to the cwd, like the Vault CLI
        else:
            vault[key] = value
    found = env_lookup(environ, "MAX_RETRIES")
    if found is not None:
        # VAULT_MAX_RETRIES is the API client's literal count (0 = no retries); the config
        # key uses consul-template's encoding (0 = default 12, -1 = none).
        count = as_int(found[1], found[0], minimum=0)
        retry = vault.setdefault("retry", {})
        if isinstance(retry, dict):
            retry["num_retries"] = count if count > 0 else -1


def apply_overrides(tree: dict[str, Any], overrides: Mapping[str, Any]) -> None:
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
            path = join_key(where, str(key))
            yield path, str(key)
            yield from _walk(value, path)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{where}[{i}]")


def refuse_inline_credentials(tree: Any, where: str) -> None:
    """KV2 spec decision 2: credentials live in files or the environment, never in config.
    Runs before validation so no later error message can quote the value."""
    for path, key in _walk(tree, where):
        hint = _CREDENTIAL_KEYS.get(key.lower())
        if hint is not None:
            raise InlineCredentialError(
                "inline credentials are refused", where=path, hint=f"use {hint}"
            )
