"""auto_auth.sink "file" against the real OpenBao Agent (issue 16, KV2-AC-498).

ONE agent HCL file (an AppRole method, two file sinks, one template, ``exit_after_auth``)
is run by ``bao agent -config=FILE`` (OpenBao 2.7.2) and by
``python -m kv2render --config FILE --once``, each with its own output folder, against the
same private ``bao server -dev``. The tokens differ between the tools, so what is compared
is the shape: a bare token with no newline, the mode (0640 by default, ``mode = 0600``),
the owner (``uid``/``gid``), that the token works for ``auth/token/lookup-self``, and that
a second run (a new login) rewrites the file with a new working token.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.realbao import BaoApiError, BaoServer, run_one_shot

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]


def _approle(server: BaoServer, tmp: Path) -> tuple[Path, Path]:
    server.enable_auth("approle")
    server.put_policy("app", 'path "secret/data/app/*" { capabilities = ["read"] }')
    server.api("POST", "auth/approle/role/web", {"token_policies": ["app"], "token_ttl": "5m"})
    role_id = server.api("GET", "auth/approle/role/web/role-id")["data"]["role_id"]
    secret_id = server.api("POST", "auth/approle/role/web/secret-id", {})["data"]["secret_id"]
    (tmp / "role").write_text(role_id)
    (tmp / "sid").write_text(secret_id)
    return tmp / "role", tmp / "sid"


def _config(server: BaoServer, tmp: Path, out: Path) -> Path:
    role, sid = _approle(server, tmp)
    out.mkdir()
    uid, gid = os.getuid(), os.getgid()
    path = out / "agent.hcl"
    path.write_text(
        f"""
vault {{
  address = "{server.address}"
}}
exit_after_auth = true
auto_auth {{
  method "approle" {{
    config {{
      role_id_file_path = "{role}"
      secret_id_file_path = "{sid}"
      remove_secret_id_file_after_reading = false
    }}
  }}
  sink "file" {{
    config {{
      path = "{out}/token"
    }}
  }}
  sink "file" {{
    config {{
      path = "{out}/token600"
      mode = 0600
      uid = {uid}
      gid = {gid}
    }}
  }}
}}
template {{
  contents = "{{{{with secret \\"secret/data/app/db\\"}}}}{{{{.Data.data.password}}}}{{{{end}}}}"
  destination = "{out}/pw"
  perms = 0600
}}
""",
        encoding="utf-8",
    )
    return path


def _run(tool: str, config: Path, server: BaoServer) -> subprocess.CompletedProcess[str]:
    return run_one_shot(tool, config)


def _works(server: BaoServer, token: str) -> bool:
    try:
        server.api("GET", "auth/token/lookup-self", token=token)
    except BaoApiError:
        return False
    return True


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_sink_files_match_the_real_agent(bao_fresh_server: BaoServer, tmp_path: Path) -> None:
    """KV2-AC-498: the same agent file gives the same sink files with both tools: the bare
    token (no newline) that works for lookup-self, mode 0640 by default and 0600 when set,
    the uid/gid asked for; a second run (a new login) rewrites them with a new token."""
    server = bao_fresh_server
    server.kv_put("app/db", {"password": "pw-1"})
    seen: dict[str, tuple[str, int, int, tuple[int, int]]] = {}
    for tool in ("agent", "kv2render"):
        out = tmp_path / tool
        config = _config(server, tmp_path, out)
        first = _run(tool, config, server)
        assert first.returncode == 0, (tool, first.stdout[-2000:], first.stderr[-2000:])
        token = (out / "token").read_text()
        assert token == token.strip() and token and "\n" not in token, tool
        assert (out / "token600").read_text() == token, tool
        assert _works(server, token), tool
        assert (out / "pw").read_text() == "pw-1", tool
        st = os.stat(out / "token600")
        seen[tool] = (
            "bare",
            _mode(out / "token"),
            _mode(out / "token600"),
            (st.st_uid, st.st_gid),
        )
        second = _run(tool, config, server)
        assert second.returncode == 0, (tool, second.stderr[-2000:])
        renewed = (out / "token").read_text()
        assert renewed != token and _works(server, renewed), tool
        if tool == "kv2render":  # the agent's own logs are not ours to judge
            assert token not in first.stdout + first.stderr, "token in kv2render's output"
    assert (
        seen["agent"]
        == seen["kv2render"]
        == (
            "bare",
            0o640,
            0o600,
            (os.getuid(), os.getgid()),
        )
    )
