"""``kv2render check``: every problem in one run, and offline warnings (issue 14, item 12).

Real CLI entry point; "offline" is proved with the embedded dev server's request count.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kv2render.config import load
from kv2render.devserver import DevServer
from kv2render.errors import ConfigError, ConfigErrors

from .cli_helpers import run_cli, write_config

GOOD_REF = "vault+kv2:///secret/data/app#k"


def _many_problems(workdir: Path) -> Path:
    (workdir / "a.j2").write_text("line one\n{{ kv2('vault+kv2:///secret/data/a#k') }\n")
    (workdir / "b.ctmpl").write_text('{{ with secret "secret/data/b" }}{{ .Data.data.k }}\n')
    (workdir / "ok.j2").write_text("{{ kv2('vault+kv2:///secret/data/c#k') }}\n")
    tree: dict[str, Any] = {
        "vault": {"address": "https://vault.invalid:8200", "tls_skip_verifyy": True},
        "template_config": {"colour": "blue", "shape": "round"},
        "template": [
            {"source": "a.j2", "destination": "a"},
            {"ref": "vault+kv2:///secret/data/app#", "destination": "r"},
            {"source": "b.ctmpl", "destination": "b"},
            {"source": "ok.j2", "destination": "c"},
            {"ref": GOOD_REF, "destination": "c"},
        ],
    }
    return write_config(workdir, tree)


EXPECTED = (
    "vault.tls_skip_verifyy: unknown key",
    "template_config.colour: unknown key",
    "template_config.shape: unknown key",
    "template[1].ref:",
    "template[4].destination:",
    "a.j2:2",
    "b.ctmpl",
)


def test_check_reports_every_problem_in_one_run(workdir: Path, dev_server: DevServer) -> None:
    """KV2-AC-406 KV2-INV-398 KV2-AC-114: unknown keys in two blocks, a bad reference, two
    template syntax errors and a duplicate destination: one run names each on its own ERROR
    line with its place, exit 2, nothing written, no request."""
    cfg = _many_problems(workdir)
    result = run_cli(["check", "--config", str(cfg)])
    assert result.code == 2, result.text
    errors = [line for line in result.err.splitlines() if "[ERROR]" in line]
    assert len(errors) == len(EXPECTED), result.err
    for place, line in zip(EXPECTED, errors, strict=True):
        assert place in line, (place, line)
    as_json = run_cli(["check", "--config", str(cfg), "--log-format", "json"])
    records = [json.loads(line) for line in as_json.err.splitlines()]
    assert [r["level"] for r in records] == ["error"] * len(EXPECTED)
    assert {r["error_type"] for r in records} >= {"ConfigError", "TemplateSyntaxError"}
    assert sorted(p.name for p in workdir.iterdir()) == [
        "a.j2",
        "b.ctmpl",
        "kv2render.yaml",
        "ok.j2",
    ]
    assert dev_server.request_count() == 0


def test_a_failed_start_names_every_config_problem(workdir: Path, dev_server: DevServer) -> None:
    """KV2-AC-406 KV2-INV-398: ``--once`` refuses the same config with exit 2, before any
    request, naming every problem of the config itself (template syntax is compiled once
    the config is valid; ``check`` compiles the valid entries in the same run)."""
    cfg = _many_problems(workdir)
    result = run_cli(
        ["--config", str(cfg), "--once"],
        {"VAULT_ADDR": dev_server.url, "VAULT_TOKEN": dev_server.root_token},
    )
    assert result.code == 2, result.text
    for place in EXPECTED[:5]:
        assert place in result.err, place
    assert dev_server.request_count() == 0


def test_one_problem_is_reported_as_before(workdir: Path) -> None:
    """KV2-AC-406 KV2-INV-398: a single problem is raised as itself, not wrapped; what is
    valid does not change."""
    cfg = write_config(
        workdir,
        {
            "vault": {"address": "https://vault.invalid", "adress": "x"},
            "template": [{"ref": GOOD_REF, "destination": "o"}],
        },
    )
    with pytest.raises(ConfigError) as one:
        load(cfg, env={"VAULT_TOKEN": "t"})
    assert not isinstance(one.value, ConfigErrors)
    assert str(one.value) == "vault.adress: unknown key; did you mean 'address'?"
    cfg = write_config(
        workdir,
        {
            "vault": {"address": "https://vault.invalid", "adress": "x", "namespac": "y"},
            "template": [{"ref": GOOD_REF, "destination": "o"}],
        },
    )
    with pytest.raises(ConfigErrors) as two:
        load(cfg, env={"VAULT_TOKEN": "t"})
    assert [e.where for e in two.value.errors] == ["vault.adress", "vault.namespac"]
    assert two.value.exit_code == 2


# -- warnings --------------------------------------------------------------------------------


def test_check_warns_offline_about_what_the_host_lacks(
    workdir: Path, dev_server: DevServer
) -> None:
    """KV2-AC-407 KV2-INV-400 KV2-INV-190: missing credential files, CA file and destination
    folder, plain http to a non-loopback host and tls_skip_verify are warnings: exit 0, one
    WARNING line each, no connection, the credential files never read."""
    cfg = write_config(
        workdir,
        {
            "vault": {
                "address": "http://vault.example.net:8200",
                "tls_skip_verify": True,
                "ca_cert": "missing-ca.pem",
            },
            "auto_auth": {
                "method": {
                    "type": "approle",
                    "config": {
                        "role_id_file_path": "role-id",
                        "secret_id_file_path": "missing-secret-id",
                    },
                }
            },
            "template": [
                {"ref": GOOD_REF, "destination": "no-such-folder/out"},
                {"ref": GOOD_REF, "destination": "made-at-run/out", "create_dest_dirs": True},
                {"ref": GOOD_REF, "destination": "here"},
            ],
        },
    )
    (workdir / "role-id").write_text("role-id-value\n")
    result = run_cli(["check", "--config", str(cfg)])
    assert result.code == 0, result.text
    warnings = [line for line in result.err.splitlines() if "[WARNING]" in line]
    expected = (
        "auto_auth.method.config.secret_id_file_path: credential file",
        "vault.ca_cert: CA file",
        "template[0].destination: folder",
        "vault.tls_skip_verify is on",
        "vault.address http://vault.example.net:8200 is plain http",
    )
    assert len(warnings) == len(expected), result.err
    for words in expected:
        assert any(words in line for line in warnings), words
    assert "role-id-value" not in result.text
    assert "made-at-run" not in result.err
    assert dev_server.request_count() == 0
    summary = json.loads(
        run_cli(["check", "--config", str(cfg), "--log-format", "json"]).out.splitlines()[-1]
    )
    assert summary["valid"] is True and summary["warnings"] == len(expected)


def test_check_warns_when_no_token_source_is_configured(workdir: Path) -> None:
    """KV2-AC-407 KV2-INV-400: no auto_auth and no VAULT_TOKEN/BAO_TOKEN: a warning, exit 0;
    with a token in the environment, a complete config gets no warning at all."""
    cfg = write_config(
        workdir,
        {
            "vault": {"address": "https://vault.invalid:8200"},
            "template": [{"ref": GOOD_REF, "destination": "out"}],
        },
    )
    bare = run_cli(["check", "--config", str(cfg)])
    assert bare.code == 0, bare.text
    assert "no token source" in bare.err and "[WARNING]" in bare.err
    with_token = run_cli(["check", "--config", str(cfg)], {"VAULT_TOKEN": "hvs.whatever"})
    assert with_token.code == 0, with_token.text
    assert with_token.err == ""
