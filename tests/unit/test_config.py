"""kv2render.config: Vault Agent vocabulary, strict keys, inline-credential refusal,
environment fallbacks and precedence, durations, perms, paths."""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from kv2render import config as cfg
from kv2render.config import Config, load, parse_duration
from kv2render.config.auth import TokenEnvSettings, config_keys
from kv2render.config.logins import AppRoleSettings
from kv2render.errors import ConfigError, InlineCredentialError, ReferenceSyntaxError

ADDR = "https://vault.example:8200"
TOKEN_ENV = {"VAULT_TOKEN": "test-token"}
SENTINEL = "S3NT1NEL-c0nf1g-9f8e7d6c5b4a"


def tree(**extra: Any) -> dict[str, Any]:
    """A minimal valid config tree; keyword arguments replace top-level keys."""
    base: dict[str, Any] = {
        "vault": {"address": ADDR},
        "template": [{"contents": "hello\n", "destination": "out.txt"}],
    }
    base.update(extra)
    return base


def write(directory: Path, data: Any, name: str = "kv2render.yaml") -> Path:
    path = directory / name
    if isinstance(data, str):
        path.write_text(data)
    elif name.endswith(".json"):
        path.write_text(json.dumps(data))
    else:
        path.write_text(yaml.safe_dump(data))
    return path


def load_tree(
    directory: Path,
    data: Any,
    *,
    env: Mapping[str, str] | None = None,
    name: str = "kv2render.yaml",
    **kwargs: Any,
) -> Config:
    return load(write(directory, data, name), env=TOKEN_ENV if env is None else env, **kwargs)


def load_error(
    directory: Path,
    data: Any,
    *,
    env: Mapping[str, str] | None = None,
    name: str = "kv2render.yaml",
    cls: type[ConfigError] = ConfigError,
    **kwargs: Any,
) -> ConfigError:
    with pytest.raises(cls) as info:
        load_tree(directory, data, env=env, name=name, **kwargs)
    assert info.value.exit_code == 2
    return info.value


def approle(**config: Any) -> dict[str, Any]:
    return {"method": {"type": "approle", "config": {"role_id_file_path": "/r", **config}}}


# --------------------------------------------------------------------------------------------
# Formats and defaults


def test_minimal_yaml_config_has_the_documented_defaults(workdir: Path) -> None:
    """KV2-INV-030, KV2-INV-034, KV2-INV-092, KV2-AC-040: defaults after one load."""
    config = load_tree(workdir, tree())
    assert config.path == workdir / "kv2render.yaml"
    assert config.vault == cfg.VaultSettings(address=ADDR)
    assert config.vault.num_retries == 12 and config.vault.timeout == 30.0
    assert config.vault.tls_skip_verify is False
    assert config.template_config == cfg.TemplateConfig()
    assert config.template_config.static_secret_render_interval == 300.0
    (spec,) = config.templates
    assert spec.index == 0 and spec.where == "template[0]"
    assert spec.destination == workdir / "out.txt"
    assert spec.contents == "hello\n"  # whitespace kept exactly
    assert spec.perms == 0o600  # kv2render's default, not Vault Agent's 0644
    assert spec.error_on_missing_key is True
    assert spec.create_dest_dirs is False and spec.backup is False
    assert spec.syntax == "jinja2" and spec.command is None and spec.command_timeout == 30.0
    assert config.status_file is None and config.pid_file is None
    assert config.exit_after_auth is False


def test_json_config_is_equivalent_to_yaml(workdir: Path) -> None:
    """KV2-AC-030: equivalent YAML and JSON configs load to equal Config objects."""
    data = tree(auto_auth=approle(), exit_after_auth=True)
    from_yaml = load_tree(workdir, data)
    from_json = load_tree(workdir, data, name="kv2render.json")
    assert dataclasses.replace(from_json, path=None) == dataclasses.replace(from_yaml, path=None)


def test_unknown_extension_is_read_as_yaml(workdir: Path) -> None:
    """KV2-INV-030: any other extension is read as YAML (a JSON superset)."""
    config = load_tree(workdir, tree(), name="kv2render.conf")
    assert config.vault.address == ADDR


def test_top_level_must_be_a_mapping(workdir: Path) -> None:
    """KV2-FC-032: wrong type at the top level."""
    err = load_error(workdir, "- a\n- b\n")
    assert str(err) == f"{workdir / 'kv2render.yaml'}: the top level must be a mapping, got a list"


def test_invalid_yaml_gives_position_and_never_the_line_text(workdir: Path) -> None:
    """KV2-FC-035, KV2-INV-001: file:line, and never the offending line's text."""
    text = f"vault:\n  address: {ADDR}\n  bad: [{SENTINEL}\n"
    err = load_error(workdir, text)
    assert err.where == f"{workdir / 'kv2render.yaml'}:4" and "invalid YAML (column" in str(err)
    assert SENTINEL not in str(err) and SENTINEL not in repr(err)


def test_invalid_json_gives_position(workdir: Path) -> None:
    """KV2-FC-035: an unparsable JSON config gives file:line."""
    err = load_error(workdir, '{"vault": {"address": 1,}}', name="c.json")
    assert err.where == f"{workdir / 'c.json'}:1" and "invalid JSON (column" in str(err)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.yaml", f"vault:\n  address: {ADDR}\n  address: {ADDR}\n"),
        ("c.json", f'{{"vault": {{"address": "{ADDR}", "address": "{ADDR}"}}}}'),
    ],
)
def test_duplicate_keys_are_errors(workdir: Path, name: str, text: str) -> None:
    """KV2-FC-035: a duplicate key is an error, not a silent last-wins."""
    err = load_error(workdir, text, name=name)
    assert "duplicate key 'address'" in str(err)


def test_missing_file_is_a_config_error(workdir: Path) -> None:
    """KV2-FC-035: an unreadable config file is a ConfigError."""
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load(workdir / "absent.yaml", env=TOKEN_ENV)


def test_vault_agent_hcl_config_loads_into_the_same_model(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-263, KV2-AC-250, KV2-INV-251, KV2-INV-253: an agent.hcl loads with Vault Agent
    semantics (consul-template syntax, error_on_missing_key false) except perms 0600."""
    text = f"""
pid_file = "./agent.pid"
listener "tcp" {{
  address = "127.0.0.1:8100"
}}
vault {{
  address = "{ADDR}"
  retry {{
    num_retries = 5
  }}
}}
auto_auth {{
  method "approle" {{
    mount_path = "auth/approle-x/"
    config = {{
      role_id_file_path = "/etc/vault/role-id"
      remove_secret_id_file_after_reading = false
    }}
  }}
}}
template {{
  source      = "db.ctmpl"
  destination = "/run/app/db"
  perms       = "0600"
  command     = ["systemctl", "reload", "app"]
}}
template {{
  contents    = "{{{{ with secret \\"secret/data/app\\" }}}}{{{{ .Data.data.k }}}}{{{{ end }}}}"
  destination = "/run/app/k"
}}
"""
    with caplog.at_level(logging.INFO, logger="kv2render.config"):
        config = load_tree(workdir, text, name="agent.hcl")
    assert config.pid_file == workdir / "agent.pid"
    assert config.vault.num_retries == 5
    assert config.auth.type == "approle" and config.auth.mount_path == "auth/approle-x"
    assert config.auth.config.remove_secret_id_file_after_reading is False  # type: ignore[union-attr]
    first, second = config.templates
    assert first.source == workdir / "db.ctmpl" and first.command == ("systemctl", "reload", "app")
    assert second.contents == '{{ with secret "secret/data/app" }}{{ .Data.data.k }}{{ end }}'
    # Vault Agent templates are Go templates whatever their file name.
    assert first.syntax == second.syntax == "consul-template"
    assert first.error_on_missing_key is False and second.perms == 0o600
    messages = [r.getMessage() for r in caplog.records]
    assert any("ignoring the agent 'listener' stanza" in m for m in messages)  # KV2-FC-251
    assert any("template[1]: no perms set; writing 0600" in m for m in messages)  # KV2-AC-265


def test_hcl_agent_env_template_without_exec_is_an_error(workdir: Path) -> None:
    """KV2-FC-472: an env_template without the exec block that would receive it fails,
    as in OpenBao Agent ("a top-level 'exec' element must be specified")."""
    text = f"""
vault {{
  address = "{ADDR}"
}}
env_template "DB" {{
  contents = "x"
}}
"""
    err = load_error(workdir, text, name="agent.hcl")
    assert str(err).startswith("env_template: needs a top-level exec block")


def test_invalid_hcl_is_a_config_error_without_the_text(workdir: Path) -> None:
    """KV2-FC-035, KV2-INV-001: an unparsable HCL file, without its text."""
    err = load_error(workdir, f'vault {{ address = "{SENTINEL}" \n', name="agent.hcl")
    assert "invalid HCL" in str(err) and SENTINEL not in str(err)


# --------------------------------------------------------------------------------------------
# Strict keys


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            tree(
                template=[
                    {"contents": "x", "destination": "a"},
                    {"contents": "y", "destinaton": "b"},
                ]
            ),
            "template[1].destinaton: unknown key; did you mean 'destination'?",
        ),
        (tree(vault={"adress": ADDR}), "vault.adress: unknown key; did you mean 'address'?"),
        (tree(templates=[]), "templates: unknown key; did you mean 'template'?"),
        (
            tree(auto_auth=approle(role_id_file="/r")),
            "auto_auth.method.config.role_id_file: unknown key; did you mean 'role_id_file_path'?",
        ),
        (
            tree(vault={"address": ADDR, "retry": {"attempts": 3}}),
            "vault.retry.attempts: unknown key; known keys: num_retries",
        ),
        (
            tree(template_config={"concurency": 2}),
            "template_config.concurency: unknown key; did you mean 'concurrency'?",
        ),
    ],
)
def test_unknown_keys_are_errors_with_path_and_suggestion(
    workdir: Path, data: dict[str, Any], message: str
) -> None:
    """KV2-FC-030, KV2-AC-031:
    Unknown keys at any depth, with the key path and a difflib suggestion."""
    assert str(load_error(workdir, data)) == message


def test_vault_agent_keys_kv2render_does_not_implement_say_why(workdir: Path) -> None:
    """KV2-FC-251, KV2-AC-264, KV2-FC-490: an encrypted agent sink fails, naming why."""
    sink = {"type": "file", "dh_type": "curve25519", "config": {"path": "t"}}
    err = load_error(workdir, tree(auto_auth={**approle(), "sink": [sink]}))
    assert str(err).startswith("auto_auth.sink[0].dh_type: not supported by kv2render")
    assert "encrypted sinks are not supported" in str(err)


def test_a_block_that_is_not_a_mapping_is_an_error(workdir: Path) -> None:
    """KV2-FC-032: a block of the wrong type names its key."""
    err = load_error(workdir, tree(template_config=["a", "b"]))
    assert str(err).startswith("template_config: must be a mapping, got a list")


# --------------------------------------------------------------------------------------------
# Inline credentials (spec decision 2)


@pytest.mark.parametrize(
    ("data", "where", "fix"),
    [
        (tree(vault={"address": ADDR, "token": SENTINEL}), "vault.token", "VAULT_TOKEN"),
        (tree(token=SENTINEL), "token", "token_file_path"),
        (
            tree(auto_auth=approle(secret_id=SENTINEL)),
            "auto_auth.method.config.secret_id",
            "secret_id_file_path",
        ),
        (
            tree(auto_auth=approle(role_id=SENTINEL)),
            "auto_auth.method.config.role_id",
            "role_id_file_path",
        ),
        (
            tree(auto_auth={"method": {"type": "jwt", "config": {"role": "r", "jwt": SENTINEL}}}),
            "auto_auth.method.config.jwt",
            "'path'",
        ),
        (
            tree(
                auto_auth={"method": [{"type": "token_file", "config": {"client_token": SENTINEL}}]}
            ),
            "auto_auth.method.config.client_token",
            "token_file_path",
        ),
        (
            tree(template=[{"contents": "x", "destination": "a"}, {"password": SENTINEL}]),
            "template[1].password",
            "file",
        ),
        (
            tree(
                auto_auth={
                    "method": {"type": "bearer_token_file", "config": {"bearer_token": SENTINEL}}
                }
            ),
            "auto_auth.method.config.bearer_token",
            "bearer_token_file",
        ),
        (tree(vault={"address": ADDR, "private_key": SENTINEL}), "vault.private_key", "client_key"),
        (tree(vault={"address": ADDR, "Token": SENTINEL}), "vault.Token", "VAULT_TOKEN"),
        (
            tree(vault={"address": ADDR, "token": {"nested": SENTINEL}}),
            "vault.token",
            "VAULT_TOKEN",
        ),
    ],
)
def test_inline_credentials_are_refused_without_echoing_the_value(
    workdir: Path, data: dict[str, Any], where: str, fix: str
) -> None:
    """KV2-FC-031, KV2-AC-032, KV2-INV-032, KV2-INV-001:
    Refused anywhere, named by key path, pointing to the file-based key; value never shown."""
    err = load_error(workdir, data, cls=InlineCredentialError)
    assert err.where == where
    assert str(err).startswith(f"{where}: inline credentials are refused; use ")
    assert fix in str(err)
    assert SENTINEL not in str(err) and SENTINEL not in repr(err)
    assert SENTINEL not in repr(err.args)


def test_inline_credential_is_refused_in_json_too(workdir: Path) -> None:
    """KV2-FC-031, KV2-AC-032: JSON configs get the same refusal."""
    data = tree(auto_auth=approle(secret_id=SENTINEL))
    err = load_error(workdir, data, name="c.json", cls=InlineCredentialError)
    assert err.where == "auto_auth.method.config.secret_id" and SENTINEL not in repr(err)


@pytest.mark.parametrize("source", ["file", "env", "override"])
def test_credentials_in_the_address_are_refused_without_echo(workdir: Path, source: str) -> None:
    """KV2-FC-031, KV2-INV-001: user:password@ in an address is never echoed."""
    address = f"https://user:{SENTINEL}@vault.example:8200"
    data, env, overrides = tree(), dict(TOKEN_ENV), {}
    if source == "file":
        data = tree(vault={"address": address})
    elif source == "env":
        env["VAULT_ADDR"] = address
    else:
        overrides = {"vault.address": address}
    err = load_error(workdir, data, env=env, overrides=overrides, cls=InlineCredentialError)
    assert SENTINEL not in str(err) and SENTINEL not in repr(err)
    assert "credentials in the address are refused" in str(err)


# --------------------------------------------------------------------------------------------
# Durations, booleans, integers


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("1.5s", 1.5),
        (" 10s ", 10.0),
        (45, 45.0),
        ("45", 45.0),
    ],
)
def test_duration_parsing(text: Any, seconds: float) -> None:
    """KV2-AC-035: durations and bare integers (seconds) load."""
    assert parse_duration(text, "x") == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "5 minutes", "1d", "s", "m5", "5m-", "-5s", 1.5, True, None, [], "0s", 0]
)
def test_bad_durations_are_errors_naming_the_key(text: Any) -> None:
    """KV2-AC-035, KV2-FC-032: malformed durations are refused naming the key."""
    with pytest.raises(ConfigError) as info:
        parse_duration(text, "template_config.static_secret_render_interval")
    assert str(info.value).startswith("template_config.static_secret_render_interval: ")


def test_zero_duration_only_where_allowed() -> None:
    """KV2-AC-035: 0s only where a caller allows zero."""
    assert parse_duration("0s", "k", allow_zero=True) == 0.0


def test_durations_in_config(workdir: Path) -> None:
    """KV2-AC-035: every duration key of the config."""
    data = tree(
        vault={"address": ADDR, "timeout": "10s"},
        template_config={"static_secret_render_interval": "1m"},
        template=[
            {
                "contents": "x",
                "destination": "a",
                "command": "true",
                "command_timeout": 5,
                "render_interval": "2m30s",
            }
        ],
    )
    config = load_tree(workdir, data)
    assert config.vault.timeout == 10.0
    assert config.template_config.static_secret_render_interval == 60.0
    assert config.templates[0].command_timeout == 5.0
    assert config.templates[0].render_interval == 150.0


def test_bad_duration_in_config_names_the_key(workdir: Path) -> None:
    """KV2-AC-035, KV2-FC-032."""
    err = load_error(workdir, tree(template_config={"static_secret_render_interval": "5 mins"}))
    assert str(err).startswith("template_config.static_secret_render_interval: not a duration")


@pytest.mark.parametrize(
    ("value", "expected"), [(True, True), (False, False), ("true", True), ("false", False)]
)
def test_booleans_accept_yaml_booleans_and_vault_strings(
    workdir: Path, value: Any, expected: bool
) -> None:
    """KV2-FC-032: YAML booleans and Vault-style 'true'/'false'."""
    config = load_tree(workdir, tree(exit_after_auth=value))
    assert config.exit_after_auth is expected


@pytest.mark.parametrize("value", ["yes", "on", 1, 0, "1", "truthy"])
def test_other_boolean_spellings_are_errors(workdir: Path, value: Any) -> None:
    """KV2-FC-032: a non-boolean boolean names the key."""
    data = tree(template=[{"contents": "x", "destination": "a", "backup": value}])
    err = load_error(workdir, data)
    assert str(err).startswith("template[0].backup: must be true or false")


@pytest.mark.parametrize(("raw", "effective"), [(0, 12), (-1, 0), (5, 5), ("3", 3)])
def test_num_retries_follows_vault_agent_encoding(workdir: Path, raw: Any, effective: int) -> None:
    """KV2-AC-040: 0 is 12, -1 is one attempt."""
    config = load_tree(workdir, tree(vault={"address": ADDR, "retry": {"num_retries": raw}}))
    assert config.vault.num_retries == effective


def test_num_retries_below_minus_one_is_an_error(workdir: Path) -> None:
    """KV2-AC-040, KV2-FC-032: -2 is refused."""
    err = load_error(workdir, tree(vault={"address": ADDR, "retry": {"num_retries": -2}}))
    assert str(err).startswith("vault.retry.num_retries: must be at least -1")


@pytest.mark.parametrize(
    ("key", "value"), [("concurrency", 0), ("max_output_bytes", 0), ("concurrency", "many")]
)
def test_template_config_integers_are_checked(workdir: Path, key: str, value: Any) -> None:
    """KV2-FC-032: wrong type or range names the key."""
    err = load_error(workdir, tree(template_config={key: value}))
    assert err.where == f"template_config.{key}"


def test_template_config_values(workdir: Path) -> None:
    """KV2-INV-030: template_config keys load."""
    data = tree(
        template_config={"exit_on_retry_failure": True, "max_output_bytes": 4096, "concurrency": 2}
    )
    tc = load_tree(workdir, data).template_config
    assert (tc.exit_on_retry_failure, tc.max_output_bytes, tc.concurrency) == (True, 4096, 2)


# --------------------------------------------------------------------------------------------
# perms, user, group, command, syntax


@pytest.mark.parametrize(
    ("yaml_value", "mode"),
    [
        ('"0640"', 0o640),
        ('"640"', 0o640),
        ('"0o600"', 0o600),
        ('"0400"', 0o400),
        ("0640", 0o640),  # YAML 1.1 octal literal
        ("416", 0o640),  # an integer is taken as is (Vault Agent passes ints through)
        ('"0000"', 0),
    ],
)
def test_perms_parsing(workdir: Path, yaml_value: str, mode: int) -> None:
    """KV2-AC-042: octal strings and integers give the mode."""
    text = (
        f"vault: {{address: '{ADDR}'}}\n"
        f"template:\n  - {{contents: x, destination: a, perms: {yaml_value}}}\n"
    )
    assert load_tree(workdir, text).templates[0].perms == mode


@pytest.mark.parametrize(
    "value", ["0800", "999", "rw-r-----", "", 0o10000, 0o4755, -1, True, 1.5, "07777", 640]
)
def test_bad_perms_are_errors(workdir: Path, value: Any) -> None:
    """KV2-AC-042, KV2-FC-032: out-of-range perms are refused."""
    data = tree(template=[{"contents": "x", "destination": "a", "perms": value}])
    err = load_error(workdir, data)
    assert err.where == "template[0].perms"


def test_unquoted_decimal_perms_gets_a_hint(workdir: Path) -> None:
    """KV2-FC-032: the error says the expected form."""
    # `perms: 640` is decimal 640 = 0o1200 (sticky + owner write): almost surely a mistake.
    data = tree(template=[{"contents": "x", "destination": "a", "perms": 640}])
    assert "'0640'" in str(load_error(workdir, data))


def test_group_or_other_readable_perms_are_logged_as_metadata(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-INV-001: a wide mode is warned about, metadata only."""
    data = tree(
        template=[
            {"contents": "x", "destination": "a", "perms": "0640"},
            {"contents": "y", "destination": "b", "perms": "0600"},
        ]
    )
    with caplog.at_level(logging.WARNING, logger="kv2render.config"):
        load_tree(workdir, data)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"template[0].perms 0640 lets group/other read {workdir / 'a'}"]


@pytest.mark.parametrize(
    ("value", "expected"), [("www-data", "www-data"), ("1000", 1000), (0, 0), (33, 33)]
)
def test_user_and_group(workdir: Path, value: Any, expected: Any) -> None:
    """KV2-INV-030: user/group as names or ids."""
    data = tree(template=[{"contents": "x", "destination": "a", "user": value, "group": value}])
    spec = load_tree(workdir, data).templates[0]
    assert spec.user == expected and spec.group == expected


@pytest.mark.parametrize("value", [-1, "", True, ["root"]])
def test_bad_user_is_an_error(workdir: Path, value: Any) -> None:
    """KV2-FC-032: a bad owner names its key."""
    data = tree(template=[{"contents": "x", "destination": "a", "user": value}])
    assert load_error(workdir, data).where == "template[0].user"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (["systemctl", "reload", "app"], ("systemctl", "reload", "app")),
        (["/bin/true", ""], ("/bin/true", "")),
        ("systemctl reload app || true", "systemctl reload app || true"),
    ],
)
def test_command_argv_or_shell_string(workdir: Path, value: Any, expected: Any) -> None:
    """KV2-INV-030: command as argv list or shell string."""
    data = tree(template=[{"contents": "x", "destination": "a", "command": value}])
    assert load_tree(workdir, data).templates[0].command == expected


@pytest.mark.parametrize(
    ("value", "where"),
    [
        (5, "template[0].command"),
        ([], "template[0].command"),
        (["a", 1], "template[0].command[1]"),
        (["", "x"], "template[0].command[0]"),
        ("  ", "template[0].command"),
    ],
)
def test_bad_commands_are_errors(workdir: Path, value: Any, where: str) -> None:
    """KV2-FC-032: a bad command names its key path."""
    data = tree(template=[{"contents": "x", "destination": "a", "command": value}])
    assert load_error(workdir, data).where == where


def test_syntax_defaults_and_explicit_values(workdir: Path) -> None:
    """KV2-INV-251, KV2-AC-250: jinja2 default, .ctmpl is consul-template, syntax: wins."""
    data = tree(
        template=[
            {"source": "a.ctmpl", "destination": "a"},
            {"source": "b.j2", "destination": "b"},
            {"source": "c.ctmpl", "destination": "c", "syntax": "jinja2"},
            {
                "contents": "[[ x ]]",
                "destination": "d",
                "syntax": "consul-template",
                "left_delimiter": "[[",
                "right_delimiter": "]]",
            },
        ]
    )
    specs = load_tree(workdir, data).templates
    assert [s.syntax for s in specs] == ["consul-template", "jinja2", "jinja2", "consul-template"]
    assert (specs[3].left_delimiter, specs[3].right_delimiter) == ("[[", "]]")


def test_unknown_syntax_is_an_error(workdir: Path) -> None:
    """KV2-FC-032: an unknown syntax names its key."""
    data = tree(template=[{"contents": "x", "destination": "a", "syntax": "go"}])
    assert str(load_error(workdir, data)).startswith("template[0].syntax: must be 'jinja2' or")


# --------------------------------------------------------------------------------------------
# Template bodies, paths, destinations


def test_relative_source_and_destination_resolve_against_the_config_dir(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-AC-034, KV2-INV-034."""
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    data = tree(
        template=[{"source": "tpl/db.j2", "destination": "../out/db"}],
        status_file="state/status.json",
        pid_file="/run/kv2render.pid",
    )
    config = load_tree(workdir, data)
    spec = config.templates[0]
    assert spec.source == workdir / "tpl" / "db.j2"
    assert spec.destination == workdir.parent / "out" / "db"  # normalised, not resolved
    assert config.status_file == workdir / "state" / "status.json"
    assert config.pid_file == Path("/run/kv2render.pid")


def test_tilde_paths_are_refused(workdir: Path) -> None:
    """KV2-INV-034: '~' is not expanded, so it is refused rather than misread."""
    data = tree(template=[{"contents": "x", "destination": "~/out"}])
    err = load_error(workdir, data)
    assert err.where == "template[0].destination" and "not expanded" in str(err)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"destination": "a"}, ": needs exactly one of source, contents or ref (got none)"),
        (
            {"source": "s", "contents": "x", "destination": "a"},
            ": needs exactly one of source, contents or ref (got source and contents)",
        ),
        ({"contents": "x"}, ".destination: is required"),
        ({"contents": "", "destination": "a"}, ".contents: must not be empty"),
        ({"contents": 5, "destination": "a"}, ".contents: must be a string"),
        ({"source": "a", "destination": "a"}, ".destination: must differ from source"),
    ],
)
def test_template_body_rules(workdir: Path, entry: dict[str, Any], message: str) -> None:
    """KV2-AC-036, KV2-FC-033, KV2-INV-034:
    Exactly one of source/contents/ref; a destination; errors name the key path."""
    err = load_error(workdir, tree(template=[entry]))
    assert str(err).startswith(f"template[0]{message}")


def test_destinations_must_be_unique(workdir: Path) -> None:
    """KV2-AC-036, KV2-FC-033: two templates with the same destination."""
    data = tree(
        template=[
            {"contents": "x", "destination": "out/a"},
            {"contents": "y", "destination": "b"},
            {"contents": "z", "destination": str(workdir / "out" / "." / "a")},
        ]
    )
    err = load_error(workdir, data)
    assert err.where == "template[2].destination"
    assert "also the destination of template[0]" in str(err)


@pytest.mark.parametrize("value", [None, [], "x"])
def test_template_list_is_required(workdir: Path, value: Any) -> None:
    """KV2-FC-033: no template list."""
    data = tree()
    if value is None:
        del data["template"]
    else:
        data["template"] = value
    assert load_error(workdir, data).where == "template"


def test_a_single_template_mapping_is_accepted(workdir: Path) -> None:
    """KV2-AC-263. Vault Agent's JSON form may give one `template` block as an object."""
    config = load_tree(workdir, tree(template={"contents": "x", "destination": "a"}))
    assert len(config.templates) == 1


def test_ref_template_is_parsed_and_checked_against_the_address(workdir: Path) -> None:
    """KV2-INV-006: ref: parsed at load, empty authority = vault.address."""
    data = tree(
        template=[
            {"ref": "vault+kv2:///secret/app/db#password", "destination": "pw"},
            {
                "ref": "vault+kv2://vault.example:8200/secret/app/db?version=3#user",
                "destination": "u",
            },
        ]
    )
    first, second = load_tree(workdir, data).templates
    assert first.ref is not None and second.ref is not None
    assert (first.ref.mount, first.ref.path, first.ref.key) == ("secret", "app/db", "password")
    assert (second.ref.version, second.ref.key) == (3, "user")
    assert first.source is None and first.contents is None


def test_ref_naming_another_server_is_an_error(workdir: Path) -> None:
    """KV2-AC-016, KV2-INV-006: an authority other than vault.address."""
    data = tree(template=[{"ref": "vault+kv2://other.example/secret/app#pw", "destination": "pw"}])
    err = load_error(workdir, data)
    assert err.where == "template[0].ref"


def test_bad_ref_is_a_reference_syntax_error_at_its_key(workdir: Path) -> None:
    """KV2-AC-009, KV2-FC-001: a bad ref: fails at load naming its key."""
    data = tree(template=[{"ref": "vault://secret/app#pw", "destination": "pw"}])
    err = load_error(workdir, data, cls=ReferenceSyntaxError)
    assert err.where == "template[0].ref"


@pytest.mark.parametrize(
    "key", ["syntax", "left_delimiter", "right_delimiter", "error_on_missing_key"]
)
def test_template_only_keys_are_refused_on_ref_outputs(workdir: Path, key: str) -> None:
    """KV2-FC-032: template-only keys on a ref: output."""
    value = False if key == "error_on_missing_key" else "jinja2" if key == "syntax" else "[["
    entry = {"ref": "vault+kv2:///secret/app#pw", "destination": "pw", key: value}
    err = load_error(workdir, tree(template=[entry]))
    assert err.where == f"template[0].{key}"


def test_template_flags(workdir: Path) -> None:
    """KV2-FC-032: booleans of a template entry."""
    entry = {
        "contents": "x",
        "destination": "a",
        "create_dest_dirs": True,
        "error_on_missing_key": False,
        "backup": "true",
    }
    spec = load_tree(workdir, tree(template=[entry])).templates[0]
    assert (spec.create_dest_dirs, spec.error_on_missing_key, spec.backup) == (True, False, True)


# --------------------------------------------------------------------------------------------
# vault block: address, TLS, environment fallbacks, precedence


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("https://vault.example:8200/", "https://vault.example:8200"),
        ("http://127.0.0.1:8200", "http://127.0.0.1:8200"),
        ("HTTPS://vault.example", "https://vault.example"),
        (
            "https://eu-west-rbx.okms.ovh.net/api/okms-id/",
            "https://eu-west-rbx.okms.ovh.net/api/okms-id",
        ),
        ("https://[::1]:8200", "https://[::1]:8200"),
    ],
)
def test_addresses_are_normalised(workdir: Path, raw: str, normalised: str) -> None:
    """KV2-INV-193: base path kept, trailing '/' stripped."""
    config = load_tree(workdir, tree(vault={"address": raw}))
    assert config.vault.address == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "vault.example:8200",
        "ftp://vault.example",
        "https://",
        "https://vault.example:99999",
        "https://vault.example:8200/v1",
        "https://vault.example/?x=1",
        "unix:///run/vault.sock",
        5,
    ],
)
def test_bad_addresses_are_errors(workdir: Path, raw: Any) -> None:
    """KV2-FC-034, KV2-FC-032: a malformed address names its key."""
    err = load_error(workdir, tree(vault={"address": raw}))
    assert err.where == "vault.address"


def test_missing_address_says_how_to_set_it(workdir: Path) -> None:
    """KV2-FC-034: names every place the address was looked for."""
    data = tree(vault={})
    err = load_error(workdir, data)
    assert str(err) == ("vault.address: is not set; set it in the config or VAULT_ADDR/BAO_ADDR")


def test_vault_block_with_everything(workdir: Path) -> None:
    """KV2-INV-191, KV2-INV-192: every vault key loads, paths resolved."""
    data = tree(
        vault={
            "address": ADDR,
            "ca_cert": "tls/ca.pem",
            "ca_path": "/etc/ssl/certs",
            "client_cert": "tls/client.pem",
            "client_key": "tls/client.key",
            "tls_server_name": "vault.internal",
            "tls_skip_verify": "false",
            "namespace": "team-a",
        }
    )
    v = load_tree(workdir, data).vault
    assert v.ca_cert == workdir / "tls/ca.pem" and v.ca_path == Path("/etc/ssl/certs")
    assert v.client_cert == workdir / "tls/client.pem"
    assert v.client_key == workdir / "tls/client.key"
    assert (v.tls_server_name, v.tls_skip_verify, v.namespace) == (
        "vault.internal",
        False,
        "team-a",
    )


@pytest.mark.parametrize("half", ["client_cert", "client_key"])
def test_client_cert_and_key_come_together(workdir: Path, half: str) -> None:
    """KV2-FC-032: half a client certificate is refused."""
    err = load_error(workdir, tree(vault={"address": ADDR, half: "/x.pem"}))
    other = "client_key" if half == "client_cert" else "client_cert"
    assert err.where == f"vault.{other}"


ENV_CASES = [
    ("ADDR", "http://env.example:8200", "address", "http://env.example:8200"),
    ("CACERT", "/env/ca.pem", "ca_cert", Path("/env/ca.pem")),
    ("CAPATH", "/env/certs", "ca_path", Path("/env/certs")),
    ("NAMESPACE", "env-ns", "namespace", "env-ns"),
    ("TLS_SERVER_NAME", "env.internal", "tls_server_name", "env.internal"),
    ("SKIP_VERIFY", "true", "tls_skip_verify", True),
    ("MAX_RETRIES", "4", "num_retries", 4),
]


@pytest.mark.parametrize(("suffix", "value", "attr", "expected"), ENV_CASES)
@pytest.mark.parametrize("prefix", ["VAULT_", "BAO_"])
def test_environment_fallbacks(
    workdir: Path, prefix: str, suffix: str, value: str, attr: str, expected: Any
) -> None:
    """KV2-INV-031: every BAO_*/VAULT_* fallback."""
    config = load_tree(workdir, tree(), env={**TOKEN_ENV, prefix + suffix: value})
    assert getattr(config.vault, attr) == expected


@pytest.mark.parametrize(("suffix", "value", "attr", "expected"), ENV_CASES)
def test_bao_is_read_before_vault(
    workdir: Path, suffix: str, value: str, attr: str, expected: Any
) -> None:
    """KV2-INV-031: BAO_* before VAULT_*."""
    loser = {"ADDR": "http://loser:1", "SKIP_VERIFY": "false", "MAX_RETRIES": "9"}.get(
        suffix, "/loser" if "CA" in suffix else "loser"
    )
    env = {**TOKEN_ENV, "BAO_" + suffix: value, "VAULT_" + suffix: loser}
    assert getattr(load_tree(workdir, tree(), env=env).vault, attr) == expected


def test_client_cert_and_key_from_the_environment(workdir: Path) -> None:
    """KV2-INV-031: client certificate from the environment."""
    env = {**TOKEN_ENV, "BAO_CLIENT_CERT": "/b/c.pem", "VAULT_CLIENT_CERT": "/v/c.pem"}
    env["VAULT_CLIENT_KEY"] = "/v/c.key"
    v = load_tree(workdir, tree(), env=env).vault
    assert (v.client_cert, v.client_key) == (Path("/b/c.pem"), Path("/v/c.key"))


def test_relative_environment_paths_are_relative_to_the_cwd(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-INV-031: env paths as the Vault CLI reads them."""
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    config = load_tree(workdir, tree(), env={**TOKEN_ENV, "VAULT_CACERT": "ca.pem"})
    assert config.vault.ca_cert == cwd / "ca.pem"


def test_empty_environment_values_count_as_unset(workdir: Path) -> None:
    """KV2-INV-031."""
    env = {**TOKEN_ENV, "BAO_ADDR": "", "VAULT_ADDR": "http://from-vault:1"}
    assert load_tree(workdir, tree(vault={}), env=env).vault.address == "http://from-vault:1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), ("1", True), ("YES", True), ("false", False), ("0", False), ("no", False)],
)
def test_skip_verify_env_is_a_real_boolean(workdir: Path, value: str, expected: bool) -> None:
    """KV2-INV-190, KV2-AC-194:
    Unlike Vault Agent (any non-empty value = skip), VAULT_SKIP_VERIFY=false keeps checks on."""
    env = {**TOKEN_ENV, "VAULT_SKIP_VERIFY": value}
    file_value = not expected  # env must beat the file either way
    data = tree(vault={"address": ADDR, "tls_skip_verify": file_value})
    assert load_tree(workdir, data, env=env).vault.tls_skip_verify is expected


def test_skip_verify_garbage_is_an_error_naming_the_variable(workdir: Path) -> None:
    """KV2-AC-194: VAULT_SKIP_VERIFY=maybe is refused."""
    err = load_error(workdir, tree(), env={**TOKEN_ENV, "BAO_SKIP_VERIFY": "maybe"})
    assert err.where == "BAO_SKIP_VERIFY"


def test_max_retries_env_is_a_literal_count(workdir: Path) -> None:
    """KV2-INV-031:
    VAULT_MAX_RETRIES=0 means no retries (the API client's meaning), not the default 12."""
    env = {**TOKEN_ENV, "VAULT_MAX_RETRIES": "0"}
    assert load_tree(workdir, tree(), env=env).vault.num_retries == 0
    err = load_error(workdir, tree(), env={**TOKEN_ENV, "VAULT_MAX_RETRIES": "-3"})
    assert err.where == "VAULT_MAX_RETRIES"


def test_bad_env_address_names_the_variable(workdir: Path) -> None:
    """KV2-FC-034: the error names the variable."""
    err = load_error(workdir, tree(), env={**TOKEN_ENV, "VAULT_ADDR": "vault:8200"})
    assert err.where == "VAULT_ADDR"


def test_precedence_cli_over_env_over_file_over_default(workdir: Path) -> None:
    """KV2-AC-033, KV2-INV-031."""
    data = tree(vault={"address": "http://file:1", "namespace": "file-ns", "tls_server_name": "f"})
    path = write(workdir, data)
    env = {**TOKEN_ENV, "VAULT_ADDR": "http://env:1", "VAULT_NAMESPACE": "env-ns"}
    overrides = {"vault.address": "http://cli:1/"}
    config = load(path, env=env, overrides=overrides)
    assert config.vault.address == "http://cli:1"  # CLI
    assert config.vault.namespace == "env-ns"  # env over file
    assert config.vault.tls_server_name == "f"  # file
    assert config.vault.ca_cert is None  # default
    assert load(path, env=env).vault.address == "http://env:1"
    assert load(path, env=TOKEN_ENV).vault.address == "http://file:1"


def test_overrides_reach_any_key_and_are_validated(workdir: Path) -> None:
    """KV2-INV-031, KV2-FC-030: overrides go through the same validation."""
    path = write(workdir, tree())
    config = load(
        path,
        env=TOKEN_ENV,
        overrides={
            "exit_after_auth": True,
            "template_config.concurrency": 3,
            "vault.namespace": None,
        },
    )
    assert config.exit_after_auth is True and config.template_config.concurrency == 3
    with pytest.raises(ConfigError) as info:
        load(path, env=TOKEN_ENV, overrides={"vault.adress": "http://x"})
    assert str(info.value).startswith("vault.adress: unknown key")


def test_relative_override_paths_are_relative_to_the_cwd(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-INV-031."""
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    config = load(write(workdir, tree()), env=TOKEN_ENV, overrides={"vault.ca_cert": "ca.pem"})
    assert config.vault.ca_cert == cwd / "ca.pem"


def test_only_the_given_env_is_read(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KV2-INV-030: load() reads only the env it is given."""
    monkeypatch.setenv("VAULT_ADDR", "http://process-env:1")
    monkeypatch.setenv("VAULT_TOKEN", "process-token")
    path = write(workdir, tree(vault={}))
    with pytest.raises(ConfigError, match="vault.address"):
        load(path, env={"VAULT_TOKEN": "t"})
    # env=None means os.environ, read inside load() only.
    config = load(path)
    assert config.vault.address == "http://process-env:1"
    assert config.auth.config == TokenEnvSettings("process-token", "VAULT_TOKEN")


# --------------------------------------------------------------------------------------------
# Auth


def test_no_auto_auth_takes_the_token_from_the_environment(workdir: Path) -> None:
    """KV2-AC-043, KV2-INV-001, KV2-INV-032."""
    config = load_tree(workdir, tree(), env={"VAULT_TOKEN": SENTINEL})
    assert config.auth.type == "token_env" and config.auth.config.token == SENTINEL  # type: ignore[union-attr]
    assert config.auth.mount_path == "" and config_keys(config.auth.config) == {}
    assert SENTINEL not in repr(config) and SENTINEL not in str(config)
    assert SENTINEL not in json.dumps(cfg.describe(config))


def test_bao_token_beats_vault_token(workdir: Path) -> None:
    """KV2-AC-039."""
    env = {"BAO_TOKEN": "bao-token", "VAULT_TOKEN": "vault-token"}
    assert load_tree(workdir, tree(), env=env).auth.config == TokenEnvSettings(
        "bao-token", "BAO_TOKEN"
    )


def test_no_token_and_no_auto_auth_is_an_error(workdir: Path) -> None:
    """KV2-AC-039, KV2-FC-034."""
    err = load_error(workdir, tree(), env={})
    assert "VAULT_TOKEN" in str(err) and "BAO_TOKEN" in str(err) and "auto_auth" in str(err)


def test_check_can_load_without_credentials(workdir: Path) -> None:
    """KV2-FC-034: check (require_credentials=False) loads offline without a token."""
    config = load_tree(workdir, tree(), env={}, require_credentials=False)
    assert config.auth.config == TokenEnvSettings()


def test_env_token_is_ignored_when_auto_auth_is_configured(workdir: Path) -> None:
    """KV2-INV-033: with auto_auth, an environment token is dropped at load."""
    config = load_tree(workdir, tree(auto_auth=approle()), env={"VAULT_TOKEN": SENTINEL})
    assert isinstance(config.auth.config, AppRoleSettings)
    assert SENTINEL not in repr(config)


METHODS: list[tuple[dict[str, Any], str, dict[str, Any]]] = [
    ({"type": "token_file", "config": {"token_file_path": "tok"}}, "", {"token_file_path": "tok"}),
    (
        {"type": "approle", "config": {"role_id_file_path": "r", "secret_id_file_path": "/s"}},
        "auth/approle",
        {
            "role_id_file_path": "r",
            "secret_id_file_path": Path("/s"),
            "remove_secret_id_file_after_reading": True,
        },
    ),
    (
        {"type": "approle", "mount_path": "approle-prod", "config": {"role_id_file_path": "/r"}},
        "auth/approle-prod",
        {"role_id_file_path": Path("/r"), "remove_secret_id_file_after_reading": True},
    ),
    (
        {"type": "kubernetes", "config": {"role": "app"}},
        "auth/kubernetes",
        {"role": "app", "token_path": Path("/var/run/secrets/kubernetes.io/serviceaccount/token")},
    ),
    (
        {"type": "jwt", "mount_path": "/auth/gitlab/", "config": {"role": "ci", "path": "/j"}},
        "auth/gitlab",
        # KV2-INV-494: Vault Agent's defaults, removal on and links not followed.
        {
            "role": "ci",
            "path": Path("/j"),
            "remove_jwt_after_reading": True,
            "remove_jwt_follows_symlinks": False,
        },
    ),
    ({"type": "cert", "config": {"name": "web"}}, "auth/cert", {"name": "web"}),
    ({"type": "cert"}, "auth/cert", {}),
    (
        {"type": "bearer_token_file", "config": {"token_file_path": "/pat"}},
        "",
        {"token_file_path": Path("/pat")},
    ),
    ({"type": "mtls"}, "", {}),
]


@pytest.mark.parametrize(("method", "mount_path", "expected"), METHODS)
def test_auth_methods_and_their_defaults(
    workdir: Path, method: dict[str, Any], mount_path: str, expected: dict[str, Any]
) -> None:
    """KV2-INV-032, KV2-FC-032: each method's file keys, defaults and mount path."""
    vault = {"address": ADDR, "client_cert": "/c.pem", "client_key": "/c.key"}
    config = load_tree(workdir, tree(vault=vault, auto_auth={"method": method}), env={})
    assert config.auth.type == method["type"]
    assert config.auth.mount_path == mount_path
    resolved = {
        k: (workdir / v if isinstance(v, str) and k.endswith("_path") else v)
        for k, v in expected.items()
    }
    assert config_keys(config.auth.config) == resolved
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.auth.config.role = "x"  # type: ignore[misc,union-attr]


@pytest.mark.parametrize("kind", ["cert", "mtls"])
def test_cert_and_mtls_need_the_client_certificate(workdir: Path, kind: str) -> None:
    """KV2-FC-032: cert/mtls need vault.client_cert/key."""
    err = load_error(workdir, tree(auto_auth={"method": {"type": kind}}), env={})
    assert err.where == "auto_auth.method.type" and "vault.client_cert" in str(err)


def test_client_certificate_from_env_satisfies_mtls(workdir: Path) -> None:
    """KV2-INV-031: a client certificate from the environment satisfies mtls."""
    env = {"VAULT_CLIENT_CERT": "/c.pem", "VAULT_CLIENT_KEY": "/c.key"}
    config = load_tree(workdir, tree(auto_auth={"method": {"type": "mtls"}}), env=env)
    assert config.auth.type == "mtls" and config.vault.client_cert == Path("/c.pem")


@pytest.mark.parametrize(
    ("method", "where"),
    [
        ({"type": "approle"}, "auto_auth.method.config.role_id_file_path"),
        ({"type": "kubernetes", "config": {}}, "auto_auth.method.config.role"),
        ({"type": "jwt", "config": {"role": "r"}}, "auto_auth.method.config.path"),
        ({"type": "token_file", "config": {}}, "auto_auth.method.config.token_file_path"),
        ({"config": {}}, "auto_auth.method.type"),
        ({"type": "token_file", "mount_path": "auth/x"}, "auto_auth.method.mount_path"),
        ({"type": "approle", "mount_path": "/"}, "auto_auth.method.mount_path"),
        (
            {"type": "token_file", "config": {"token_file_path": "/t", "role": "x"}},
            "auto_auth.method.config.role",
        ),
        (
            {"type": "approle", "min_backoff": "1m", "max_backoff": "1s"},
            "auto_auth.method.max_backoff",
        ),
        (
            {"type": "kubernetes", "config": {"role": "r", "token_path": ""}},
            "auto_auth.method.config.token_path",
        ),
    ],
)
def test_auth_method_errors_name_the_key(workdir: Path, method: dict[str, Any], where: str) -> None:
    """KV2-FC-030, KV2-FC-032."""
    assert load_error(workdir, tree(auto_auth={"method": method}), env={}).where == where


def test_auto_auth_without_method_is_an_error(workdir: Path) -> None:
    """KV2-FC-032."""
    assert load_error(workdir, tree(auto_auth={}), env={}).where == "auto_auth.method"


@pytest.mark.parametrize(
    ("kind", "hint"), [("aprole", "did you mean 'approle'?"), ("aws", "supported: token_file")]
)
def test_unsupported_auth_types(workdir: Path, kind: str, hint: str) -> None:
    """KV2-FC-032: unsupported method types name the supported ones."""
    err = load_error(workdir, tree(auto_auth={"method": {"type": kind}}), env={})
    assert err.where == "auto_auth.method.type" and hint in str(err)


def test_method_namespace_and_backoff(workdir: Path) -> None:
    """KV2-FC-032: method namespace and backoff keys load and are checked."""
    method = {
        "type": "approle",
        "namespace": "login-ns",
        "min_backoff": "2s",
        "max_backoff": "1m",
        "exit_on_err": True,
        "config": {"role_id_file_path": "/r", "remove_secret_id_file_after_reading": "false"},
    }
    auth = load_tree(workdir, tree(auto_auth={"method": method}), env={}).auth
    assert (auth.namespace, auth.min_backoff, auth.max_backoff) == ("login-ns", 2.0, 60.0)
    assert auth.exit_on_err is True
    assert auth.config == AppRoleSettings(Path("/r"), None, False)


@pytest.mark.parametrize("name", ["c.yaml", "c.json"])
def test_vault_agent_list_shapes_are_accepted(workdir: Path, name: str) -> None:
    """KV2-AC-037:
    Vault Agent's HCL-as-JSON gives blocks as one-item lists: method: [{type: ...}]."""
    data = {
        "vault": [{"address": ADDR, "retry": [{"num_retries": 2}]}],
        "auto_auth": [{"method": [{"type": "approle", "config": [{"role_id_file_path": "/r"}]}]}],
        "template_config": [{"concurrency": 4}],
        "template": [{"contents": "x", "destination": "a"}],
    }
    config = load_tree(workdir, data, env={}, name=name)
    assert config.vault.num_retries == 2 and config.template_config.concurrency == 4
    assert config.auth.type == "approle" and config.auth.config == AppRoleSettings(Path("/r"))


def test_a_two_item_method_list_is_an_error(workdir: Path) -> None:
    """KV2-AC-037, KV2-FC-032."""
    two = {"method": [{"type": "approle"}, {"type": "jwt"}]}
    err = load_error(workdir, tree(auto_auth=two), env={})
    assert str(err).startswith("auto_auth.method: must be a mapping")


# --------------------------------------------------------------------------------------------
# The frozen result and describe()


def test_config_is_frozen(workdir: Path) -> None:
    """KV2-INV-030: the config is frozen."""
    config = load_tree(workdir, tree())
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.vault.address = "http://other"  # type: ignore[misc]


def test_describe_is_metadata_only_and_json_able(workdir: Path) -> None:
    """KV2-INV-001: describe() is metadata only."""
    data = tree(
        template=[
            {"ref": "vault+kv2:///secret/app/db#password", "destination": "pw"},
            {"contents": SENTINEL, "destination": "c", "command": ["x", SENTINEL]},
            {"source": "t.j2", "destination": "s", "command": "echo"},
        ]
    )
    config = load_tree(workdir, data, env={"BAO_TOKEN": SENTINEL})
    summary = cfg.describe(config)
    text = json.dumps(summary)
    assert SENTINEL not in text
    assert summary["vault"]["address"] == ADDR
    assert summary["auth"]["type"] == "token_env" and summary["auth"]["token_present"] is True
    ref_t, contents_t, source_t = summary["templates"]
    assert ref_t["destination"] == str(workdir / "pw") and ref_t["secret"] == "secret/app/db"
    assert "password" in ref_t["ref"] and ref_t["perms"] == "0600"
    assert contents_t["contents_bytes"] == len(SENTINEL) and contents_t["command"] == "argv"
    assert source_t["source"] == str(workdir / "t.j2") and source_t["command"] == "shell"
