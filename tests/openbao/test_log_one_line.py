"""The real OpenBao server's multi-line error text stays one log line (issue 14, item 11).

OpenBao answers a denied read with ``{"errors": ["1 error occurred:\\n\\t* permission
denied\\n\\n"]}`` (shared/reference/openbao-real.md): the message carries its own line breaks.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.cli_helpers import run_cli, write_config
from tests.realbao import BaoServer, unique

pytestmark = pytest.mark.openbao


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_permission_denied_is_one_line(bao_server: BaoServer, workdir: Path, fmt: str) -> None:
    """KV2-AC-402 KV2-INV-396: a read the token's policy denies exits 4, and every event is
    one line: text lines with the server's line breaks escaped, or one JSON object per line."""
    path = unique("denied")
    bao_server.kv_put(path, {"password": "not-for-this-token"})
    token = bao_server.create_token(policies=["default"], ttl="10m")
    cfg = write_config(
        workdir,
        {
            "vault": {"address": bao_server.address, "retry": {"num_retries": -1}},
            "template": [{"ref": f"vault+kv2:///secret/data/{path}#password", "destination": "pw"}],
        },
    )
    result = run_cli(["--config", str(cfg), "--once", "--log-format", fmt], {"VAULT_TOKEN": token})
    assert result.code == 4, result.text
    lines = result.err.splitlines()
    denied = [line for line in lines if "permission denied" in line]
    assert len(denied) == 1, result.err
    if fmt == "json":
        records = [json.loads(line) for line in lines]  # every line is one object
        (record,) = [r for r in records if "permission denied" in str(r["msg"])]
        assert record["level"] == "error"
    else:
        # every line is a whole record: it starts with a timestamp and a level
        assert all(line[:4].isdigit() and " [" in line for line in lines), result.err
        assert "not-for-this-token" not in result.text
    assert not (workdir / "pw").exists()
