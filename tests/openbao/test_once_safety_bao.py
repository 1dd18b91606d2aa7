"""KV2-AC-359: issue 14's credential checks and secret_id handling against the real OpenBao
server (``bao server -dev``, shared for the session; unique paths and role names)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.cli_helpers import run_cli, write_config
from tests.realbao import BaoServer, unique

pytestmark = pytest.mark.openbao


def test_line_break_token_is_refused_before_any_request(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-359 KV2-FC-350: a VAULT_TOKEN holding a line break exits 3 at once against the
    real server: no retry, and no part of the token printed."""
    path = unique("creds")
    bao_server.kv_put(path, {"password": "p"})
    token = bao_server.create_token(policies=["default"], ttl="10m")
    cfg = write_config(
        workdir,
        {
            "vault": {"address": bao_server.address},
            "template": [{"ref": f"vault+kv2:///secret/data/{path}#password", "destination": "pw"}],
        },
    )
    started = time.monotonic()
    result = run_cli(
        ["--config", str(cfg), "--once", "--log-level", "trace"],
        {"VAULT_TOKEN": token + "\nX-Evil: 1"},
    )
    assert result.code == 3, result.err[-2000:]
    assert time.monotonic() - started < 5
    assert "retry" not in result.err
    assert "VAULT_TOKEN from the environment" in result.err
    assert token not in result.text and token.split(".")[-1] not in result.text


def test_approle_secret_id_file_kept_until_the_run_succeeds(
    bao_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-359 KV2-INV-352: with the real AppRole backend, a --once that logs in and then
    cannot write keeps the secret_id file; the repeated run, once the folder exists, renders
    and removes it."""
    path = unique("approle")
    role = unique("role")
    bao_server.kv_put(path, {"password": "from-bao"})
    bao_server.enable_auth("approle")
    bao_server.put_policy(role, f'path "secret/data/{path}" {{ capabilities = ["read"] }}')
    bao_server.api("POST", f"auth/approle/role/{role}", {"token_policies": [role]})
    role_id = bao_server.api("GET", f"auth/approle/role/{role}/role-id")["data"]["role_id"]
    secret_id = bao_server.api("POST", f"auth/approle/role/{role}/secret-id", {})["data"][
        "secret_id"
    ]
    (workdir / "role_id").write_text(role_id)
    sid = workdir / "secret_id"
    sid.write_text(secret_id)
    dest = workdir / "out" / "pw"
    cfg = write_config(
        workdir,
        {
            "vault": {"address": bao_server.address},
            "auto_auth": {
                "method": {
                    "type": "approle",
                    "config": {
                        "role_id_file_path": str(workdir / "role_id"),
                        "secret_id_file_path": str(sid),
                    },
                }
            },
            "template": [
                {"ref": f"vault+kv2:///secret/data/{path}#password", "destination": str(dest)}
            ],
        },
    )
    failed = run_cli(["--config", str(cfg), "--once"])
    assert failed.code == 6, failed.err[-2000:]
    assert sid.read_text() == secret_id
    dest.parent.mkdir(mode=0o700)
    ok = run_cli(["--config", str(cfg), "--once"])
    assert ok.code == 0, ok.err[-2000:]
    assert dest.read_text() == "from-bao"
    assert not sid.exists()
    assert secret_id not in failed.text + ok.text
