"""KV2-INV-394 KV2-AC-399: a secret path computed from a secret's value is refused, unread.

Paths are metadata: logged, and shown in the status file. A path built from a value would
carry that value there, so kv2render refuses it (exit 5) before reading it, and says nothing
of the path. Paths built from names (env, constants) are unaffected (tests of KV2-AC-390+).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kv2render.devserver import DevServer
from tests.integration.cli_helpers import run_cli, write_config

TENANT = "acme-s3ntinel-tenant"

CTMPL = (
    '{{ with secret "secret/data/app/tenant" }}'
    '{{ with secret (printf "secret/data/tenants/%s" .Data.data.name) }}'
    "{{ .Data.data.password }}{{ end }}{{ end }}"
)
JINJA = (
    '{{ kv2("vault+kv2:///secret/data/tenants/" ~ '
    'kv2("vault+kv2:///secret/data/app/tenant#name") ~ "#password") }}'
)


@pytest.mark.parametrize(("syntax", "contents"), [("consul-template", CTMPL), ("jinja2", JINJA)])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_path_built_from_a_secret_value_is_refused_unread(
    dev_server: DevServer, workdir: Path, syntax: str, contents: str, fmt: str
) -> None:
    """KV2-AC-399"""
    dev_server.put("app/tenant", {"name": TENANT})
    dev_server.put(f"tenants/{TENANT}", {"password": "tenant-pw"})
    dest = workdir / "out"
    cfg = write_config(
        workdir,
        {
            "vault": {"address": dev_server.url},
            "template": [{"contents": contents, "syntax": syntax, "destination": str(dest)}],
        },
    )
    dev_server.reset_counters()
    result = run_cli(
        ["--config", str(cfg), "--once", "--log-level", "trace", "--log-format", fmt],
        {"VAULT_TOKEN": dev_server.root_token},
    )
    assert result.code == 5, result.text
    assert "contains a value of a secret" in result.text
    assert TENANT not in result.text
    assert "tenant-pw" not in result.text
    assert not dest.exists()
    assert dev_server.request_count(path_prefix="/v1/secret/data/tenants") == 0


def test_a_path_built_from_a_name_still_renders(dev_server: DevServer, workdir: Path) -> None:
    """KV2-AC-399: the same template shape with the tenant from the environment renders."""
    dev_server.put(f"tenants/{TENANT}", {"password": "tenant-pw"})
    dest = workdir / "out"
    contents = (
        '{{ with secret (printf "secret/data/tenants/%s" (env "TENANT")) }}'
        "{{ .Data.data.password }}{{ end }}"
    )
    cfg = write_config(
        workdir,
        {
            "vault": {"address": dev_server.url},
            "template": [
                {"contents": contents, "syntax": "consul-template", "destination": str(dest)}
            ],
        },
    )
    result = run_cli(
        ["--config", str(cfg), "--once"], {"VAULT_TOKEN": dev_server.root_token, "TENANT": TENANT}
    )
    assert result.code == 0, result.text
    assert dest.read_text() == "tenant-pw"
