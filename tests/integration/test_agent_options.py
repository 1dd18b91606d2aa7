"""Vault Agent options issue 16 added: the jwt method's ``remove_jwt_after_reading`` and
``remove_jwt_follows_symlinks``, and a template ``command`` string split on commas.

The JWT file follows the AppRole secret_id file's rules (KV2-INV-352, KV2-INV-494):
removed only after a successful login, with --once only when the whole run succeeded, a
refused removal warned once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from kv2render.config import load
from kv2render.devserver import DevServer

from .cli_helpers import run_cli, write_config

JWT = "header.payload-5c1e.sig"


def _jwt_tree(srv: DevServer, tmp_path: Path, **config: Any) -> dict[str, Any]:
    srv.put("app/db", {"password": "p"})
    srv.add_policy("app", {"secret/data/app/*": ["read"]})
    srv.add_jwt(JWT, "app", ["app"], method="jwt")
    jwt = tmp_path / "jwt"
    if not jwt.exists() and not jwt.is_symlink():
        jwt.write_text(JWT + "\n")
    return {
        "vault": {"address": srv.url},
        "auto_auth": {
            "method": {"type": "jwt", "config": {"role": "app", "path": str(jwt), **config}}
        },
        "template": [
            {"ref": "vault+kv2:///secret/app/db#password", "destination": str(tmp_path / "pw")}
        ],
    }


def test_jwt_file_is_removed_after_a_successful_once_run(
    dev_server: DevServer, tmp_path: Path
) -> None:
    """KV2-INV-494, KV2-AC-495: remove_jwt_after_reading defaults to true, as in Vault
    Agent: after a successful run the JWT file is gone."""
    tree = _jwt_tree(dev_server, tmp_path)
    result = run_cli(["--config", str(write_config(tmp_path, tree)), "--once"])
    assert result.code == 0, result.text
    assert (tmp_path / "pw").read_text() == "p"
    assert not (tmp_path / "jwt").exists()
    assert f"jwt: removed JWT file {tmp_path / 'jwt'} after the login" in result.text
    assert JWT not in result.text


def test_jwt_file_is_kept_when_the_run_or_the_login_fails(
    dev_server: DevServer, tmp_path: Path
) -> None:
    """KV2-INV-494, KV2-AC-495: a login that fails (wrong role) or a --once run that fails
    after the login (a missing secret) keeps the file, so the run can be repeated."""
    tree = _jwt_tree(dev_server, tmp_path)
    tree["auto_auth"]["method"]["config"]["role"] = "nope"
    result = run_cli(["--config", str(write_config(tmp_path, tree)), "--once"])
    assert result.code == 3, result.text
    assert (tmp_path / "jwt").exists()
    tree = _jwt_tree(dev_server, tmp_path)
    tree["template"][0]["ref"] = "vault+kv2:///secret/app/missing#password"
    result = run_cli(["--config", str(write_config(tmp_path, tree)), "--once"])
    assert result.code == 4, result.text
    assert (tmp_path / "jwt").exists()


def test_remove_jwt_after_reading_false_keeps_the_file(
    dev_server: DevServer, tmp_path: Path
) -> None:
    """KV2-AC-495: remove_jwt_after_reading = false keeps the JWT file."""
    tree = _jwt_tree(dev_server, tmp_path, remove_jwt_after_reading=False)
    result = run_cli(["--config", str(write_config(tmp_path, tree)), "--once"])
    assert result.code == 0, result.text
    assert (tmp_path / "jwt").read_text() == JWT + "\n"


@pytest.mark.parametrize("follow", [False, True])
def test_a_symlinked_jwt_removes_the_link_or_its_target(
    dev_server: DevServer, tmp_path: Path, follow: bool
) -> None:
    """KV2-INV-494, KV2-AC-495: remove_jwt_follows_symlinks false (the default) removes the
    link and keeps its target; true removes the target the link points to."""
    target = tmp_path / "real-jwt"
    target.write_text(JWT)
    (tmp_path / "jwt").symlink_to(target)
    tree = _jwt_tree(dev_server, tmp_path, remove_jwt_follows_symlinks=follow)
    result = run_cli(["--config", str(write_config(tmp_path, tree)), "--once"])
    assert result.code == 0, result.text
    assert target.exists() is not follow
    assert (tmp_path / "jwt").is_symlink() is follow  # a dangling link stays when followed


def test_a_refused_removal_is_warned_once_and_the_logins_succeed(
    dev_server: DevServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-INV-494 (KV2-INV-353's rule): a file the filesystem will not let go stays, the
    logins succeed, and exactly one warning says so."""
    from kv2render.config.methods import parse_method
    from kv2render.store.auth import build_authenticator
    from kv2render.store.client import HvacSecretStore

    from .test_once_safety import _unremovable

    caplog.set_level(logging.DEBUG, logger="kv2render")
    tree = _jwt_tree(dev_server, tmp_path)
    cfg = load(write_config(tmp_path, tree), env={})
    parsed = parse_method(tree["auto_auth"]["method"], tmp_path, None)
    assert parsed is not None
    with HvacSecretStore(cfg.vault, build_authenticator(parsed)) as store:
        with _unremovable(tmp_path / "jwt"):
            for _ in range(3):  # the file is still there: read and tried again each time
                store.login()
    assert (tmp_path / "jwt").exists()
    warnings = [
        r for r in caplog.records if r.levelno >= logging.WARNING and "remove" in r.getMessage()
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "could not remove JWT file" in warnings[0].getMessage()
    assert JWT not in caplog.text


def test_jwt_read_again_after_removal_uses_the_cached_value(
    dev_server: DevServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-INV-494: after removal a re-login uses the JWT kept in memory, as Vault Agent
    does; a new file dropped there is read instead."""
    from kv2render.config.methods import parse_method
    from kv2render.store.auth import build_authenticator
    from kv2render.store.client import HvacSecretStore

    caplog.set_level(logging.DEBUG)
    tree = _jwt_tree(dev_server, tmp_path)
    cfg = load(write_config(tmp_path, tree), env={})
    parsed = parse_method(tree["auto_auth"]["method"], tmp_path, None)
    assert parsed is not None
    with HvacSecretStore(cfg.vault, build_authenticator(parsed)) as store:
        store.login()
        assert not (tmp_path / "jwt").exists()
        store.login()  # from memory
        (tmp_path / "jwt").write_text(JWT)
        store.login()
        assert not (tmp_path / "jwt").exists()
    assert dev_server.request_count("POST", "/v1/auth/jwt/login") == 3
    assert JWT not in caplog.text


# --------------------------------------------------------------------------------------------
# command: a string split on commas, as consul-template decodes it


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("sh,-c,echo hi > x", ("sh", "-c", "echo hi > x")),
        ("sh, -c, echo hi", ("sh", " -c", " echo hi")),  # spaces kept, as in the agent
        ("echo one two > x", "echo one two > x"),  # no comma: a shell string
        (["echo one two > x"], "echo one two > x"),  # one-item list: a shell string too
        (["a", "b"], ("a", "b")),
    ],
)
def test_agent_command_strings_split_on_commas(tmp_path: Path, command: Any, expected: Any) -> None:
    """KV2-INV-492, KV2-AC-496: in an agent config, a command string with a comma is an
    argv list split on every comma (spaces kept) and a one-item list runs in /bin/sh -c,
    as OpenBao Agent 2.7 runs them; kv2render's own YAML keeps a string whole."""
    import json

    tree = {
        "vault": {"address": "http://127.0.0.1:1"},
        "template": [{"contents": "x", "destination": "out", "command": command}],
    }
    (tmp_path / "a.agent.json").write_text(json.dumps(tree), encoding="utf-8")
    cfg = load(tmp_path / "a.agent.json", env={"VAULT_TOKEN": "t"})
    assert cfg.templates[0].command == expected
    native = load(write_config(tmp_path, tree), env={"VAULT_TOKEN": "t"})
    assert native.templates[0].command == (command if isinstance(command, str) else tuple(command))


def test_agent_comma_command_runs_as_argv(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-AC-496: ``command = "sh,-c,echo hi > ran"`` runs sh with two arguments."""
    hcl = tmp_path / "agent.hcl"
    hcl.write_text(
        f'vault {{ address = "{dev_server.url}" }}\n'
        f'template {{\n  contents = "x"\n  destination = "{tmp_path}/out"\n'
        f'  command = "sh,-c,echo hi > {tmp_path}/ran"\n}}\n',
        encoding="utf-8",
    )
    token = dev_server.create_token(["root"])
    result = run_cli(["--config", str(hcl), "--once"], {"VAULT_TOKEN": token})
    assert result.code == 0, result.text
    assert (tmp_path / "ran").read_text() == "hi\n"


def test_function_denylist_on_a_jinja2_template_is_refused_naming_why(tmp_path: Path) -> None:
    """KV2-FC-495: function_denylist denies consul-template functions (KV2-INV-496); on a
    Jinja2 template there are none, so the key is refused (exit 2) with the reason."""
    cfg = tmp_path / "k.yaml"
    cfg.write_text(
        "vault: {address: 'http://127.0.0.1:1'}\n"
        "template:\n- contents: x\n  destination: out\n  function_denylist: [env]\n",
        encoding="utf-8",
    )
    result = run_cli(["check", "--config", str(cfg)], {"VAULT_TOKEN": "t"})
    assert result.code == 2, result.text
    assert "template[0].function_denylist: applies to consul-template templates only" in (
        result.text
    )
    assert "set syntax: consul-template" in result.text
