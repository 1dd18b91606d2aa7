"""Process-supervisor mode's config: ``env_template`` and ``exec`` (config/supervise.py).

The same settings in Vault Agent HCL, HCL-as-JSON and kv2render's YAML load to the same
frozen values; every wrong use is a ConfigError (exit 2) naming the key.
"""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path
from typing import Any

import pytest
import yaml

from kv2render.config import Config, describe, load
from kv2render.config.supervise import EnvTemplateSpec, ExecSpec
from kv2render.errors import ConfigError

ADDR = "https://vault.example:8200"
SENTINEL = "S3NTINEL-contents-5e1c"
BODY = '{{ with secret "secret/data/app/db" }}{{ .Data.data.password }}{{ end }}'

AGENT_HCL = (
    """
vault {
  address = "ADDR"
}
env_template "DB_PASSWORD" {
  contents = "{{ with secret \\"secret/data/app/db\\" }}{{ .Data.data.password }}{{ end }}"
  error_on_missing_key = true
}
env_template "API_KEY" {
  contents = "x{{ with secret \\"secret/data/app/api\\" }}{{ .Data.data.key }}{{ end }}"
}
exec {
  command = ["./my-app", "--flag"]
  restart_on_secret_changes = "never"
  restart_stop_signal = "SIGUSR1"
}
"""
).replace("ADDR", ADDR)


def load_file(directory: Path, name: str, data: Any) -> Config:
    path = directory / name
    if isinstance(data, str):
        text = data
    elif name.endswith(".json"):
        text = json.dumps(data)
    else:
        text = yaml.safe_dump(data)
    path.write_text(text, encoding="utf-8")
    return load(path, env={"VAULT_TOKEN": "t"})


def yaml_tree(**extra: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {
        "vault": {"address": ADDR},
        "env_template": {"DB_PASSWORD": {"contents": BODY}},
        "exec": {"command": ["./my-app"]},
    }
    tree.update(extra)
    return tree


def error(directory: Path, data: Any, name: str = "kv2render.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        load_file(directory, name, data)
    assert info.value.exit_code == 2
    return str(info.value)


def test_agent_hcl_loads_env_templates_and_exec(tmp_path: Path) -> None:
    """KV2-AC-474, KV2-INV-470, KV2-INV-472: the agent's HCL, with the agent's defaults
    (consul-template syntax; error_on_missing_key false unless set, with a notice)."""
    cfg = load_file(tmp_path, "agent.hcl", AGENT_HCL)
    assert cfg.templates == ()
    assert cfg.exec == ExecSpec(("./my-app", "--flag"), "never", int(signal.SIGUSR1))
    assert [e.name for e in cfg.env_templates] == ["DB_PASSWORD", "API_KEY"]
    db, api = cfg.env_templates
    assert db == EnvTemplateSpec("DB_PASSWORD", contents=BODY, error_on_missing_key=True)
    assert api.error_on_missing_key is False and api.syntax == "consul-template"


def test_yaml_and_json_forms_load_the_same(tmp_path: Path) -> None:
    """KV2-AC-474, KV2-INV-470: kv2render's YAML and JSON use the same keys; defaults are
    "always" and SIGTERM, and a kv2render config is strict (error_on_missing_key true)."""
    from_yaml = load_file(tmp_path, "kv2render.yaml", yaml_tree())
    from_json = load_file(tmp_path, "kv2render.json", yaml_tree())
    assert from_yaml.exec == from_json.exec == ExecSpec(("./my-app",))
    assert from_yaml.exec.restart_on_secret_changes == "always"
    assert from_yaml.exec.restart_stop_signal == signal.SIGTERM
    assert from_yaml.env_templates == from_json.env_templates
    assert from_yaml.env_templates[0].error_on_missing_key is True
    assert from_yaml.env_templates[0].syntax == "consul-template"


def test_signal_names_and_describe(tmp_path: Path) -> None:
    """KV2-INV-470: a signal may be written SIGHUP, sighup or HUP; describe() shows the
    program, not the argv, and no template body (KV2-INV-477)."""
    for written in ("SIGHUP", "sighup", "HUP"):
        tree = yaml_tree(exec={"command": ["./app", SENTINEL], "restart_stop_signal": written})
        cfg = load_file(tmp_path, "kv2render.yaml", tree)
        assert cfg.exec is not None and cfg.exec.restart_stop_signal == signal.SIGHUP
    shown = json.dumps(describe(cfg))
    assert '"program": "./app"' in shown and "SIGHUP" in shown
    assert SENTINEL not in shown and "Data.data" not in shown


@pytest.mark.parametrize("key", ["destination", "perms", "command", "wait", "create_dest_dirs"])
def test_a_file_only_key_in_an_env_template_is_refused_by_name(tmp_path: Path, key: str) -> None:
    """KV2-FC-470: as OpenBao Agent ("env_template[A]: 'destination' is not allowed")."""
    tree = yaml_tree(env_template={"DB": {"contents": "x", key: "/tmp/x"}})
    text = error(tmp_path, tree)
    assert text.startswith(f"env_template.DB.{key}: is not allowed in an env_template")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"exec": None}, "env_template: needs a top-level exec block"),
        ({"env_template": None}, "exec: needs at least one env_template"),
        (
            {"template": [{"contents": "x", "destination": "out"}]},
            "env_template: cannot be used together with template entries",
        ),
        ({"exec": {"command": "./app --flag"}}, "exec.command: must be a non-empty list"),
        ({"exec": {"command": []}}, "exec.command: must be a non-empty list"),
        ({"exec": {"command": ["./app", 3]}}, "exec.command[1]: must be a string"),
        ({"exec": {"restart_on_secret_changes": "always"}}, "exec.command: is required"),
        (
            {"exec": {"command": ["a"], "restart_on_secret_changes": "sometimes"}},
            "exec.restart_on_secret_changes: must be 'always' or 'never'",
        ),
        (
            {"exec": {"command": ["a"], "restart_stop_signal": "SIGNOPE"}},
            "exec.restart_stop_signal: is not a signal name",
        ),
        ({"exec": {"command": ["a"], "timeout": "5s"}}, "exec.timeout: unknown key"),
        ({"env_template": {"DB": {}}}, "env_template.DB: needs exactly one of source"),
        ({"env_template": {"A=B": {"contents": "x"}}}, "env_template: the variable name"),
    ],
)
def test_wrong_uses_are_config_errors(
    tmp_path: Path, change: dict[str, Any], expected: str
) -> None:
    """KV2-FC-472: each wrong use names its key; OpenBao Agent refuses the same three pairings
    (env_template without exec, exec alone, env_template with template)."""
    tree = yaml_tree()
    for key, value in change.items():
        if value is None:
            del tree[key]
        else:
            tree[key] = value
    assert expected in error(tmp_path, tree)


def test_an_agent_env_template_without_error_on_missing_key_gets_a_notice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-INV-472: the agent's lenient default is said once, naming the env template."""
    caplog.set_level(logging.INFO)
    load_file(tmp_path, "agent.hcl", AGENT_HCL)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith("env_template.API_KEY: error_on_missing_key is false") for m in warnings
    )
    assert not any("DB_PASSWORD" in m for m in warnings)


def test_convert_config_prints_the_yaml_form_that_loads_the_same(tmp_path: Path) -> None:
    """KV2-AC-474, KV2-INV-472: convert-config writes env_template/exec in kv2render's YAML
    vocabulary (a mapping, not HCL's block lists), and the YAML loads to the same values."""
    from kv2render.config.agent import convert_config

    agent = tmp_path / "agent.hcl"
    agent.write_text(AGENT_HCL, encoding="utf-8")
    text = convert_config(agent)
    tree = yaml.safe_load(text)
    assert set(tree["env_template"]) == {"DB_PASSWORD", "API_KEY"}
    assert tree["exec"]["command"] == ["./my-app", "--flag"]
    converted = load_file(tmp_path, "converted.yaml", text)
    original = load(agent, env={"VAULT_TOKEN": "t"})
    assert converted.env_templates == original.env_templates
    assert converted.exec == original.exec


def test_check_lists_env_templates(tmp_path: Path) -> None:
    """KV2-INV-470: ``check`` compiles every env template and lists what each reads; a
    syntax error in one is a check error naming it."""
    from tests.integration.cli_helpers import run_cli, write_config

    path = write_config(tmp_path, yaml_tree())
    result = run_cli(["check", "--config", str(path)], {"VAULT_TOKEN": "t"})
    assert result.code == 0, result.text
    assert "env_template.DB_PASSWORD: env DB_PASSWORD <- secret/app/db" in result.text
    assert "0 templates, 1 env template, 1 unique secret" in result.text
    broken = write_config(tmp_path, yaml_tree(env_template={"X": {"contents": "{{ nope"}}))
    result = run_cli(["check", "--config", str(broken)], {"VAULT_TOKEN": "t"})
    assert result.code == 2 and "env_template.X" in result.text
