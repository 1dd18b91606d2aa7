"""Docs that run: the README's commands work as written, and docs match the CLI.

(STYLE.md convention 14, after watchfiles' test_docs.py.)
"""

from __future__ import annotations

import re
import shlex
import stat
from pathlib import Path

import pytest

from kv2render.cli import SUBCOMMANDS

from .integration.cli_helpers import REPO, run_cli_subprocess

README = REPO / "README.md"


def _code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def test_readme_opens_with_the_two_commands() -> None:
    """KV2-AC-119: the README opens with an install+render command and the test command."""
    blocks = _code_blocks(README.read_text(), "sh")
    first, second = blocks[0].strip(), blocks[1].strip()
    assert first.startswith("pip install . && kv2render quickstart")
    assert second == "pip install '.[test]' && pytest"


def test_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    """KV2-AC-119: the quickstart renders for real and prints metadata only."""
    command = _code_blocks(README.read_text(), "sh")[0].strip().split("&&", 1)[1]
    argv = shlex.split(command)
    assert argv[0] == "kv2render"
    out = tmp_path / "out"
    argv = [*argv[1:-1], str(out)] if argv[-2] == "--out" else [*argv[1:], "--out", str(out)]
    result = run_cli_subprocess(argv, env={"PWD": str(REPO)}, timeout=120)
    assert result.code == 0, result.text
    written = sorted(p.name for p in out.iterdir())
    assert written == ["app.env", "config.json", "db-password", "pgpass"]
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        # what it shows is metadata: no rendered content on stdout or stderr
        content = path.read_text().strip()
        for line in content.splitlines():
            if len(line.strip()) > 6 and "{" not in line and "}" not in line:
                assert line.strip() not in result.text, f"{path.name} content printed"
    assert (out / "db-password").read_bytes() == b"s3cr3t:with\\odd chars"


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_is_documented_and_has_help(command: str) -> None:
    """KV2-AC-119: each sub-command answers --help and appears in the README's table."""
    assert f"`kv2render {command}" in README.read_text()
    result = run_cli_subprocess([command, "--help"])
    assert result.code == 0, result.text
    assert "usage:" in result.out


def test_top_level_help_names_the_subcommands() -> None:
    result = run_cli_subprocess(["--help"])
    assert result.code == 0
    for command in SUBCOMMANDS:
        assert command in result.out


def test_relative_links_in_docs_exist() -> None:
    """Every relative link in README.md and docs/ points at a file that exists."""
    broken = []
    for doc in [README, *sorted((REPO / "docs").rglob("*.md"))]:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            if not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO)} -> {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_global_options_match_help() -> None:
    """KV2-AC-401 KV2-INV-395: the README's global options are the ones ``--help`` shows,
    with the same choices, and every sub-command's --help lists them too."""
    readme = README.read_text()
    top = run_cli_subprocess(["--help"]).out
    for option in ("--log-level {trace,debug,info,warn,error}", "--log-format {text,json}"):
        assert f"`{option}`" in readme
        assert option in top
    assert "kv2render --version" in readme and "--version" in top
    for command in ("check", "convert"):
        sub = run_cli_subprocess([command, "--help"]).out
        assert "global options (before or after the sub-command)" in sub
