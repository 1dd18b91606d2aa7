"""HCL integers as the real OpenBao Agent reads them (KV2-AC-481, KV2-INV-495).

ONE agent HCL file, run by ``bao agent`` (OpenBao 2.7.2) and by ``kv2render --once``, each in
its own folder, against a private ``bao server -dev``: templates with ``perms = 0640`` (octal,
a leading zero), ``perms = 420`` (decimal, 0644), ``perms = 0x1A4`` (hexadecimal, 0644) and
``perms = "0600"`` (a string, octal), and token sinks with ``mode = 0640`` and ``mode = 420``.
The file modes each tool wrote are compared. Before, kv2render read ``420`` as 0420.
"""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from tests.realbao import BaoServer, run_one_shot

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]

PERMS = {"octal": "0640", "decimal": "420", "hex": "0x1A4", "string": '"0600"'}
SINK_MODES = {"sink-octal": "0640", "sink-decimal": "420"}
EXPECTED = {
    "octal": 0o640,
    "decimal": 0o644,
    "hex": 0o644,
    "string": 0o600,
    "sink-octal": 0o640,
    "sink-decimal": 0o644,
}


def _config(server: BaoServer, out: Path) -> Path:
    out.mkdir()
    (out / "tok").write_text(server.root_token)
    sinks = "".join(
        f'  sink "file" {{\n    config {{\n      path = "{out}/{name}"\n      mode = {mode}\n'
        "    }\n  }\n"
        for name, mode in SINK_MODES.items()
    )
    templates = "".join(
        f'template {{\n  contents = "{name}"\n  destination = "{out}/{name}"\n'
        f"  perms = {perms}\n}}\n"
        for name, perms in PERMS.items()
    )
    path = out / "agent.hcl"
    path.write_text(
        f'vault {{\n  address = "{server.address}"\n}}\nexit_after_auth = true\n'
        f'auto_auth {{\n  method "token_file" {{\n    config {{\n'
        f'      token_file_path = "{out}/tok"\n    }}\n  }}\n{sinks}}}\n{templates}',
        encoding="utf-8",
    )
    return path


def _run(tool: str, config: Path) -> subprocess.CompletedProcess[str]:
    return run_one_shot(tool, config)


def test_perms_and_sink_modes_are_the_modes_the_real_agent_writes(
    bao_fresh_server: BaoServer, tmp_path: Path
) -> None:
    """KV2-AC-481 KV2-INV-495: ``perms = 0640`` is 0640, ``perms = 420`` and ``0x1A4`` are
    0644, ``perms = "0600"`` is 0600, a sink's ``mode = 0640`` is 0640 and ``mode = 420`` 0644:
    the same modes with both tools, read from the files they wrote."""
    seen = {}
    for tool in ("agent", "kv2render"):
        out = tmp_path / tool
        result = _run(tool, _config(bao_fresh_server, out))
        assert result.returncode == 0, (tool, result.stdout[-2000:], result.stderr[-2000:])
        seen[tool] = {name: stat.S_IMODE((out / name).stat().st_mode) for name in EXPECTED}
    assert {k: oct(v) for k, v in seen["agent"].items()} == {k: oct(v) for k, v in EXPECTED.items()}
    assert seen["kv2render"] == seen["agent"]
    # The rendered bytes agree too (the sinks hold different tokens: one login each).
    for name in PERMS:
        assert (tmp_path / "agent" / name).read_text() == name
        assert (tmp_path / "kv2render" / name).read_text() == name


def test_an_illegal_octal_number_is_refused_by_both(
    bao_fresh_server: BaoServer, tmp_path: Path
) -> None:
    """KV2-AC-480 KV2-INV-495: ``perms = 0680`` (an 8 after a leading zero) is refused by the
    agent ("illegal octal number") and by kv2render (exit 2, naming the line); nothing is
    written by either."""
    for tool in ("agent", "kv2render"):
        out = tmp_path / tool
        config = _config(bao_fresh_server, out)
        text = config.read_text().replace("perms = 0640", "perms = 0680")
        config.write_text(text, encoding="utf-8")
        line = text[: text.index("perms = 0680")].count("\n") + 1
        result = _run(tool, config)
        assert not (out / "octal").exists()
        if tool == "agent":
            assert result.returncode != 0
            assert "illegal octal number" in result.stdout + result.stderr
        else:
            assert result.returncode == 2, result.stderr[-2000:]
            assert f"{config}:{line}" in result.stderr
            assert "illegal octal number" in result.stderr
