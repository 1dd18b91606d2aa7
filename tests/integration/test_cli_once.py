"""End to end: ``kv2render --once`` and ``kv2render check`` against the dev server.

Real CLI entry point, real hvac, a real socket to the embedded KV2 server.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from kv2render.devserver import DevServer

from .cli_helpers import run_cli, run_cli_subprocess, write_config

DB = {"username": "app", "password": 'p@ss:w\\ord <&> "q" é'}


def token_env(server: DevServer, token: str | None = None) -> dict[str, str]:
    return {"VAULT_ADDR": server.url, "VAULT_TOKEN": token or server.root_token}


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def seeded(dev_server: DevServer) -> DevServer:
    dev_server.put("app/db", DB)
    dev_server.put("app/config", {"port": 5432, "flags": {"a": True, "b": [1, "x"]}, "tls": False})
    return dev_server


# -- rendering ------------------------------------------------------------------------------


def test_ref_writes_the_bare_value_0600(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-090 KV2-AC-019 KV2-AC-110: ``ref:`` writes the value raw, no newline, 0600."""
    cfg = write_config(
        workdir,
        {
            "template": [
                {"ref": "vault+kv2:///secret/data/app/db#password", "destination": "db-password"}
            ]
        },
    )
    result = run_cli(["--config", str(cfg), "--once"], token_env(seeded))
    assert result.code == 0, result.text
    out = workdir / "db-password"
    assert out.read_bytes() == DB["password"].encode()
    assert mode(out) == 0o600


def test_every_reference_form_and_function(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-001 KV2-AC-004 KV2-AC-005 KV2-AC-006 KV2-AC-070 KV2-AC-071 KV2-AC-072 KV2-AC-074:
    vault+kv2, https API form, path form; kv2() and secret().
    """
    seeded.put("app/db", {"username": "app", "password": "v2-password"})  # version 2
    url = seeded.url
    contents = (
        '{{ kv2("vault+kv2:///secret/data/app/db#password") }}\n'
        '{{ kv2("vault+kv2:///secret/data/app/db?version=1#password") }}\n'
        '{{ kv2("' + url + '/v1/secret/data/app/config#port") }}\n'
        '{{ kv2("vault+kv2:///secret/data/app/config#/flags/b/1") }}\n'
        '{{ kv2("vault+kv2:///secret/data/app/config#flags") }}\n'
        '{{ kv2("vault+kv2:///secret/data/app/config")["port"] }}\n'
        '{{ secret("secret/data/app/db").Data.data.username }}'
        ' v{{ secret("secret/data/app/db").Data.metadata.version }}\n'
        '{{ secret("secret/data/app/db?version=1").Data.data.password }}\n'
        "{{ '&<>' }}\n"
    )
    cfg = write_config(workdir, {"template": [{"contents": contents, "destination": "out.txt"}]})
    result = run_cli(["--config", str(cfg), "--once"], token_env(seeded))
    assert result.code == 0, result.text
    assert (workdir / "out.txt").read_text() == (
        "v2-password\n"
        f"{DB['password']}\n"
        "5432\n"
        "x\n"
        '{"a":true,"b":[1,"x"]}\n'
        "5432\n"
        "app v2\n"
        f"{DB['password']}\n"
        "&<>\n"
    )


def test_source_is_resolved_against_the_config_directory(
    seeded: DevServer, workdir: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any
) -> None:
    """KV2-AC-034: relative source and destination are taken from the config's folder."""
    (workdir / "t.j2").write_text('user={{ kv2("vault+kv2:///secret/data/app/db#username") }}\n')
    cfg = write_config(workdir, {"template": [{"source": "t.j2", "destination": "sub/out"}]})
    (workdir / "sub").mkdir(mode=0o700)
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    result = run_cli(["--config", str(cfg), "--once"], token_env(seeded))
    assert result.code == 0, result.text
    assert (workdir / "sub" / "out").read_text() == "user=app\n"


def test_unchanged_second_run_keeps_inode_and_mtime(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-092 KV2-AC-100: identical bytes mean no write: inode and mtime unchanged, command not
    run.
    """
    marker = workdir / "ran"
    cfg = write_config(
        workdir,
        {
            "template": [
                {
                    "ref": "vault+kv2:///secret/data/app/db#password",
                    "destination": "pw",
                    "command": ["sh", "-c", f"echo x >> {marker}"],
                }
            ]
        },
    )
    assert run_cli(["--config", str(cfg), "--once"], token_env(seeded)).code == 0
    before = (workdir / "pw").stat()
    assert marker.read_text() == "x\n"
    assert run_cli(["--config", str(cfg), "--once"], token_env(seeded)).code == 0
    after = (workdir / "pw").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert marker.read_text() == "x\n"
    seeded.put("app/db", {"username": "app", "password": "rotated"})
    assert run_cli(["--config", str(cfg), "--once"], token_env(seeded)).code == 0
    assert (workdir / "pw").read_text() == "rotated"
    assert marker.read_text() == "x\nx\n"


def test_each_secret_is_read_once_per_pass(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-067: references are found before reading; one read per unique secret."""
    templates = [
        {
            "contents": '{{ kv2("vault+kv2:///secret/data/app/db#password") }}',
            "destination": f"o{i}",
        }
        for i in range(5)
    ] + [{"ref": "vault+kv2:///secret/data/app/db#username", "destination": "u"}]
    cfg = write_config(workdir, {"template": templates})
    seeded.reset_counters()
    assert run_cli(["--config", str(cfg), "--once"], token_env(seeded)).code == 0
    assert seeded.request_count(method="GET", path_prefix="/v1/secret/data/app/db") == 1


def test_command_env_has_no_token(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-102: a command's environment carries no token."""
    dump = workdir / "env.txt"
    cfg = write_config(
        workdir,
        {
            "template": [
                {
                    "ref": "vault+kv2:///secret/data/app/db#password",
                    "destination": "pw",
                    "command": f"env > {dump}",
                }
            ]
        },
    )
    result = run_cli(["--config", str(cfg), "--once"], token_env(seeded))
    assert result.code == 0, result.text
    env_text = dump.read_text()
    assert seeded.root_token not in env_text
    assert "VAULT_TOKEN" not in env_text and "BAO_TOKEN" not in env_text
    assert DB["password"] not in env_text


# -- failures keep the last good file ---------------------------------------------------------


def _two_templates(workdir: Path, failing: dict[str, Any]) -> Path:
    (workdir / "bad").write_text("old-good-content")
    return write_config(
        workdir,
        {
            "template": [
                {**failing, "destination": "bad"},
                {"ref": "vault+kv2:///secret/data/app/db#username", "destination": "good"},
            ]
        },
    )


@pytest.mark.parametrize(
    ("failing", "code", "words"),
    [
        ({"ref": "vault+kv2:///secret/data/app/db#nope"}, 5, "nope"),
        ({"contents": '{{ secret("secret/data/app/db").Data.data.nope }}'}, 5, "nope"),
        ({"ref": "vault+kv2:///secret/data/app/missing#x"}, 4, "app/missing"),
    ],
)
def test_failure_leaves_old_file_and_others_render(
    seeded: DevServer, workdir: Path, failing: dict[str, Any], code: int, words: str
) -> None:
    """KV2-AC-021 KV2-AC-058 KV2-AC-077 KV2-AC-099: a failing template keeps its file; the
    others still render.
    """
    cfg = _two_templates(workdir, failing)
    result = run_cli(["--config", str(cfg), "--once"], token_env(seeded))
    assert result.code == code, result.text
    assert words in result.err
    assert (workdir / "bad").read_text() == "old-good-content"
    assert (workdir / "good").read_text() == "app"
    assert not [p for p in workdir.iterdir() if ".tmp" in p.name]


def test_access_denied_names_the_policy_path(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-057: 403 is access denied, naming the path a policy must grant."""
    seeded.add_policy("only-config", {"secret/data/app/config": ["read"]})
    token = seeded.create_token(policies=["only-config"])
    cfg = _two_templates(workdir, {"ref": "vault+kv2:///secret/data/app/db#password"})
    result = run_cli(["--config", str(cfg), "--once"], token_env(seeded, token))
    assert result.code == 4, result.text
    assert "secret/data/app/db" in result.err
    assert "denied" in result.err
    assert (workdir / "bad").read_text() == "old-good-content"


@pytest.mark.parametrize("how", ["delete", "destroy"])
def test_deleted_version_is_an_error_and_keeps_the_file(
    seeded: DevServer, workdir: Path, how: str
) -> None:
    """KV2-AC-059: a deleted or destroyed latest version is an error; the old file stays."""
    seeded.put("app/db", {"username": "app", "password": "v2"})
    if how == "delete":
        seeded.delete("app/db")
    else:
        seeded.destroy("app/db", [2])
    cfg = _two_templates(workdir, {"ref": "vault+kv2:///secret/data/app/db#password"})
    result = run_cli(["--config", str(cfg), "--once"], token_env(seeded))
    assert result.code == 4, result.text
    assert ("deleted" if how == "delete" else "destroyed") in result.err
    assert (workdir / "bad").read_text() == "old-good-content"


def test_empty_ref_value_is_refused(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-022: an empty value for a ref: output is an error (the connector refuses it)."""
    seeded.put("app/empty", {"password": ""})
    cfg = _two_templates(workdir, {"ref": "vault+kv2:///secret/data/app/empty#password"})
    result = run_cli(["--config", str(cfg), "--once"], token_env(seeded))
    assert result.code == 5
    assert "empty" in result.err
    assert (workdir / "bad").read_text() == "old-good-content"


def test_unreachable_server_is_a_runtime_failure(workdir: Path) -> None:
    """KV2-AC-111: network failure after retries exits non-zero (not 2), file untouched."""
    (workdir / "bad").write_text("old-good-content")
    cfg = write_config(
        workdir,
        {
            "vault": {"address": "http://127.0.0.1:9", "retry": {"num_retries": -1}},
            "template": [{"ref": "vault+kv2:///secret/data/app/db#password", "destination": "bad"}],
        },
    )
    result = run_cli(["--config", str(cfg), "--once"], {"VAULT_TOKEN": "t" * 10})
    assert result.code not in (0, 2), result.text
    assert "127.0.0.1:9" in result.err
    assert (workdir / "bad").read_text() == "old-good-content"


# -- exit 2: configuration and usage ----------------------------------------------------------


BAD_CONFIGS: list[tuple[str, dict[str, Any], str]] = [
    (
        "unknown key",
        {"template": [{"ref": "vault+kv2:///secret/data/a#k", "destinaton": "x"}]},
        "destinaton",
    ),
    (
        "inline token",
        {
            "auto_auth": {"method": {"type": "token_file", "config": {"token": "S3NT"}}},
            "template": [],
        },
        "token",
    ),
    (
        "bare vault://",
        {"template": [{"ref": "vault://secret/a#k", "destination": "x"}]},
        "vault+kv2://",
    ),
    (
        "azure",
        {"template": [{"ref": "https://x.vault.azure.net/secrets/pw", "destination": "x"}]},
        "Azure Key Vault",
    ),
    (
        "no markers",
        {"template": [{"ref": "https://vault.example/secret/a", "destination": "x"}]},
        "/v1/",
    ),
    (
        "two bodies",
        {
            "template": [
                {"ref": "vault+kv2:///secret/data/a#k", "contents": "x", "destination": "x"}
            ]
        },
        "template[0]",
    ),
    (
        "syntax",
        {"template": [{"contents": "{{ kv2( }}", "destination": "x"}]},
        "template[0].contents:1:",
    ),
    (
        # A computed reference renders now (KV2-INV-390); two arguments never do.
        "secret() with two arguments",
        {
            "template": [
                {
                    "contents": "{% set p = 'secret/data/a' %}\n{{ secret(p, 'k') }}",
                    "destination": "x",
                }
            ]
        },
        ":2",
    ),
    (
        "bad duration",
        {"template_config": {"static_secret_render_interval": "5 minutes"}, "template": []},
        "static_secret_render_interval",
    ),
]


@pytest.mark.parametrize(("label", "tree", "words"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_config_errors_exit_2_and_write_nothing(
    dev_server: DevServer, workdir: Path, label: str, tree: dict[str, Any], words: str
) -> None:
    """KV2-AC-112 KV2-AC-031 KV2-AC-032 KV2-AC-009 KV2-AC-010 KV2-AC-011 KV2-AC-036 KV2-AC-078
    KV2-AC-079 KV2-AC-035: every config/usage error exits 2 naming the place.
    """
    cfg = write_config(workdir, tree)
    before = set(workdir.iterdir())
    result = run_cli(["--config", str(cfg), "--once"], token_env(dev_server))
    assert result.code == 2, result.text
    assert words in result.err
    assert "S3NT" not in result.text
    assert set(workdir.iterdir()) == before
    assert dev_server.request_count() == 0


def test_missing_config_is_a_usage_error() -> None:
    """KV2-AC-112: no --config and no KV2RENDER_CONFIG exits 2."""
    result = run_cli(["--once"])
    assert result.code == 2
    assert "KV2RENDER_CONFIG" in result.err


def test_config_path_from_environment(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-041: KV2RENDER_CONFIG supplies the config path."""
    cfg = write_config(
        workdir,
        {"template": [{"ref": "vault+kv2:///secret/data/app/db#username", "destination": "u"}]},
    )
    result = run_cli(["--once"], {**token_env(seeded), "KV2RENDER_CONFIG": str(cfg)})
    assert result.code == 0, result.text
    assert (workdir / "u").read_text() == "app"


# -- check -----------------------------------------------------------------------------------


def test_check_is_offline_and_lists_reads(workdir: Path) -> None:
    """KV2-AC-113 KV2-AC-115: check validates with no network and lists what would be read."""
    (workdir / "t.j2").write_text(
        '{{ secret("kv/data/app/a").Data.data.x }}{{ kv2("vault+kv2:///secret/data/b#y") }}'
    )
    cfg = write_config(
        workdir,
        {
            "vault": {"address": "https://vault.invalid:8200"},
            "template": [
                {"source": "t.j2", "destination": "out"},
                {"ref": "vault+kv2:///secret/data/b#z", "destination": "o2"},
            ],
        },
    )
    result = run_cli(["check", "--config", str(cfg)])
    assert result.code == 0, result.text
    assert "kv/app/a" in result.out and "secret/b" in result.out
    assert "2 unique secrets" in result.out
    json_result = run_cli(["check", "--config", str(cfg), "--log-format", "json"])
    assert json_result.code == 0
    for line in (json_result.out + json_result.err).splitlines():
        json.loads(line)


def test_check_reports_invalid_template_with_line(workdir: Path) -> None:
    """KV2-AC-114: check exits 2 on a template syntax error, naming file and line."""
    (workdir / "t.j2").write_text("ok\n{{ kv2('vault+kv2:///secret/data/a#k') }\n")
    cfg = write_config(
        workdir,
        {
            "vault": {"address": "https://v.invalid"},
            "template": [{"source": "t.j2", "destination": "o"}],
        },
    )
    result = run_cli(["check", "--config", str(cfg)])
    assert result.code == 2
    assert "t.j2:2" in result.err


# -- the process boundary --------------------------------------------------------------------


def test_subprocess_once_with_bao_variables(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-033 KV2-AC-039 KV2-AC-115: BAO_ADDR/BAO_TOKEN are read before VAULT_*; the real entry
    point works.
    """
    cfg = write_config(
        workdir,
        {"template": [{"ref": "vault+kv2:///secret/data/app/db#username", "destination": "u"}]},
    )
    result = run_cli_subprocess(
        ["--config", str(cfg), "--once", "--log-format", "json"],
        {
            "BAO_ADDR": seeded.url,
            "BAO_TOKEN": seeded.root_token,
            "VAULT_ADDR": "http://127.0.0.1:9",
            "VAULT_TOKEN": "wrong",
        },
    )
    assert result.code == 0, result.text
    assert (workdir / "u").read_text() == "app"
    for line in result.err.splitlines():
        assert isinstance(json.loads(line), dict)
    assert os.access(workdir / "u", os.R_OK)


def test_numbers_keep_the_text_the_server_stored(dev_server: DevServer, workdir: Path) -> None:
    """KV2-AC-258 KV2-AC-272 KV2-INV-061 KV2-AC-020:
    1.50 and 1e3 print as stored, as Vault Agent prints them
    (its client decodes with UseNumber), through the real server path."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(dev_server.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port)
    body = b'{"data": {"price": 1.50, "big": 1e3, "port": 5432}}'
    headers = {"X-Vault-Token": dev_server.root_token, "Content-Type": "application/json"}
    conn.request("POST", "/v1/secret/data/app/nums", body=body, headers=headers)
    assert conn.getresponse().status == 200
    conn.close()
    cfg = write_config(
        workdir,
        {
            "template": [
                {
                    "contents": '{{ with secret "secret/data/app/nums" }}'
                    "{{ .Data.data.price }} {{ .Data.data.big }} {{ .Data.data.port }}"
                    "{{ end }}",
                    "syntax": "consul-template",
                    "destination": "ct.txt",
                },
                {"ref": "vault+kv2:///secret/data/app/nums#price", "destination": "price"},
            ]
        },
    )
    result = run_cli(["--config", str(cfg), "--once"], token_env(dev_server))
    assert result.code == 0, result.text
    assert (workdir / "ct.txt").read_text() == "1.50 1e3 5432"
    assert (workdir / "price").read_text() == "1.50"


def test_once_writes_and_removes_the_pid_file(seeded: DevServer, workdir: Path) -> None:
    """KV2-INV-258: --once (Vault Agent's exit_after_auth) writes pid_file in Vault Agent's
    format while it runs, and removes it at exit; an unwritable pid file refuses the start."""
    pid_file = workdir / "kv2render.pid"
    seen = workdir / "seen"
    cfg = write_config(
        workdir,
        {
            "pid_file": str(pid_file),
            "template": [
                {
                    "ref": "vault+kv2:///secret/data/app/db#username",
                    "destination": "u",
                    # runs while kv2render is still running: copies the pid file as it is
                    "command": [
                        "sh",
                        "-c",
                        f"cp {pid_file} {seen}; stat -c %a {pid_file} >> {seen}",
                    ],
                }
            ],
        },
    )
    result = run_cli(["--config", str(cfg), "--once"], token_env(seeded))
    assert result.code == 0, result.text
    assert seen.read_text() == f"{os.getpid()}600\n"
    assert not pid_file.exists()
    cfg2 = write_config(
        workdir,
        {
            "pid_file": str(workdir / "no-such-dir" / "kv2render.pid"),
            "template": [{"ref": "vault+kv2:///secret/data/app/db#username", "destination": "u2"}],
        },
        name="second.yaml",
    )
    result = run_cli(["--config", str(cfg2), "--once"], token_env(seeded))
    assert result.code == 6, result.text
    assert not (workdir / "u2").exists()
