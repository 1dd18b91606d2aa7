"""Agent options of issue 16 against the real OpenBao Agent (KV2-AC-496).

ONE agent HCL file, run by ``bao agent`` (OpenBao 2.7.2) and by ``kv2render --once``,
each in its own folder, against a private ``bao server -dev``: template ``command`` in the
three shapes consul-template decodes differently (a string with commas is argv, a string
without is a shell line, a one-item list is a shell line too). What each command wrote is
compared.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.realbao import BaoServer, run_one_shot

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]


def _config(server: BaoServer, out: Path) -> Path:
    out.mkdir()
    (out / "tok").write_text(server.root_token)
    path = out / "agent.hcl"
    path.write_text(
        f"""
vault {{
  address = "{server.address}"
}}
exit_after_auth = true
auto_auth {{
  method "token_file" {{
    config {{
      token_file_path = "{out}/tok"
    }}
  }}
}}
template {{
  contents = "a"
  destination = "{out}/a"
  perms = 0600
  command = "sh,-c,echo argv $# > {out}/ran-a"
}}
template {{
  contents = "b"
  destination = "{out}/b"
  perms = 0600
  command = "echo shell line > {out}/ran-b"
}}
template {{
  contents = "c"
  destination = "{out}/c"
  perms = 0600
  command = ["echo one item > {out}/ran-c"]
}}
""",
        encoding="utf-8",
    )
    return path


def _run(tool: str, config: Path) -> subprocess.CompletedProcess[str]:
    return run_one_shot(tool, config)


def test_command_shapes_run_as_the_real_agent_runs_them(
    bao_fresh_server: BaoServer, tmp_path: Path
) -> None:
    """KV2-AC-496, KV2-INV-492: ``"sh,-c,..."`` runs sh with its arguments, a string without
    a comma and a one-item list run in a shell: the same files with both tools."""
    seen = {}
    for tool in ("agent", "kv2render"):
        out = tmp_path / tool
        result = _run(tool, _config(bao_fresh_server, out))
        assert result.returncode == 0, (tool, result.stdout[-2000:], result.stderr[-2000:])
        seen[tool] = {name: (out / name).read_text() for name in ("ran-a", "ran-b", "ran-c")}
    assert (
        seen["agent"]
        == seen["kv2render"]
        == {
            "ran-a": "argv 0\n",
            "ran-b": "shell line\n",
            "ran-c": "one item\n",
        }
    )
