"""A template's ``function_denylist`` (KV2-AC-484, KV2-INV-496, KV2-FC-495, KV2-FC-496).

kv2render's YAML and the embedded dev server: a consul-template template's denied call fails
the render when it runs (exit 5, named by template, line and function, no secret value), a
denied ``secret`` is not read, the last good file stays; on a Jinja2 template the key is a
ConfigError. The same behaviour against the real OpenBao Agent is
tests/openbao/test_function_denylist_real.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kv2render.devserver import DevServer
from kv2render.errors import RenderError
from kv2render.render.ctmpl import compile_ctmpl, render_ctmpl

from .cli_helpers import run_cli, write_config

SENTINEL = "s3ntinel-Deny-77c2"


def _config(srv: DevServer, tmp_path: Path, contents: str, denylist: Any) -> Path:
    tree = {
        "vault": {"address": srv.url},
        "template": [
            {
                "contents": contents,
                "destination": str(tmp_path / "out"),
                "syntax": "consul-template",
                "function_denylist": denylist,
            }
        ],
    }
    return write_config(tmp_path, tree)


def _once(srv: DevServer, config: Path) -> Any:
    return run_cli(["--config", str(config), "--once"], {"VAULT_TOKEN": srv.create_token(["root"])})


def test_a_denied_call_fails_the_render_at_its_line_without_the_secret(
    dev_server: DevServer, tmp_path: Path
) -> None:
    """KV2-AC-484 KV2-FC-496: the call of a denied function (here on a secret's value) fails
    with exit 5 naming template:line:col and the function; the value is not shown, and the
    last good file stays as it was."""
    dev_server.put("app/db", {"password": SENTINEL})
    body = '{{ with secret "secret/data/app/db" }}a\n{{ .Data.data.password | toUpper }}{{ end }}'
    (tmp_path / "out").write_text("last good\n")
    result = _once(dev_server, _config(dev_server, tmp_path, body, ["toUpper"]))
    assert result.code == 5, result.text
    assert "template[0].contents:2:25: " in result.text
    assert "at <toUpper>: error calling toUpper: function is disabled" in result.text
    assert SENTINEL not in result.text and SENTINEL.upper() not in result.text
    assert (tmp_path / "out").read_text() == "last good\n"


def test_a_denied_secret_reads_nothing(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-AC-484 KV2-INV-496: with `secret` denied, its path is not read (a missing secret
    would fail with exit 4): the render fails with exit 5 at the call, as the agent's."""
    body = '{{ with secret "secret/data/app/absent" }}{{ .Data.data.k }}{{ end }}'
    result = _once(dev_server, _config(dev_server, tmp_path, body, "secret"))
    assert result.code == 5, result.text
    assert "error calling secret: function is disabled" in result.text
    assert not (tmp_path / "out").exists()


def test_an_unexecuted_denied_call_and_go_builtins_render(
    dev_server: DevServer, tmp_path: Path
) -> None:
    """KV2-AC-484 KV2-INV-496: a denied call in a branch not taken costs nothing, Go's
    built-ins cannot be denied, and a name that is no function is ignored, as in
    consul-template."""
    dev_server.put("app/db", {"password": "pw"})
    body = (
        '{{ with secret "secret/data/app/db" }}{{ .Data.data.password }}{{ end }}'
        '{{ if false }}{{ env "HOME" }}{{ end }}-{{ printf "%d" 3 }}{{ len "ab" }}'
    )
    config = _config(dev_server, tmp_path, body, ["env", "printf", "len", "no-such", "file"])
    result = _once(dev_server, config)
    assert result.code == 0, result.text
    assert (tmp_path / "out").read_text() == "pw-32"


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ({"contents": "x"}, "applies to consul-template templates only"),
        (
            {"ref": "vault+kv2:///secret/data/app/db#password"},
            "applies to consul-template templates only",
        ),
        ({"contents": "x", "syntax": "consul-template", "function_denylist_": 1}, "unknown"),
    ],
    ids=["jinja2", "ref", "unknown-key"],
)
def test_function_denylist_outside_consul_template_is_a_config_error(
    tmp_path: Path, template: dict[str, Any], words: str
) -> None:
    """KV2-FC-495: on a Jinja2 template or a ref: output the key is refused (exit 2), with
    the fix; never silently ignored."""
    entry = {"destination": str(tmp_path / "out"), "function_denylist": ["env"], **template}
    tree = {"vault": {"address": "http://127.0.0.1:1"}, "template": [entry]}
    result = run_cli(["check", "--config", str(write_config(tmp_path, tree))], {"VAULT_TOKEN": "t"})
    assert result.code == 2, result.text
    assert words in result.text


@pytest.mark.parametrize("value", [[1], {"env": True}, 3, [["env"]]], ids=repr)
def test_a_denylist_that_is_not_names_is_a_config_error(tmp_path: Path, value: Any) -> None:
    """KV2-FC-495: a denylist that is not a list of names (or one comma-separated string)
    is a ConfigError naming the key."""
    entry = {
        "contents": "x",
        "destination": str(tmp_path / "out"),
        "syntax": "consul-template",
        "function_denylist": value,
    }
    tree = {"vault": {"address": "http://127.0.0.1:1"}, "template": [entry]}
    result = run_cli(["check", "--config", str(write_config(tmp_path, tree))], {"VAULT_TOKEN": "t"})
    assert result.code == 2, result.text
    assert "template[0].function_denylist: must be a list of function names" in result.text


def test_the_engine_denies_at_execute_time_only() -> None:
    """KV2-INV-496: compile_ctmpl parses a denied function's call; render_ctmpl fails on it
    only when it runs, with Go's `error calling NAME: function is disabled`."""
    tpl = compile_ctmpl(
        '{{ if .X }}{{ env "A" }}{{ end }}{{ "b" | toUpper }}',
        name="t",
        function_denylist=("env", "printf"),
    )
    assert render_ctmpl(tpl, {}, env={"A": "a"}) == "B"
    tpl = compile_ctmpl('x\n{{ env "A" }}', name="t", function_denylist=("env",))
    with pytest.raises(RenderError, match=r'at <env "A">: error calling env: function is disabled'):
        render_ctmpl(tpl, {}, env={"A": "a"})


def test_an_agent_env_template_denies_too(tmp_path: Path) -> None:
    """KV2-INV-496: an agent env_template (process-supervisor mode) takes function_denylist
    and function_blacklist (joined) as its file templates do; the denied call fails when
    the variable is rendered."""
    from kv2render.config import load
    from kv2render.daemon.supervisor import prepare_env

    agent = tmp_path / "agent.hcl"
    agent.write_text(
        'vault {\n  address = "http://127.0.0.1:1"\n}\n'
        'env_template "A" {\n  contents = "{{ env \\"HOME\\" }}"\n'
        '  function_denylist = ["toUpper"]\n  function_blacklist = ["env"]\n}\n'
        'exec {\n  command = ["true"]\n}\n',
        encoding="utf-8",
    )
    (env,) = load(agent, env={"VAULT_TOKEN": "t"}).env_templates
    assert env.function_denylist == ("toUpper", "env")
    prepared = prepare_env(env)
    with pytest.raises(RenderError, match="error calling env: function is disabled"):
        prepared.render({})


def test_a_glob_denies_nothing_and_is_warned(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-AC-484 KV2-INV-496: names are exact, as OpenBao Agent 2.7.2 matches them
    ("*", "en*" and "e?v" deny nothing there, measured); kv2render renders as the agent
    does and warns that the pattern denies nothing."""
    body = '{{ "a" | toUpper }}'
    result = _once(dev_server, _config(dev_server, tmp_path, body, ["*", "toU*"]))
    assert result.code == 0, result.text
    assert (tmp_path / "out").read_text() == "A"
    assert "template[0].function_denylist: '*', 'toU*' deny nothing: names are exact" in (
        result.text
    )
