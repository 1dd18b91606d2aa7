"""Config validation: the rewritten tree, checked in one strict pass, frozen into the
dataclasses of ``config.py`` (KV2-INV-030). Split out of ``config.py``; imported lazily by
``config.load`` so that the dataclasses module stays free of import cycles.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar, cast

from kv2render import refs
from kv2render.config import (
    Config,
    MetricsSettings,
    TemplateConfig,
    TemplateSpec,
    VaultSettings,
)
from kv2render.config import optional as optional_blocks
from kv2render.config.auth import AuthSettings, TokenEnvSettings
from kv2render.config.sources import env_lookup
from kv2render.config.values import (
    Section,
    as_address,
    as_bool,
    as_command,
    as_int,
    as_owner,
    as_path,
    as_perms,
    as_str,
    as_text,
    function_denylist,
    kind_of,
    parse_duration,
    show,
)
from kv2render.errors import ConfigError, flatten, raise_all
from kv2render.refs import SecretRef

# One logger name for the whole config stage, whichever module of it speaks.
log = logging.getLogger("kv2render.config")

_TOP_KEYS = (
    "vault",
    "auto_auth",
    "template_config",
    "template",
    "status_file",
    "pid_file",
    "exit_after_auth",
    "once_timeout",
    "metrics",
    "env_template",
    "exec",
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
_TEMPLATE_CONFIG_KEYS = (
    "static_secret_render_interval",
    "exit_on_retry_failure",
    "max_output_bytes",
    "concurrency",
    "render_timeout",
    "change_detection",
)
CHANGE_DETECTION = ("auto", "read")  # template_config.change_detection (KV2-FC-500)
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
    "whole_secret",
    "function_denylist",
)
# Keys that make sense for a Jinja2/consul-template body but not for a raw `ref:` output.
_TEMPLATE_ONLY_KEYS = ("syntax", "left_delimiter", "right_delimiter", "error_on_missing_key")

_T = TypeVar("_T")

_DEFAULT_RETRIES = 12  # consul-template DefaultRetryAttempts


def build(
    tree: Mapping[str, Any],
    config_path: Path | None,
    base: Path,
    environ: Mapping[str, str],
    require_credentials: bool,
) -> Config:
    checked = build_checked(tree, config_path, base, environ, require_credentials)
    raise_all(checked.problems)
    assert checked.config is not None  # no problem: every part was built
    return checked.config


class Checked(NamedTuple):
    """What one validation pass found: the Config when there is no problem, else every
    problem (KV2-INV-398), and the template entries that are valid on their own (``check``
    compiles those too, so that their syntax errors are reported in the same run). A
    NamedTuple: immutable, and a sixth of a frozen dataclass's import cost (KV2-NFR-520)."""

    config: Config | None
    problems: tuple[ConfigError, ...]
    templates: tuple[TemplateSpec, ...]


def build_checked(
    tree: Mapping[str, Any],
    config_path: Path | None,
    base: Path,
    environ: Mapping[str, str],
    require_credentials: bool,
) -> Checked:
    """One strict pass over the whole tree that keeps going after a problem.

    Each block is built on its own; a problem in one is recorded and the next block is
    still checked. What is valid does not change: any problem means no Config.
    """
    problems: list[ConfigError] = []

    def attempt(make: Callable[[], _T]) -> _T | None:
        try:
            return make()
        except ConfigError as exc:
            problems.append(exc)
            return None

    top = _top_section(tree, problems)
    vault = attempt(lambda: _vault_settings(top.section("vault", _VAULT_KEYS), base))
    auth = attempt(lambda: _auth_settings(top, vault, base, environ, require_credentials))
    template_config = attempt(
        lambda: _template_config(top.section("template_config", _TEMPLATE_CONFIG_KEYS))
    )
    # Process-supervisor mode (KV2-INV-470): env templates replace file templates.
    supervised = top.has("env_template") or top.has("exec")
    templates = _templates(
        top,
        base,
        None if vault is None else vault.address,
        problems,
        optional=supervised
        or optional_blocks.has_sink(top),  # a sink alone is a valid agent config
    )
    supervisor = attempt(lambda: optional_blocks.supervisor(top, base, supervised))
    status_file = attempt(lambda: top.opt("status_file", as_path, base))
    pid_file = attempt(lambda: top.opt("pid_file", as_path, base))
    exit_after_auth = attempt(lambda: bool(top.opt("exit_after_auth", as_bool)))
    once_timeout = attempt(lambda: _once_timeout(top))
    metrics = attempt(lambda: _metrics(top))
    sinks = attempt(lambda: optional_blocks.sinks(top, auth, base))
    if problems or vault is None or auth is None or template_config is None or supervisor is None:
        return Checked(None, tuple(flatten(problems)), templates)
    config = Config(
        path=config_path,
        vault=vault,
        auth=auth,
        template_config=template_config,
        templates=templates,
        status_file=status_file,
        pid_file=pid_file,
        exit_after_auth=bool(exit_after_auth),
        once_timeout=Config.once_timeout if once_timeout is None else once_timeout,
        metrics=metrics,
        sinks=sinks or (),
        env_templates=supervisor[0],
        exec=supervisor[1],
    )
    return Checked(config, (), templates)


_METRICS_HINT = "write HOST:PORT, such as 127.0.0.1:9102 or [::1]:9102"


def _metrics(top: Section) -> MetricsSettings | None:
    """``metrics: {address: HOST:PORT}`` (issue 17); absent or null: no listener."""
    if "metrics" not in top.data or top.data.get("metrics") is None:
        return None
    sec = top.section("metrics", ("address",))
    if not sec.has("address"):
        return MetricsSettings()
    where = sec.at("address")
    text = as_str(sec.data["address"], where)
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"not a listen address: {show(text)}", where=where, hint=_METRICS_HINT)
    return MetricsSettings(host=host, port=int(port))


def _top_section(tree: Mapping[str, Any], problems: list[ConfigError]) -> Section:
    """The top level; a wrong top-level key is recorded and the known ones are still read."""
    try:
        return Section(tree, "", _TOP_KEYS)
    except ConfigError as exc:
        problems.append(exc)
        return Section({k: v for k, v in tree.items() if k in _TOP_KEYS}, "", _TOP_KEYS)


def _once_timeout(top: Section) -> float:
    # KV2-INV-354: 60 s by default; 0 turns the deadline off (retries bounded by count only).
    value = top.opt("once_timeout", parse_duration, allow_zero=True)
    return Config.once_timeout if value is None else float(value)


def _vault_settings(sec: Section, base: Path) -> VaultSettings:
    if not sec.has("address"):
        raise ConfigError(
            "is not set",
            where="vault.address",
            hint="set it in the config or VAULT_ADDR/BAO_ADDR",
        )
    retry = sec.section("retry", ("num_retries",))
    num_retries = _DEFAULT_RETRIES
    if retry.has("num_retries"):
        raw = as_int(retry.get("num_retries"), retry.at("num_retries"), minimum=-1)
        # Vault Agent (config.go): 0 -> the default 12, -1 -> retries disabled.
        num_retries = {0: _DEFAULT_RETRIES, -1: 0}.get(raw, raw)
    settings = VaultSettings(
        address=as_address(sec.get("address"), sec.at("address")),
        ca_cert=sec.opt("ca_cert", as_path, base),
        ca_path=sec.opt("ca_path", as_path, base),
        client_cert=sec.opt("client_cert", as_path, base),
        client_key=sec.opt("client_key", as_path, base),
        tls_server_name=sec.opt("tls_server_name", as_str),
        tls_skip_verify=bool(sec.opt("tls_skip_verify", as_bool)),
        namespace=sec.opt("namespace", as_str),
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
    top: Section,
    vault: VaultSettings | None,
    base: Path,
    environ: Mapping[str, str],
    require_credentials: bool,
) -> AuthSettings | None:
    """None only when the vault block failed and the method needs its client certificate."""
    if not top.has("auto_auth"):
        # Issue 4: with no auto_auth the token comes from the environment. With auto_auth,
        # an environment token is ignored (Vault Agent blanks the runner's token too).
        found = env_lookup(environ, "TOKEN")
        if found is None and require_credentials:
            raise ConfigError(
                "no credentials: auto_auth is not configured and no token is in the environment",
                where="auto_auth",
                hint="set VAULT_TOKEN or BAO_TOKEN, or configure auto_auth",
            )
        if found is None:
            return AuthSettings(type="token_env")
        return AuthSettings(
            type="token_env", config=TokenEnvSettings(token=found[1], variable=found[0])
        )
    auto_auth = top.section("auto_auth", ("method", "sink"))
    if not auto_auth.has("method"):
        raise ConfigError("is required", where="auto_auth.method", hint="add method: {type: ...}")
    # Imported here: a token from the environment needs none of the methods' settings.
    from kv2render.config.methods import parse_method

    # ``vault`` None: the vault block has a problem of its own, already recorded.
    client_cert = None if vault is None else (vault.client_cert, vault.client_key)
    return parse_method(auto_auth.get("method"), base, client_cert)


def _template_config(sec: Section) -> TemplateConfig:
    default = TemplateConfig()
    interval = sec.opt("static_secret_render_interval", parse_duration)
    max_bytes = sec.opt("max_output_bytes", as_int, minimum=1)
    concurrency = sec.opt("concurrency", as_int, minimum=1)
    render_timeout = sec.opt("render_timeout", parse_duration)
    detection = sec.opt("change_detection", as_str)
    if detection is not None and detection not in CHANGE_DETECTION:
        raise ConfigError(
            f"must be one of {', '.join(CHANGE_DETECTION)}, got {detection!r}",
            where=sec.at("change_detection"),
            hint="auto lists a folder's versions when the server allows it; read reads each one",
        )
    return TemplateConfig(
        static_secret_render_interval=interval or default.static_secret_render_interval,
        exit_on_retry_failure=bool(sec.opt("exit_on_retry_failure", as_bool)),
        max_output_bytes=max_bytes or default.max_output_bytes,
        concurrency=concurrency or default.concurrency,
        render_timeout=render_timeout or default.render_timeout,
        change_detection=detection or default.change_detection,
    )


def _templates(
    top: Section,
    base: Path,
    address: str | None,
    problems: list[ConfigError],
    *,
    optional: bool = False,
) -> tuple[TemplateSpec, ...]:
    """The valid template entries; each invalid one adds its problem to ``problems``."""
    raw = top.get("template")
    if optional and (raw is None or raw == []):
        return ()
    if raw is None or raw == []:
        problems.append(
            ConfigError(
                "at least one template is required",
                where="template",
                hint="add a 'template' list",
            )
        )
        return ()
    if not isinstance(raw, list):
        problems.append(
            ConfigError(f"must be a list of templates, got {kind_of(raw)}", where="template")
        )
        return ()
    specs: list[TemplateSpec] = []
    seen: dict[Path, int] = {}
    for index, item in enumerate(raw):
        try:
            spec = _template(index, item, base, address)
        except ConfigError as exc:
            problems.append(exc)
            continue
        if spec.destination in seen:
            other = seen[spec.destination]
            problems.append(
                ConfigError(
                    f"'{spec.destination}' is also the destination of template[{other}]",
                    where=f"{spec.where}.destination",
                    hint="each template needs its own destination",
                )
            )
            continue
        seen[spec.destination] = index
        specs.append(spec)
    return tuple(specs)


def _template(index: int, raw: Any, base: Path, address: str | None) -> TemplateSpec:
    sec = Section(raw, f"template[{index}]", _TEMPLATE_KEYS)
    bodies = [key for key in ("source", "contents", "ref") if sec.has(key)]
    if len(bodies) != 1:
        got = " and ".join(bodies) if bodies else "none"
        raise ConfigError(
            f"needs exactly one of source, contents or ref (got {got})", where=sec.where
        )
    if not sec.has("destination"):
        raise ConfigError("is required", where=sec.at("destination"))
    destination = as_path(sec.get("destination"), sec.at("destination"), base)
    source = sec.opt("source", as_path, base)
    if source == destination:
        raise ConfigError("must differ from source", where=sec.at("destination"))
    ref = _template_ref(sec, address)
    whole = _whole_secret(sec, ref)
    # 0600 by default; an agent config's notice about Vault Agent's 0644 is agentconfig's.
    perms = sec.opt("perms", as_perms)
    if perms is None:
        perms = 0o600
    if perms & 0o044:
        log.warning("%s.perms %04o lets group/other read %s", sec.where, perms, destination)
    return TemplateSpec(
        index=index,
        destination=destination,
        source=source,
        contents=sec.opt("contents", as_text),
        ref=ref,
        perms=perms,
        user=sec.opt("user", as_owner),
        group=sec.opt("group", as_owner),
        create_dest_dirs=bool(sec.opt("create_dest_dirs", as_bool)),
        error_on_missing_key=_missing_key_mode(sec),
        backup=bool(sec.opt("backup", as_bool)),
        command=sec.opt("command", as_command),
        command_timeout=sec.opt("command_timeout", parse_duration) or 30.0,
        syntax=(syntax := _syntax(sec, source)),
        function_denylist=function_denylist(sec, syntax),
        left_delimiter=sec.opt("left_delimiter", as_text),
        right_delimiter=sec.opt("right_delimiter", as_text),
        render_interval=sec.opt("render_interval", parse_duration),
        whole_secret=whole,
    )


def _missing_key_mode(sec: Section) -> bool:
    value = sec.opt("error_on_missing_key", as_bool)
    # kv2render configs are strict; agentconfig writes Vault Agent's default (false) into an
    # agent config's templates so they render unchanged (KV2-INV-253, KV2-AC-266).
    return True if value is None else bool(value)


def _template_ref(sec: Section, address: str | None) -> SecretRef | None:
    """``address`` None: vault.address has a problem of its own, so the reference's host
    is not compared with it (the problem is reported already)."""
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
    ref = refs.parse_ref(as_str(sec.get("ref"), where), where=where)
    if address is not None:
        refs.check_authority(ref, address, where=where)
    return ref


def _whole_secret(sec: Section, ref: SecretRef | None) -> bool:
    """KV2-INV-365: a ``ref:`` output names one key unless ``whole_secret: true`` says so.

    A ref without ``#key`` used to write every key of the secret (username, password,
    host) as JSON into what the config calls a password file, and ``check`` passed it.
    """
    whole = sec.opt("whole_secret", as_bool)
    if whole is not None and ref is None:
        raise ConfigError(
            "applies to ref: templates only",
            where=sec.at("whole_secret"),
            hint="a source/contents template chooses what it prints itself",
        )
    if ref is None:
        return False
    selects = ref.key is not None or ref.pointer is not None
    if whole and selects:
        raise ConfigError(
            "whole_secret: true writes every key, but the ref selects one with '#'",
            where=sec.at("whole_secret"),
            hint="remove the #key from the ref, or remove whole_secret",
        )
    if not whole and not selects:
        # Offline, the secret's keys are unknown: show the form with the usual key.
        example = refs.format_ref(dataclasses.replace(ref, key="password"))
        raise ConfigError(
            "names no key, so the whole secret (every key, as JSON) would be written; "
            f"name the key to write, e.g. {example}",
            where=sec.at("ref"),
            hint="or set whole_secret: true on this template to write the whole secret",
        )
    return bool(whole)


def _syntax(sec: Section, source: Path | None) -> Literal["jinja2", "consul-template"]:
    if not sec.has("syntax"):
        # KV2-INV-251: Vault Agent templates conventionally end in .ctmpl; an agent config's
        # templates were given syntax: consul-template by agentconfig already.
        ctmpl = source is not None and source.suffix == ".ctmpl"
        return "consul-template" if ctmpl else "jinja2"
    value = as_str(sec.get("syntax"), sec.at("syntax"))
    if value not in ("jinja2", "consul-template"):
        raise ConfigError(
            f"must be 'jinja2' or 'consul-template', got {show(value)}", where=sec.at("syntax")
        )
    return cast(Literal["jinja2", "consul-template"], value)


def _close_matches(word: str, possibilities: Any, n: int = 3, cutoff: float = 0.6) -> list[str]:
    """difflib's suggestions, imported only when a key or value is wrong."""
    import difflib

    return difflib.get_close_matches(word, possibilities, n=n, cutoff=cutoff)
