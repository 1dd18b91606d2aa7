"""auto_auth.sink "file" (issue 16): the token written where the operator asked for it.

Config parsing (keys, defaults, refusals) and the writes, against the embedded dev server:
--once writes the sink after the login, a new login (a re-login after a 403 included)
rewrites it, an unwritable sink fails the run with exit 6.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import requests

from kv2render.config import VaultSettings, load
from kv2render.config.auth import AuthSettings
from kv2render.config.methods import parse_method
from kv2render.devserver import DevServer
from kv2render.errors import ConfigError, WriteError
from kv2render.output.sink import token_writer
from kv2render.refs import SecretLocation
from kv2render.store.auth import build_authenticator
from kv2render.store.client import HvacSecretStore

from .cli_helpers import run_cli, write_config

LOC = SecretLocation("secret", "app/db")


def hcl_config(tmp_path: Path, sink_body: str, method: str | None = None) -> Path:
    method = method or f'method "token_file" {{ config {{ token_file_path = "{tmp_path}/t" }} }}'
    path = tmp_path / "agent.hcl"
    path.write_text(
        'vault { address = "http://127.0.0.1:1" }\n'
        f"auto_auth {{\n  {method}\n  {sink_body}\n}}\n",
        encoding="utf-8",
    )
    return path


def test_sink_keys_and_defaults_as_the_agent_reads_them(tmp_path: Path) -> None:
    """KV2-AC-490: path (relative to the config), mode 0640 by default, HCL 0600 octal,
    JSON numbers decimal, uid/gid (OpenBao) and owner/group (Vault) as numeric ids; a sink
    alone, without a template, is a valid config as in Vault Agent."""
    cfg = load(hcl_config(tmp_path, 'sink "file" { config { path = "tok" } }'), env={})
    (sink,) = cfg.sinks
    assert sink.path == tmp_path / "tok" and sink.mode == 0o640 and cfg.templates == ()
    body = 'sink "file" { config { path = "/a" mode = 0600 uid = 12 gid = 34 } }'
    (sink,) = load(hcl_config(tmp_path, body), env={}).sinks
    assert (sink.mode, sink.uid, sink.gid) == (0o600, 12, 34)
    body = 'sink "file" { config { path = "/a" owner = 5 group = 6 } }'
    (sink,) = load(hcl_config(tmp_path, body), env={}).sinks
    assert (sink.uid, sink.gid) == (5, 6)
    two = 'sink "file" { config { path = "/a" } }\n  sink "file" { config { path = "/b" } }'
    assert [s.path for s in load(hcl_config(tmp_path, two), env={}).sinks] == [
        Path("/a"),
        Path("/b"),
    ]
    tree = {
        "vault": {"address": "http://127.0.0.1:1"},
        "auto_auth": {
            "method": [{"type": "token_file", "config": {"token_file_path": "t"}}],
            "sink": [{"type": "file", "config": {"path": "x", "mode": 416}}],
        },
    }
    (tmp_path / "agent.agent.json").write_text(json.dumps(tree), encoding="utf-8")
    (sink,) = load(tmp_path / "agent.agent.json", env={}).sinks
    assert sink.mode == 0o640


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        ('sink "file" {\n wrap_ttl = "5m"\n config { path = "/a" } }', "wrap_ttl", "wrapped"),
        ('sink "file" {\n dh_type = "curve25519"\n config { path = "/a" } }', "dh_type", "encr"),
        ('sink "file" {\n aad_env_var = "X"\n config { path = "/a" } }', "aad_env_var", "encr"),
        ('sink "file" { config { mode = 0640 } }', "config.path", "is required"),
        ('sink "socket" { config { path = "/a" } }', "type", "must be 'file'"),
        ('sink "file" { config { path = "/a" uid = 1 owner = 2 } }', "owner", "set twice"),
        ('sink "file" { config { path = "/a" mode = "rw" } }', "mode", "octal"),
        ('sink "file" { config { path = "/a" colour = 1 } }', "colour", "unknown key"),
        (
            'sink "file" { config { path = "/a" } }\n  sink "file" { config { path = "/a" } }',
            "auto_auth.sink",
            "two sinks",
        ),
    ],
)
def test_bad_sinks_are_config_errors(tmp_path: Path, body: str, where: str, words: str) -> None:
    """KV2-FC-490, KV2-AC-491: response wrapping, encryption keys, a missing path, another
    sink type, an owner given twice, a bad mode: exit 2, naming the key and the fix."""
    with pytest.raises(ConfigError) as info:
        load(hcl_config(tmp_path, body), env={})
    assert info.value.exit_code == 2
    assert where in str(info.value) and words in str(info.value), str(info.value)


def test_a_sink_needs_a_method_with_a_token(tmp_path: Path) -> None:
    """KV2-FC-490, KV2-AC-491: no method (as the agent: 'one and only one method block is
    required') or a method without a token (bearer_token_file) is a config error."""
    with pytest.raises(ConfigError, match=r"auto_auth\.method: is required"):
        load(hcl_config(tmp_path, 'sink "file" { config { path = "/a" } }', method=" "), env={})
    bearer = f'method "bearer_token_file" {{ config {{ token_file_path = "{tmp_path}/b" }} }}'
    with pytest.raises(ConfigError, match="has no token to write"):
        load(hcl_config(tmp_path, 'sink "file" { config { path = "/a" } }', bearer), env={})


def _approle(srv: DevServer, tmp_path: Path, ttl: int = 300) -> dict[str, Any]:
    srv.add_policy("app", {"secret/data/app/*": ["read"]})
    srv.add_approle("web", "role-1", "secret-1", ["app"], token_ttl=ttl)
    (tmp_path / "role").write_text("role-1")
    (tmp_path / "sid").write_text("secret-1")
    return {
        "type": "approle",
        "config": {
            "role_id_file_path": str(tmp_path / "role"),
            "secret_id_file_path": str(tmp_path / "sid"),
            "remove_secret_id_file_after_reading": False,
        },
    }


def _lookup_self(srv: DevServer, token: str) -> int:
    reply = requests.get(
        f"{srv.url}/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}, timeout=5
    )
    return reply.status_code


def test_once_writes_the_bare_token_with_the_sink_mode(
    dev_server: DevServer, tmp_path: Path
) -> None:
    """KV2-INV-490, KV2-AC-492: --once logs in, writes the token to the sink (bare, no
    newline, mode 0640 by default, 0600 when asked), renders, exits 0; the token works."""
    dev_server.put("app/db", {"password": "p"})
    sinks = [
        {"type": "file", "config": {"path": str(tmp_path / "token")}},
        {"type": "file", "config": {"path": str(tmp_path / "token600"), "mode": "0600"}},
    ]
    tree = {
        "vault": {"address": dev_server.url},
        "auto_auth": {"method": _approle(dev_server, tmp_path), "sink": sinks},
        "template": [
            {"ref": "vault+kv2:///secret/app/db#password", "destination": str(tmp_path / "pw")}
        ],
    }
    result = run_cli(["--config", str(write_config(tmp_path, tree)), "--once"])
    assert result.code == 0, result.text
    token = (tmp_path / "token").read_text()
    assert token and token == token.strip() and "\n" not in token
    assert stat.S_IMODE(os.stat(tmp_path / "token").st_mode) == 0o640
    assert stat.S_IMODE(os.stat(tmp_path / "token600").st_mode) == 0o600
    assert (tmp_path / "token600").read_text() == token
    assert _lookup_self(dev_server, token) == 200
    assert (tmp_path / "pw").read_text() == "p"
    assert token not in result.text
    assert f"token written to sink {tmp_path / 'token'} (mode 0640)" in result.text
    leftovers = [p.name for p in tmp_path.iterdir() if ".kv2render-" in p.name]
    assert leftovers == []


def test_an_unwritable_sink_fails_the_once_run_with_exit_6(
    dev_server: DevServer, tmp_path: Path
) -> None:
    """KV2-FC-491, KV2-AC-493: a sink in a folder that does not exist: exit 6 naming the
    path, no template written, the token nowhere in the output."""
    dev_server.put("app/db", {"password": "p"})
    tree = {
        "vault": {"address": dev_server.url},
        "auto_auth": {
            "method": _approle(dev_server, tmp_path),
            "sink": [{"type": "file", "config": {"path": str(tmp_path / "no" / "token")}}],
        },
        "template": [
            {"ref": "vault+kv2:///secret/app/db#password", "destination": str(tmp_path / "pw")}
        ],
    }
    result = run_cli(["--config", str(write_config(tmp_path, tree)), "--once"])
    assert result.code == 6, result.text
    assert str(tmp_path / "no" / "token") in result.text
    assert not (tmp_path / "pw").exists()


def _sinking_store(srv: DevServer, tmp_path: Path) -> HvacSecretStore:
    method = _approle(srv, tmp_path)
    parsed = parse_method(method, Path("/"), (None, None))
    assert isinstance(parsed, AuthSettings)
    cfg_sink = load(hcl_config(tmp_path, f'sink "file" {{ config {{ path = "{tmp_path}/s" }} }}'))
    writer = token_writer(cfg_sink.sinks)
    assert writer is not None
    settings = VaultSettings(address=srv.url, num_retries=-1, timeout=5.0)
    return HvacSecretStore(settings, build_authenticator(parsed, on_token=writer))


def test_every_new_login_rewrites_the_sink(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-INV-490, KV2-AC-494: each login (the daemon's TokenLifecycle logs in through the
    same store) rewrites the sink with the new token, and so does the store's own re-login
    after a 403 on a revoked token."""
    dev_server.put("app/db", {"password": "p"})
    with _sinking_store(dev_server, tmp_path) as store:
        store.login()
        first = (tmp_path / "s").read_text()
        store.login()
        second = (tmp_path / "s").read_text()
        assert second != first and _lookup_self(dev_server, second) == 200
        dev_server.revoke_token(second)
        assert store.read(LOC).data["password"] == "p"  # 403, one re-login, the read again
        third = (tmp_path / "s").read_text()
        assert third not in (first, second) and _lookup_self(dev_server, third) == 200
    assert stat.S_IMODE(os.stat(tmp_path / "s").st_mode) == 0o640


def test_a_failing_sink_fails_the_login_and_names_no_token(
    dev_server: DevServer, tmp_path: Path
) -> None:
    """KV2-FC-491: a sink that cannot be written makes the login fail (the daemon retries it
    with the login backoff) with a WriteError naming the path, never the token."""
    store = _sinking_store(dev_server, tmp_path)
    (tmp_path / "s").mkdir()  # a folder where the token file should be
    with store, pytest.raises(WriteError) as info:
        store.login()
    assert "it is a directory" in str(info.value) and str(tmp_path / "s") in str(info.value)


def test_convert_config_keeps_the_sinks(tmp_path: Path) -> None:
    """KV2-AC-490, KV2-AC-268: convert-config prints each sink as {type: file, config: ...}
    with the HCL mode as an octal string, and the YAML loads to the same sinks."""
    from kv2render.config.agent import convert_config

    body = 'sink "file" { config { path = "tok" mode = 0600 uid = 7 } }'
    agent = hcl_config(tmp_path, body)
    (tmp_path / "t").write_text("x")
    text = convert_config(agent)
    assert "- type: file" in text and "mode: '0600'" in text
    (tmp_path / "converted.yaml").write_text(text, encoding="utf-8")
    assert load(tmp_path / "converted.yaml", env={}).sinks == load(agent, env={}).sinks
