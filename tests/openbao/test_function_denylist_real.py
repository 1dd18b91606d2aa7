"""``function_denylist`` against the real OpenBao Agent (KV2-AC-483, KV2-INV-496, KV2-FC-496).

ONE agent HCL file per case, run by ``bao agent`` (OpenBao 2.7.2) and by ``kv2render --once``,
each in its own folder, against a private ``bao server -dev`` holding a sentinel secret. The
agent is told to stop on a template error (``template_config { exit_on_retry_failure }``,
``retry { num_retries = 0 }``; it would retry for minutes otherwise). A template that runs a
denied function is refused by both at the same line and column with consul-template's
``error calling NAME: function is disabled``; one that does not run it renders the same bytes.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.realbao import BaoServer, run_one_shot, unique

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]
SENTINEL = "s3ntinel-DENY-8d1f"  # the secret value: never in an error or a log line

# consul-template's execute error: "template: NAME:LINE:COL: executing ... at <CALL>: ..."
_POSITION = re.compile(r":(\d+):(\d+): executing \S* at <([^>]*)>: ([^\"\n]*)")


def _config(server: BaoServer, out: Path, body: str, keys: str) -> Path:
    out.mkdir()
    (out / "tok").write_text(server.root_token)
    path = out / "agent.hcl"
    path.write_text(
        f'vault {{\n  address = "{server.address}"\n  retry {{\n    num_retries = 0\n  }}\n}}\n'
        "exit_after_auth = true\n"
        "template_config {\n  exit_on_retry_failure = true\n}\n"
        f'auto_auth {{\n  method "token_file" {{\n    config {{\n'
        f'      token_file_path = "{out}/tok"\n    }}\n  }}\n}}\n'
        f'template {{\n  destination = "{out}/out"\n  perms = 0600\n  {keys}\n'
        f"  contents = <<EOT\n{body}EOT\n}}\n",
        encoding="utf-8",
    )
    return path


def _run(tool: str, config: Path) -> subprocess.CompletedProcess[str]:
    return run_one_shot(tool, config, {"DENY_T": "from-env"})


def _both(server: BaoServer, tmp: Path, body: str, keys: str) -> dict[str, Any]:
    runs = {}
    for tool in ("agent", "kv2render"):
        out = tmp / tool
        runs[tool] = (_run(tool, _config(server, out, body, keys)), out / "out")
    return runs


@pytest.fixture
def secret_path(bao_fresh_server: BaoServer) -> str:
    path = unique("deny")
    bao_fresh_server.kv_put(path, {"password": SENTINEL})
    return f"secret/data/{path}"


@pytest.mark.parametrize(
    ("keys", "call", "function"),
    [
        ('function_denylist = ["env"]', '{{ env "DENY_T" }}', "env"),
        ('function_blacklist = ["toUpper"]', '{{ "x" | toUpper }}', "toUpper"),
        ('function_denylist = "nosuch,toLower"', "{{ .Data.data.password | toLower }}", "toLower"),
    ],
    ids=["denylist-env", "blacklist-alias", "comma-string"],
)
def test_a_denied_call_is_refused_by_both_at_the_same_place(
    bao_fresh_server: BaoServer,
    secret_path: str,
    tmp_path: Path,
    keys: str,
    call: str,
    function: str,
) -> None:
    """KV2-AC-483 KV2-INV-496 KV2-FC-496: both tools fail the template at the denied call's
    line and column with `error calling NAME: function is disabled`; kv2render exits 5,
    neither writes the file, and the secret's value is in no output."""
    body = f'{{{{ with secret "{secret_path}" }}}}a\n  {call}\n{{{{ end }}}}\n'
    runs = _both(bao_fresh_server, tmp_path, body, keys)
    found = {}
    for tool, (result, out) in runs.items():
        # The agent's log line quotes the error (error="..."): its quotes come escaped.
        text = (result.stdout + result.stderr).replace('\\"', '"')
        assert result.returncode != 0, (tool, text[-2000:])
        assert not out.exists(), tool
        assert SENTINEL not in text, tool
        match = _POSITION.search(text)
        assert match is not None, (tool, text[-2000:])
        found[tool] = match.groups()
    assert runs["kv2render"][0].returncode == 5
    assert found["kv2render"] == found["agent"]
    assert found["agent"][0] == "2"  # the call's line
    assert found["agent"][3] == f"error calling {function}: function is disabled"


def test_a_denylist_not_executed_or_of_go_builtins_renders_the_same_bytes(
    bao_fresh_server: BaoServer, secret_path: str, tmp_path: Path
) -> None:
    """KV2-AC-483 KV2-INV-496: a denied `env` inside a false `if` is never called, and
    `printf`/`len` (Go built-ins, outside consul-template's function map) cannot be denied:
    both tools render the same bytes, the secret's value included."""
    body = (
        f'{{{{ with secret "{secret_path}" }}}}{{{{ .Data.data.password }}}}{{{{ end }}}}\n'
        '{{ if false }}{{ env "DENY_T" }}{{ end }}'
        '{{ printf "%d-%s" 7 "x" }} {{ len "abc" }} {{ "up" | toUpper }}\n'
    )
    runs = _both(bao_fresh_server, tmp_path, body, 'function_denylist = ["env", "printf", "len"]')
    for tool, (result, _) in runs.items():
        assert result.returncode == 0, (tool, result.stdout[-2000:], result.stderr[-2000:])
    rendered = {tool: out.read_bytes() for tool, (_, out) in runs.items()}
    assert rendered["kv2render"] == rendered["agent"] == f"{SENTINEL}\n7-x 3 UP\n".encode()
