"""KV2-AC-414: the "Try it locally" blocks of docs/targets/ and the quickstart config's own
comment run as written against a real OpenBao server.

Each shell block is executed by bash with ``set -e``; only the line that starts the server is
replaced by the fixture's server, and its address by the fixture's. ``vault`` and ``bao`` are
the real ``bao`` binary (it takes the same commands and the ``VAULT_*`` variables), and
``kv2render`` runs this source tree. The quickstart folder is copied, so nothing is written
into the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.realbao import BaoServer, bao_binary, bao_env

pytestmark = pytest.mark.openbao

REPO = Path(__file__).resolve().parents[2]
PGPASS = "db.internal:5432:appdb:app:s3cr3t\\:with\\\\odd chars\n"


def _shell_block(doc: Path, heading: str) -> str:
    text = doc.read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, f"no sh block under {heading!r} in {doc}"
    return match.group(1)


def _toolbox(tmp_path: Path) -> Path:
    """A bin/ folder: vault and bao are the real binary, kv2render is this source tree."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("vault", "bao"):
        (tools / name).symlink_to(bao_binary())
    wrapper = tools / "kv2render"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m kv2render "$@"\n')
    wrapper.chmod(0o755)
    return tools


def _run(
    script: str, cwd: Path, tools: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    full_env = bao_env(
        {
            "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(REPO),
            "HOME": str(cwd),
            **env,
        }
    )
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_quickstart_outputs(out: Path) -> None:
    names = sorted(p.name for p in out.iterdir())
    assert names == ["app.env", "config.json", "db-password", "pgpass"]
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (out / "db-password").read_bytes() == b"s3cr3t:with\\odd chars"
    assert (out / "pgpass").read_text() == PGPASS


@pytest.mark.parametrize("doc", ["vault.md", "openbao.md"])
def test_try_it_locally_runs_as_written(
    doc: str, bao_fresh_server: BaoServer, tmp_path: Path
) -> None:
    """KV2-AC-414"""
    block = _shell_block(REPO / "docs" / "targets" / doc, "Try it locally")
    lines = block.strip().splitlines()
    assert re.match(r"^(vault|bao) server -dev\b.*&$", lines[0]), lines[0]
    script = "\n".join(lines[1:]).replace("http://127.0.0.1:8200", bao_fresh_server.address)
    shutil.copytree(REPO / "examples" / "quickstart", tmp_path / "examples" / "quickstart")
    proc = _run(script, tmp_path, _toolbox(tmp_path), {})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _assert_quickstart_outputs(tmp_path / "examples" / "quickstart" / "out")
    assert "s3cr3t" not in proc.stderr  # the value reaches the files only


def test_quickstart_comment_command_runs(bao_fresh_server: BaoServer, tmp_path: Path) -> None:
    """KV2-AC-414: the command in examples/quickstart/kv2render.yaml's header comment."""
    config = (REPO / "examples" / "quickstart" / "kv2render.yaml").read_text(encoding="utf-8")
    match = re.search(r"and run in this folder:\n#\s+(.+)\n", config)
    assert match, "the quickstart config's comment names the command to run"
    bao_fresh_server.kv_put(
        "app/db",
        {
            "username": "app",
            "password": "s3cr3t:with\\odd chars",
            "host": "db.internal",
            "port": "5432",
            "database": "appdb",
        },
    )
    bao_fresh_server.kv_put("app/config", {"api_key": "quickstart-api-key"})
    folder = tmp_path / "quickstart"
    shutil.copytree(REPO / "examples" / "quickstart", folder)
    proc = _run(
        match.group(1),
        folder,
        _toolbox(tmp_path),
        {"VAULT_ADDR": bao_fresh_server.address, "VAULT_TOKEN": bao_fresh_server.root_token},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _assert_quickstart_outputs(folder / "out")
