"""Log lines an operator reads: one event per line, no jargon, counts that agree, commands'
output kept out of the log stream, third-party chatter at DEBUG (issue 14, item 11).

Real CLI entry point against the embedded dev server; real commands; real watchfiles.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import time
from pathlib import Path

import pytest

from kv2render import logsetup
from kv2render.devserver import DevServer

from .cli_helpers import run_cli, write_config

SENTINEL = "S3NTINEL-command-output-4b1d"
REF = "vault+kv2:///secret/data/app/db#password"


def _json_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def seeded(dev_server: DevServer) -> DevServer:
    dev_server.put("app/db", {"password": SENTINEL})
    return dev_server


def _env(server: DevServer) -> dict[str, str]:
    return {"VAULT_ADDR": server.url, "VAULT_TOKEN": server.root_token}


# -- one event, one line ---------------------------------------------------------------------


def test_text_formatter_escapes_every_line_break() -> None:
    """KV2-INV-396: whatever the message holds (the real OpenBao's error text here), a text
    log record is one line; JSON is one object per line."""
    server_text = "1 error occurred:\n\t* permission denied\n\n"
    for fmt in ("text", "json"):
        stream = io.StringIO()
        logsetup.configure("info", fmt, stream=stream)
        try:
            logging.getLogger("kv2render.test").error("read failed: %s", server_text)
            logging.getLogger("kv2render.test").warning("bell\x07 and \u2028 separator")
        finally:
            logsetup.unconfigure()
        lines = stream.getvalue().splitlines()
        assert len(lines) == 2, lines
        if fmt == "text":
            assert lines[0].endswith(r"read failed: 1 error occurred:\n\t* permission denied\n\n")
            assert r"bell\x07 and \u2028 separator" in lines[1]
        else:
            assert json.loads(lines[0])["msg"] == f"read failed: {server_text}"


# -- a command's output ----------------------------------------------------------------------


def _command_config(workdir: Path, command: str) -> Path:
    return write_config(
        workdir,
        {"template": [{"ref": REF, "destination": str(workdir / "pw"), "command": command}]},
    )


def test_command_output_never_mixes_into_json_logs(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-403 KV2-INV-397 KV2-INV-112: under --log-format json --log-level debug every
    line kv2render writes is JSON; the command's lines are DEBUG records with ``stream``;
    the secret it prints reads [redacted]; a multi-line stdout stays one record per line."""
    cfg = _command_config(
        workdir, f"echo plain line; cat {workdir / 'pw'}; echo; echo on-stderr >&2; echo done"
    )
    result = run_cli(
        ["--config", str(cfg), "--once", "--log-format", "json", "--log-level", "debug"],
        _env(seeded),
    )
    assert result.code == 0, result.text
    assert result.out == ""  # stdout is for a sub-command's own output only
    records = _json_lines(result.err)  # raises on any raw line
    output = [r for r in records if "stream" in r]
    by_stream = {(r["stream"], str(r["msg"]).rsplit(": ", 1)[-1]) for r in output}
    assert ("stdout", "plain line") in by_stream
    assert ("stderr", "on-stderr") in by_stream
    assert ("stdout", "[redacted]") in by_stream
    assert all(r["level"] == "debug" for r in output)
    assert SENTINEL not in result.text


def test_command_output_is_bounded_and_absent_at_info(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-403 KV2-INV-397: 200 lines at most, then one note; the command is not blocked
    by a full pipe; at info level none of its output appears anywhere."""
    # what it prints is computed, so it cannot be confused with the command's own text
    cfg = _command_config(workdir, "seq 100001 105000; echo $((6 * 7))-on-stderr >&2")
    debug = run_cli(["--config", str(cfg), "--once", "--log-level", "debug"], _env(seeded))
    assert debug.code == 0, debug.err[-2000:]
    output = [line for line in debug.err.splitlines() if ".command std" in line]
    assert len(output) == 200
    assert debug.err.count("further output not logged (limit 200 lines)") == 1
    (workdir / "pw").unlink()
    info = run_cli(["--config", str(cfg), "--once", "--log-format", "json"], _env(seeded))
    assert info.code == 0, info.text
    assert info.out == ""
    assert not any("stream" in r for r in _json_lines(info.err))
    assert "104999" not in info.text and "42-on-stderr" not in info.text


def test_failed_command_hints_at_debug_and_the_summary_counts_it(
    seeded: DevServer, workdir: Path
) -> None:
    """KV2-AC-404 KV2-INV-399 KV2-INV-397: the pass summary counts the failed command and its
    counts agree with their nouns; the ERROR line says how to see the command's output."""
    cfg = _command_config(workdir, "echo $((6 * 7))-why-it-failed >&2; exit 3")
    result = run_cli(["--config", str(cfg), "--once"], _env(seeded))
    assert result.code == 7, result.text
    assert "42-why-it-failed" not in result.text
    assert "exited with status 3; run with --log-level debug to log its output" in result.err
    summary = [line for line in result.err.splitlines() if "pass complete" in line]
    assert len(summary) == 1, result.err
    assert summary[0].endswith(
        "pass complete: 1 template: 1 written, 0 unchanged, 0 failed; "
        "1 command run, 1 failed; 1 secret read"
    )


# -- no jargon -------------------------------------------------------------------------------


def test_token_source_is_named_as_the_operator_set_it(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-404 KV2-INV-399: the login line and check name VAULT_TOKEN (or BAO_TOKEN),
    never ``token_env``."""
    cfg = write_config(workdir, {"template": [{"ref": REF, "destination": "pw"}]})
    once = run_cli(["--config", str(cfg), "--once", "--log-level", "trace"], _env(seeded))
    assert once.code == 0, once.text
    assert "login ok: VAULT_TOKEN from the environment" in once.err
    check = run_cli(["check", "--config", str(cfg)], _env(seeded))
    assert "auth VAULT_TOKEN from the environment" in check.out
    bao = run_cli(
        ["check", "--config", str(cfg)],
        {"VAULT_ADDR": seeded.url, "BAO_TOKEN": seeded.root_token},
    )
    assert "auth BAO_TOKEN from the environment" in bao.out
    assert "1 template," in check.out and "1 unique secret," in check.out
    for result in (once, check, bao):
        assert "token_env" not in result.text


# -- watchfiles' own lines -------------------------------------------------------------------


def _watch_once(tmp_path: Path, level: str) -> str:
    """Run kv2render's file watcher over one real edit; return what was logged."""
    from kv2render.daemon.service import Watcher

    tmp_path.mkdir()
    stream = io.StringIO()
    logsetup.configure(level, "text", stream=stream)
    events: queue.Queue[object] = queue.Queue()
    watched = tmp_path / "template.j2"
    watched.write_text("one")
    watcher = Watcher(events.put)
    try:
        watcher.update([watched])
        time.sleep(0.6)  # the OS watch is in place after the first timeout tick
        watched.write_text("two")
        events.get(timeout=20)
    finally:
        watcher.close()
        logsetup.unconfigure()
    return stream.getvalue()


def _through_watchfiles_logger(level: str) -> str:
    """watchfiles' own INFO record, as ``watchfiles.main`` emits it, through kv2render's set-up."""
    stream = io.StringIO()
    logsetup.configure(level, "text", stream=stream)
    try:
        logging.getLogger("watchfiles.main").info("%d change%s detected: %s", 1, "", "{...}")
    finally:
        logsetup.unconfigure()
    return stream.getvalue()


def test_watchfiles_info_lines_are_debug(tmp_path: Path) -> None:
    """KV2-AC-405 KV2-INV-396: watchfiles' "1 change detected" is not an INFO line: absent at
    info, a DEBUG line at debug. The record is emitted on watchfiles' own logger, so the test
    does not depend on which of the watcher's two paths (the OS watch or the stat check that
    closes its start-up race) noticed an edit."""
    at_info = _through_watchfiles_logger("info")
    assert "change detected" not in at_info, at_info
    at_debug = _through_watchfiles_logger("debug")
    lines = [line for line in at_debug.splitlines() if "change detected" in line]
    assert lines, at_debug
    assert all("[DEBUG] watchfiles" in line for line in lines), lines
    # and the real watcher, over a real edit, never logs it at INFO
    assert "change detected" not in _watch_once(tmp_path / "a", "info")
