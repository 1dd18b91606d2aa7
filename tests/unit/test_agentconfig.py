"""kv2render.config.agent: Vault Agent configs (HCL and JSON) read with the agent's semantics,
the stanzas kv2render does not implement, convert-config, and the pid file helpers."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from kv2render.config import Config, load
from kv2render.config import agent as agentconfig
from kv2render.config.methods import TokenFileSettings
from kv2render.errors import ConfigError, WriteError
from kv2render.output.status import PidFile

ADDR = "https://vault.example:8200"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "vault-agent"
SENTINEL = "S3NT1NEL-ag3nt-77aa"
CONTENTS = '{{ with secret "secret/data/app" }}{{ .Data.data.k }}{{ end }}'


def hcl(body: str) -> str:
    return f'vault {{\n  address = "{ADDR}"\n}}\n' + body


def write(directory: Path, name: str, data: Any) -> Path:
    path = directory / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def load_agent(directory: Path, name: str, data: Any) -> Config:
    return load(write(directory, name, data), env={"VAULT_TOKEN": "t"})


def messages(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records if level is None or r.levelno == level]


# --------------------------------------------------------------------------------------------
# Which files are agent configs


AGENT_TEMPLATE = {"contents": CONTENTS, "destination": "out"}


@pytest.mark.parametrize(
    ("name", "tree"),
    [
        ("c.agent.json", {"vault": {"address": ADDR}, "template": [AGENT_TEMPLATE]}),
        ("c.json", {"vault": [{"address": ADDR}], "template": [AGENT_TEMPLATE]}),
        ("c.json", {"vault": {"address": ADDR}, "template": AGENT_TEMPLATE}),
        ("c.json", {"vault": {"address": ADDR}, "listener": [], "template": [AGENT_TEMPLATE]}),
        (
            "c.json",
            {"vault": {"address": ADDR}, "template": [{**AGENT_TEMPLATE, "wait": {"min": "1s"}}]},
        ),
        (
            "c.json",
            {
                "vault": {"address": ADDR},
                "auto_auth": {
                    "method": [{"type": "token_file", "config": {"token_file_path": "t"}}]
                },
                "template": [AGENT_TEMPLATE],
            },
        ),
    ],
)
def test_agent_json_is_detected_by_name_or_shape(workdir: Path, name: str, tree: Any) -> None:
    """KV2-AC-263, KV2-INV-251: an agent JSON config (by name or HCL-JSON shape) loads with
    the agent's semantics: consul-template syntax, error_on_missing_key false."""
    (spec,) = load_agent(workdir, name, tree).templates
    assert spec.syntax == "consul-template" and spec.error_on_missing_key is False
    assert spec.create_dest_dirs is True  # consul-template's default


@pytest.mark.parametrize("name", ["c.json", "c.yaml"])
def test_a_plain_kv2render_config_keeps_its_strict_defaults(workdir: Path, name: str) -> None:
    """KV2-AC-250: a JSON/YAML config with no agent shape is kv2render's own (jinja2, strict)."""
    tree = {"vault": {"address": ADDR}, "template": [{"contents": "x", "destination": "out"}]}
    (spec,) = load_agent(workdir, name, tree).templates
    assert spec.syntax == "jinja2" and spec.error_on_missing_key is True
    assert spec.create_dest_dirs is False


def test_yaml_with_block_lists_is_not_an_agent_config(workdir: Path) -> None:
    """KV2-AC-037: YAML is never read as an agent config, whatever its shape."""
    text = yaml.safe_dump(
        {"vault": [{"address": ADDR}], "template": [{"contents": "x", "destination": "o"}]}
    )
    (spec,) = load_agent(workdir, "c.yaml", text).templates
    assert spec.syntax == "jinja2"


def test_agent_reason_says_why(workdir: Path) -> None:
    """KV2-AC-263: the detection rule, one reason per marker."""
    assert agentconfig.agent_reason(workdir / "a.hcl", {}) == "an HCL file"
    assert agentconfig.agent_reason(workdir / "a.json", {"vault": {}}) is None
    assert "sink" in (
        agentconfig.agent_reason(workdir / "a.json", {"auto_auth": {"sink": []}}) or ""
    )
    assert agentconfig.agent_reason(workdir / "a.yaml", {"listener": []}) is None


# --------------------------------------------------------------------------------------------
# Stanzas kv2render does not implement


def test_refused_stanzas_are_named_in_one_error(workdir: Path) -> None:
    """KV2-FC-251, KV2-AC-264, KV2-FC-490: a response-wrapping sink would change what is
    written: an error (exit 2) with its reason. env_template and exec are
    process-supervisor mode now (KV2-INV-470): read, not refused."""
    text = hcl(
        f"""
auto_auth {{
  method "approle" {{
    config = {{ role_id_file_path = "/r" }}
  }}
  sink "file" {{
    wrap_ttl = "5m"
    config = {{ path = "/tmp/{SENTINEL}" }}
  }}
}}
env_template "DB_PASSWORD" {{
  contents = "{SENTINEL}"
}}
exec {{
  command = ["app"]
}}
"""
    )
    with pytest.raises(ConfigError) as info:
        load_agent(workdir, "agent.hcl", text)
    err = info.value
    assert err.exit_code == 2
    assert str(err).startswith("auto_auth.sink[0].wrap_ttl: not supported by kv2render")
    assert "response-wrapped" in str(err) and "env_template" not in str(err)
    assert SENTINEL not in str(err)


def test_ignored_stanzas_are_one_warning(workdir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """KV2-FC-251, KV2-AC-264: listener, cache, api_proxy, telemetry (and template wait)
    do not change what is rendered: one warning names them all, and loading succeeds."""
    text = hcl(
        f"""
listener "tcp" {{
  address = "{SENTINEL}"
}}
cache {{}}
api_proxy {{
  use_auto_auth_token = true
}}
telemetry {{
  prometheus_retention_time = "30s"
}}
log_level = "debug"
template_config {{
  max_connections_per_host = 4
}}
template {{
  contents    = "x"
  destination = "out"
  wait {{
    min = "2s"
  }}
}}
"""
    )
    with caplog.at_level(logging.INFO, logger="kv2render.config"):
        load_agent(workdir, "agent.hcl", text)
    (warning,) = [m for m in messages(caplog, logging.WARNING) if "ignoring" in m]
    for key in ("listener", "cache", "api_proxy", "telemetry", "log_level"):
        assert f"ignoring the agent '{key}' stanza" in warning
    assert "'template_config.max_connections_per_host'" in warning
    assert "'template[0].wait'" in warning
    assert SENTINEL not in "\n".join(messages(caplog))


# --------------------------------------------------------------------------------------------
# The agent's semantics, and the 0600 exception


def test_missing_perms_is_0600_with_one_notice(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-INV-253, KV2-AC-265: templates without perms are 0600, said once with the reason."""
    text = hcl(
        """
template {
  contents    = "a"
  destination = "a"
}
template {
  contents    = "b"
  destination = "b"
  perms       = "0640"
}
template {
  contents    = "c"
  destination = "c"
  perms       = "0"
}
"""
    )
    with caplog.at_level(logging.INFO, logger="kv2render.config"):
        config = load_agent(workdir, "agent.hcl", text)
    assert [t.perms for t in config.templates] == [0o600, 0o640, 0o600]
    notices = [m for m in messages(caplog, logging.INFO) if "no perms set" in m]
    assert notices == [
        "template[0], template[2]: no perms set; writing 0600, not Vault Agent's 0644: rendered "
        "files hold secrets, so kv2render keeps them owner-only by default; set perms to "
        "choose another mode"
    ]


def test_no_perms_notice_when_every_template_sets_perms(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-265: the notice is about the default only."""
    text = hcl('template {\n contents = "a"\n destination = "a"\n perms = "0600"\n}\n')
    with caplog.at_level(logging.INFO, logger="kv2render.config"):
        load_agent(workdir, "agent.hcl", text)
    assert not [m for m in messages(caplog) if "no perms set" in m]


def test_hcl_integer_perms_are_octal_and_json_integers_decimal(workdir: Path) -> None:
    """KV2-INV-253 KV2-INV-495 KV2-AC-482: as the agent's HCL 1 reads integers (Go base 0):
    `perms = 0640` is octal 0o640, `perms = 420` decimal (0o644), a JSON 416 is 0o640, a
    string is octal; a sink's `mode = 420` is 0o644 too. python-hcl2 gave 640 for 0640, and
    kv2render then read every HCL integer's digits as octal (420 as 0o420): no more."""
    cases = {"0640": 0o640, "420": 0o644, "0x1A4": 0o644, '"0600"': 0o600, '"420"': 0o420}
    for literal, mode in cases.items():
        text = hcl(f'template {{\n contents = "a"\n destination = "a"\n perms = {literal}\n}}\n')
        assert load_agent(workdir, "agent.hcl", text).templates[0].perms == mode, literal
    tree = {"vault": {"address": ADDR}, "template": [{**AGENT_TEMPLATE, "perms": 416}]}
    assert load_agent(workdir, "c.agent.json", tree).templates[0].perms == 0o640
    for literal, mode in {"420": 0o644, "0640": 0o640, "0600": 0o600}.items():
        sink = f'sink "file" {{ config {{ path = "/tok" mode = {literal} }} }}'
        text = hcl(
            'auto_auth {\n method "token_file" { config { token_file_path = "/t" } }\n'
            f"  {sink}\n}}\n"
        )
        assert load_agent(workdir, "agent.hcl", text).sinks[0].mode == mode, literal


def test_hcl_decimal_perms_with_a_sticky_bit_is_refused_explaining_decimal(
    workdir: Path,
) -> None:
    """KV2-AC-482: `perms = 640` is decimal 640 = 0o1200 to the agent (which then writes
    --w-------); kv2render refuses the sticky bit, and the hint says why and what to write."""
    text = hcl('template {\n contents = "a"\n destination = "a"\n perms = 640\n}\n')
    with pytest.raises(ConfigError) as caught:
        load_agent(workdir, "agent.hcl", text)
    assert caught.value.exit_code == 2
    assert caught.value.where == "template[0].perms"
    assert "640 is decimal (= 0o1200)" in str(caught.value.hint)
    assert "leading zero in HCL (0640)" in str(caught.value.hint)


def test_error_on_missing_key_defaults_false_with_a_notice(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-266: false as in Vault Agent, and a startup notice recommending true."""
    text = hcl(
        """
template {
  contents    = "a"
  destination = "a"
}
template {
  contents             = "b"
  destination          = "b"
  error_on_missing_key = true
}
"""
    )
    with caplog.at_level(logging.INFO, logger="kv2render.config"):
        config = load_agent(workdir, "agent.hcl", text)
    assert [t.error_on_missing_key for t in config.templates] == [False, True]
    (notice,) = [m for m in messages(caplog, logging.WARNING) if "error_on_missing_key" in m]
    assert notice.startswith("template[0]: error_on_missing_key is false")
    assert "set error_on_missing_key = true" in notice


def test_template_exec_block_becomes_command_and_timeout(workdir: Path) -> None:
    """KV2-AC-263: exec { command, timeout } (Vault >= 1.14) runs like command."""
    text = hcl(
        """
template {
  contents    = "a"
  destination = "a"
  exec {
    command = ["systemctl", "reload", "app"]
    timeout = "45s"
  }
}
template {
  contents    = "b"
  destination = "b"
  command     = "pkill -HUP app"
}
"""
    )
    first, second = load_agent(workdir, "agent.hcl", text).templates
    assert first.command == ("systemctl", "reload", "app") and first.command_timeout == 45.0
    assert second.command == "pkill -HUP app" and second.command_timeout == 30.0


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('command = "x"\n exec {\n command = ["y"]\n }', "template[0].command: is set twice"),
        ('exec {\n timeout = "1s"\n }', "template[0].exec.command: is required"),
        ('exec {\n command = ["y"]\n shell = true\n }', "template[0].exec.shell: unknown key"),
    ],
)
def test_bad_exec_blocks_name_the_place(workdir: Path, body: str, expected: str) -> None:
    """KV2-FC-030 (errors name the place): exec mistakes."""
    text = hcl(f'template {{\n contents = "a"\n destination = "a"\n {body}\n}}\n')
    with pytest.raises(ConfigError) as info:
        load_agent(workdir, "agent.hcl", text)
    assert str(info.value).startswith(expected)


def test_heredoc_contents_keep_their_final_newline(workdir: Path) -> None:
    """KV2-AC-263: HCL heredocs read as Vault Agent reads them (template bytes depend on it)."""
    text = hcl(
        """
template {
  destination = "a"
  contents    = <<EOT
line "one" \\n
  {{ .x }}

EOT
}
template {
  destination = "b"
  contents    = <<-EOT
    indented
      more
    EOT
}
"""
    )
    first, second = load_agent(workdir, "agent.hcl", text).templates
    assert first.contents == 'line "one" \\n\n  {{ .x }}\n\n'
    assert second.contents == "indented\n  more\n"


def test_every_supported_stanza_loads(workdir: Path) -> None:
    """KV2-AC-263: vault, auto_auth (labelled method), template, template_config,
    exit_after_auth and pid_file."""
    text = hcl(
        """
exit_after_auth = true
pid_file = "run/agent.pid"
auto_auth {
  method "kubernetes" {
    mount_path = "auth/k8s"
    config = {
      role = "app"
    }
  }
}
template_config {
  static_secret_render_interval = "2m"
  exit_on_retry_failure         = true
}
template {
  source           = "t.tmpl"
  destination      = "/run/app/out"
  backup           = true
  create_dest_dirs = false
  left_delimiter   = "[["
  right_delimiter  = "]]"
}
"""
    )
    config = load_agent(workdir, "agent.hcl", text)
    assert config.exit_after_auth is True and config.pid_file == workdir / "run" / "agent.pid"
    assert config.auth.type == "kubernetes" and config.auth.mount_path == "auth/k8s"
    assert config.template_config.static_secret_render_interval == 120.0
    assert config.template_config.exit_on_retry_failure is True
    (spec,) = config.templates
    assert spec.source == workdir / "t.tmpl" and spec.syntax == "consul-template"
    assert spec.backup is True and spec.create_dest_dirs is False
    assert (spec.left_delimiter, spec.right_delimiter) == ("[[", "]]")


@pytest.mark.parametrize("form", ["config {", "config = {"])
def test_labelled_method_config_as_block_or_attribute(workdir: Path, form: str) -> None:
    """KV2-AC-263: ``method "token_file" { config { ... } }`` (a block, as Vault Agent's docs
    write it) loads like ``config = { ... }`` (an attribute)."""
    token = workdir / "token"
    text = hcl(
        f"""
auto_auth {{
  method "token_file" {{
    {form}
      token_file_path = "{token}"
    }}
  }}
}}
template {{
  contents    = "x"
  destination = "/run/app/out"
}}
"""
    )
    config = load_agent(workdir, "agent.hcl", text)
    assert config.auth.type == "token_file"
    assert str(token) in repr(config.auth)


@pytest.mark.parametrize(
    "method",
    [
        'method "token_file" {\n config {\n token_file_path = "tok"\n }\n}',
        'method "token_file" {\n config = {\n token_file_path = "tok"\n }\n}',
        'method {\n type = "token_file"\n config {\n token_file_path = "tok"\n }\n}',
    ],
    ids=["labelled-config-block", "labelled-config-map", "typed-config-block"],
)
def test_method_config_as_block_or_map(workdir: Path, method: str) -> None:
    """KV2-AC-263, KV2-AC-334 (found by the bao agent differential): `config { ... }` written as
    a block inside a labelled `method "token_file"` loads like `config = { ... }`, as the
    OpenBao Agent reads it (it used to fail: 'must be a mapping, got a list')."""
    template = 'template {\n contents = "x"\n destination = "o"\n}\n'
    config = load_agent(workdir, "agent.hcl", hcl(f"auto_auth {{\n{method}\n}}\n{template}"))
    assert config.auth.type == "token_file"
    assert config.auth.config == TokenFileSettings(workdir / "tok")


# --------------------------------------------------------------------------------------------
# convert-config


EXAMPLE_FILES = sorted(p for p in EXAMPLES.iterdir() if p.suffix in (".hcl", ".json"))


def comparable(config: Config) -> tuple[Any, ...]:
    return (
        config.vault,
        config.auth,
        config.template_config,
        config.templates,
        config.pid_file,
        config.exit_after_auth,
        config.status_file,
    )


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.name)
def test_convert_config_yaml_loads_to_the_same_config(example: Path, tmp_path: Path) -> None:
    """KV2-AC-268: convert-config's YAML, saved next to the agent file, loads to the same
    Config (templates, auth, vault, template_config, pid_file, exit_after_auth)."""
    text = agentconfig.convert_config(example)
    converted = example.parent / f".converted-{example.stem}-{os.getpid()}.yaml"
    try:
        converted.write_text(text, encoding="utf-8")
        assert comparable(load(converted, env={})) == comparable(load(example, env={}))
    finally:
        converted.unlink(missing_ok=True)


def test_convert_config_comments_every_change() -> None:
    """KV2-AC-268: each dropped or changed setting is a comment in the YAML."""
    text = agentconfig.convert_config(EXAMPLES / "contents.hcl")
    assert "#   listener: dropped: kv2render has no listener" in text
    assert "#   cache: dropped" in text
    assert "#   template[1].wait: dropped" in text
    assert "  # perms: not set: kv2render writes 0600 where Vault Agent writes 0644" in text
    tree = yaml.safe_load(text)
    assert set(tree) == {"vault", "auto_auth", "template"}
    assert tree["template"][0]["perms"] == "0600"


def test_convert_config_refuses_yaml_and_unsupported_stanzas(workdir: Path) -> None:
    """KV2-AC-264, KV2-AC-268: a kv2render YAML is not converted; a wrapping sink is
    refused."""
    native = write(workdir, "c.yaml", "vault: {address: 'https://v:1'}\n")
    with pytest.raises(ConfigError, match="is not a Vault Agent config"):
        agentconfig.convert_config(native)
    sink = write(
        workdir,
        "agent.hcl",
        hcl(
            'auto_auth {\n method "approle" {\n config = { role_id_file_path = "/r" }\n }\n'
            ' sink "file" {\n wrap_ttl = "1m"\n config = { path = "/t" }\n }\n}\n'
        ),
    )
    with pytest.raises(ConfigError, match=r"^auto_auth\.sink\[0\]\.wrap_ttl: not supported"):
        agentconfig.convert_config(sink)


def test_convert_config_refuses_inline_credentials(workdir: Path) -> None:
    """KV2-INV-033 style: a credential in the agent file is never echoed into the YAML."""
    path = write(
        workdir,
        "agent.hcl",
        hcl(
            'auto_auth {\n method "approle" {\n'
            f' config = {{ secret_id = "{SENTINEL}" }}\n }}\n}}\n'
        ),
    )
    with pytest.raises(ConfigError) as info:
        agentconfig.convert_config(path)
    assert "inline credentials are refused" in str(info.value) and SENTINEL not in str(info.value)


# --------------------------------------------------------------------------------------------
# pid_file (status.PidFile, shared by --once and the daemon)


def test_pid_file_is_written_0600_and_removed(workdir: Path) -> None:
    """KV2-AC-270 KV2-INV-258: the pid (as Vault Agent writes it, no newline), 0600; removed
    at exit."""
    path = workdir / "agent.pid"
    PidFile(path).write()
    assert path.read_text() == str(os.getpid())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    PidFile(path).remove()
    assert not path.exists()


def test_pid_file_of_another_process_is_left_alone(workdir: Path) -> None:
    """KV2-AC-270 KV2-INV-258: a pid file another instance took over is not removed."""
    path = workdir / "agent.pid"
    path.write_text("1")
    PidFile(path).remove()
    assert path.read_text() == "1"
    PidFile(workdir / "absent.pid").remove()  # no error
    PidFile(None).write()
    PidFile(None).remove()


def test_unwritable_pid_file_refuses_to_start(workdir: Path) -> None:
    """KV2-AC-270 KV2-INV-258: as Vault Agent, a pid file that cannot be written stops the
    start."""
    with pytest.raises(WriteError):
        PidFile(workdir / "missing-dir" / "agent.pid").write()
