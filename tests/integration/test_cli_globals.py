"""Global options: ``--log-level``/``--log-format`` anywhere, ``--version``, the top-level usage.

Issue 14, item 10. Real CLI entry point (in-process ``cli.main``, or ``python -m kv2render``
where the process boundary matters); the dev server is the real embedded one.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import pytest

from kv2render.cli import SUBCOMMANDS
from kv2render.devserver import DevServer

from .cli_helpers import cli_env, run_cli, run_cli_subprocess, write_config


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _valid_config(workdir: Path, address: str = "https://vault.invalid:8200") -> Path:
    return write_config(
        workdir,
        {
            "vault": {"address": address},
            "template": [{"ref": "vault+kv2:///secret/data/app#k", "destination": "out"}],
        },
    )


@pytest.mark.parametrize("where", ["before", "after"])
def test_check_takes_global_options_before_and_after(workdir: Path, where: str) -> None:
    """KV2-AC-401 KV2-INV-395: ``kv2render --log-format json check ...`` and ``kv2render check
    ... --log-format json`` both give JSON on stdout and JSON log lines on stderr."""
    cfg = _valid_config(workdir)
    options = ["--log-format", "json", "--log-level", "debug"]
    tail = ["check", "--config", str(cfg)]
    argv = [*options, *tail] if where == "before" else [*tail, *options]
    result = run_cli(argv)
    assert result.code == 0, result.text
    out = _json_lines(result.out)
    assert out[-1]["valid"] is True
    # the debug level took effect too: check warns that no token source is set (stderr)
    err = _json_lines(result.err)
    assert any(line["level"] == "warning" for line in err), result.err


@pytest.mark.parametrize("where", ["before", "after"])
def test_render_mode_takes_global_options_anywhere(
    dev_server: DevServer, workdir: Path, where: str
) -> None:
    """KV2-AC-401 KV2-INV-395: the render mode (no sub-command) takes them on either side of
    its own options; ``--log-level debug`` shows the DEBUG lines."""
    dev_server.put("app", {"k": "value-1"})
    cfg = _valid_config(workdir, dev_server.url)
    own = ["--config", str(cfg), "--once"]
    options = ["--log-level", "debug", "--log-format", "json"]
    argv = [*options, *own] if where == "before" else [*own, *options]
    result = run_cli(argv, {"VAULT_TOKEN": dev_server.root_token})
    assert result.code == 0, result.text
    levels = {line["level"] for line in _json_lines(result.err)}
    assert "debug" in levels and "info" in levels


def test_convert_takes_global_options_after(workdir: Path) -> None:
    """KV2-AC-401: a sub-command with a positional argument, options after it."""
    source = workdir / "t.ctmpl"
    source.write_text('{{ with secret "secret/data/app" }}{{ .Data.data.k }}{{ end }}\n')
    result = run_cli(["convert", str(source), "--log-level", "warn", "--log-format", "json"])
    assert result.code == 0, result.text
    assert "secret" in result.out
    missing = run_cli(["convert", str(workdir / "nope.ctmpl"), "--log-format", "json"])
    assert missing.code == 2
    assert _json_lines(missing.err)[0]["level"] == "error"


@pytest.mark.parametrize("where", ["before", "after"])
def test_dev_server_takes_global_options(workdir: Path, where: str) -> None:
    """KV2-AC-401 KV2-INV-395: ``dev-server`` accepts the global options on either side and
    its request log follows ``--log-format json``."""
    options = ["--log-format", "json"]
    own = ["dev-server", "--listen", "127.0.0.1:0"]
    argv = [*options, *own] if where == "before" else [*own, *options]
    proc = subprocess.Popen(
        [sys.executable, "-m", "kv2render", *argv],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not address:
            line = proc.stdout.readline()
            if line.startswith("VAULT_ADDR="):
                address = line.split("=", 1)[1].strip()
        assert address, "the dev server did not start"
        import urllib.error
        import urllib.request

        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(f"{address}/v1/secret/data/none", timeout=10)  # noqa: S310
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert proc.returncode == 0, err
    lines = _json_lines(err)
    assert lines, err
    assert any(str(line["msg"]).startswith("GET /v1/secret/data/none") for line in lines), err


def test_version_comes_from_the_package_metadata() -> None:
    """KV2-AC-401 KV2-INV-395: ``--version`` prints the installed distribution's version,
    exit 0, also after a global option."""
    expected = f"kv2render {metadata.version('kv2render')}"
    result = run_cli_subprocess(["--version"])
    assert result.code == 0, result.text
    assert result.out.strip() == expected
    assert run_cli(["--log-level", "debug", "--version"]).out.strip() == expected


def test_top_level_usage_lists_every_subcommand() -> None:
    """KV2-AC-401 KV2-INV-395 KV2-FC-110: the usage line names every sub-command, in
    ``--help`` and in a usage error (exit 2)."""
    help_result = run_cli(["--help"])
    assert help_result.code == 0
    usage = help_result.out.split("\n\n", 1)[0]
    error = run_cli(["--no-such-option"])
    assert error.code == 2
    for command in SUBCOMMANDS:
        assert command in usage, usage
        assert command in error.err, error.err
    assert "--log-level" in run_cli(["check", "--help"]).out


@pytest.mark.parametrize(
    ("variable", "value"), [("KV2RENDER_LOG_LEVEL", "loud"), ("KV2RENDER_LOG_FORMAT", "xml")]
)
def test_bad_log_variable_is_a_usage_error(workdir: Path, variable: str, value: str) -> None:
    """KV2-FC-408: a log variable outside its choices exits 2 naming it, not 1."""
    cfg = _valid_config(workdir)
    result = run_cli(["check", "--config", str(cfg)], {variable: value})
    assert result.code == 2, result.text
    assert variable in result.err


def test_usage_error_is_a_json_line_in_json_format() -> None:
    """KV2-AC-115 KV2-INV-113 KV2-FC-110: under --log-format json a usage error is one JSON
    log line naming the problem and the usage, exit 2."""
    result = run_cli(["--log-format", "json", "check", "--bogus"])
    assert result.code == 2
    (record,) = _json_lines(result.err)
    assert record["level"] == "error"
    assert "unrecognized arguments: --bogus" in str(record["msg"])
    assert "usage: kv2render check" in str(record["msg"])
