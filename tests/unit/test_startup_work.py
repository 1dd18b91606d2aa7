"""Work a start-up does not do: issue 18, "faster than the real OpenBao Agent" (KV2-NFR-240,
KV2-NFR-241, KV2-NFR-242). Each test checks the behaviour stays the same while the work goes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kv2render import hardening
from kv2render.config import TemplateSpec
from kv2render.daemon.service import Watcher
from kv2render.daemon.ticks import FilesChanged, QueueTicks, TickEvent
from kv2render.devserver import DevServer
from kv2render.model import SecretVersion
from kv2render.output.writer import any_stale_temp_files, stale_temp_files, temp_file_name
from kv2render.refs import SecretLocation
from kv2render.render.ctmpl.lexer import Lexer
from kv2render.render.prepare import prepare_one
from tests.integration.cli_helpers import cli_env


def test_leftover_check_lists_each_folder_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-AC-240: --once's leftover check lists a folder once however many outputs it holds,
    and still finds a killed run's temp file (KV2-INV-280)."""
    out = tmp_path / "out"
    out.mkdir()
    dests = [out / f"t{i:04d}.conf" for i in range(50)]
    for dest in dests:
        dest.write_text("x")
    (out / "notes.kv2render-x.tmp").write_text("not ours: no 16 hex digits")
    listed: list[str] = []
    real = os.listdir

    def counting(path: str | os.PathLike[str]) -> list[str]:
        listed.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "listdir", counting)
    assert any_stale_temp_files(dests) is False
    assert listed == [str(out)]
    leftover = temp_file_name("t0007.conf")
    (out / leftover).write_text("half")
    assert any_stale_temp_files(dests) is True
    assert stale_temp_files(out, "t0007.conf") == [leftover]
    assert stale_temp_files(out, "t0008.conf") == []
    assert any_stale_temp_files([tmp_path / "missing" / "x"]) is False


def _ctmpl_spec(tmp_path: Path, contents: str) -> TemplateSpec:
    return TemplateSpec(
        index=0, destination=tmp_path / "out", contents=contents, syntax="consul-template"
    )


def test_command_environment_is_taken_only_when_a_template_calls_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-AC-241: a consul-template render copies the environment only when the template
    calls env; env still sees the commands' environment, without the token (KV2-INV-101)."""
    token = "s.SENTINEL-startup-token"
    monkeypatch.setenv("VAULT_TOKEN", token)
    monkeypatch.setenv("KV2RENDER_TEST_VISIBLE", "seen")
    calls: list[int] = []
    real = hardening.command_environment

    def counting(base: object = None) -> dict[str, str]:
        calls.append(1)
        return real()

    monkeypatch.setattr(hardening, "command_environment", counting)
    loc = SecretLocation("secret", "app")
    secrets = {loc: SecretVersion(loc, 1, {"password": "pw"})}
    plain = prepare_one(
        _ctmpl_spec(
            tmp_path, '{{ with secret "secret/data/app" }}{{ .Data.data.password }}{{ end }}'
        )
    )
    assert plain.render(secrets) == b"pw"
    assert calls == []
    with_env = prepare_one(
        _ctmpl_spec(
            tmp_path,
            '{{ env "KV2RENDER_TEST_VISIBLE" }}/{{ env "VAULT_TOKEN" }}/'
            '{{ env "KV2RENDER_TEST_VISIBLE" }}',
        )
    )
    out = with_env.render({})
    assert out == b"seen//seen"
    assert token.encode() not in out
    assert calls == [1]  # once per render, not once per env call


def test_lazy_environment_is_a_mapping_without_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KV2-AC-241: the lazy view answers as command_environment() does."""
    monkeypatch.setenv("BAO_TOKEN", "s.SENTINEL-bao")
    env = hardening.LazyCommandEnvironment()
    assert dict(env) == hardening.command_environment()
    assert "BAO_TOKEN" not in env
    assert len(env) == len(hardening.command_environment())


def test_watcher_starts_after_the_first_pass_and_sees_edits_made_before(
    tmp_path: Path,
) -> None:
    """KV2-AC-242: the daemon's file watch starts once the first pass is over (the loop's
    first wait), and an edit made before that is still reported."""
    watched = tmp_path / "tmpl.ctmpl"
    watched.write_text("v1")
    events: list[TickEvent] = []
    got = threading.Event()

    def emit(event: TickEvent) -> None:
        events.append(event)
        got.set()

    ticks = QueueTicks()
    watcher = Watcher(emit, start_after=ticks.waiting)
    try:
        watcher.update([watched])
        time.sleep(0.05)
        watched.write_text("v2, longer")  # edited while the first pass still runs
        assert not got.wait(0.6), "the watcher reported before the first pass ended"
        assert ticks.wait(0) == []  # the loop's first wait: the pass is over
        assert got.wait(10), "the edit made before the watch started was lost"
        assert any(
            isinstance(e, FilesChanged) and os.path.normpath(watched) in e.paths for e in events
        )
    finally:
        watcher.close()


def test_watcher_stopped_before_the_first_pass_ends_quietly(tmp_path: Path) -> None:
    """KV2-AC-242: a daemon stopped during its first pass does not wait for the watcher."""
    watched = tmp_path / "tmpl.ctmpl"
    watched.write_text("v1")
    watcher = Watcher(lambda _e: None, start_after=threading.Event())
    watcher.update([watched])
    started = time.monotonic()
    watcher.close()
    assert time.monotonic() - started < 1.0


def test_lexer_tokens_unchanged_and_linear_on_a_large_template() -> None:
    """KV2-AC-243: trim markers and delimiters lex as before; a 125 KB template lexes in
    linear time (no copy of the rest of the input per token)."""
    small = Lexer("a {{- .X -}} b {{/* c */}} {{ .Y }}\n{{- 'z' }}").run()
    # What the lexer gave before the change (Go text/template's tokens).
    assert [(i.typ.name, i.val) for i in small] == [
        ("TEXT", "a"),
        ("LEFT_DELIM", "{{"),
        ("FIELD", ".X"),
        ("RIGHT_DELIM", "}}"),
        ("TEXT", "b "),
        ("TEXT", " "),
        ("LEFT_DELIM", "{{"),
        ("SPACE", " "),
        ("FIELD", ".Y"),
        ("SPACE", " "),
        ("RIGHT_DELIM", "}}"),
        ("LEFT_DELIM", "{{"),
        ("CHAR_CONSTANT", "'z'"),
        ("SPACE", " "),
        ("RIGHT_DELIM", "}}"),
        ("EOF", ""),
    ]
    trimmed = Lexer("{{- /* c */ -}}  x").run()
    assert [(i.typ.name, i.val) for i in trimmed] == [("TEXT", "x"), ("EOF", "")]
    unit = "x {{- .Data.data.a -}} y\n"
    started = time.perf_counter()
    items = Lexer(unit * 500).run()
    small_time = time.perf_counter() - started
    started = time.perf_counter()
    big = Lexer(unit * 5000).run()
    big_time = time.perf_counter() - started
    assert len(big) == 10 * (len(items) - 2) + 2  # six tokens per unit, plus TEXT and EOF
    # Linear: 10x the input in well under 100x the time (quadratic was ~25x at this size).
    assert big_time < 40 * max(small_time, 0.001)


_ONCE_NEVER = (
    "kv2render.output.status",
    "kv2render.daemon",
    "kv2render.devserver",
    "kv2render.render.jinja",
    "jinja2",
    "yaml",
    "watchfiles",
    "prometheus_client",
)


def test_once_on_agent_hcl_imports_only_what_it_uses(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-AC-244: --once on an agent HCL config (consul-template, token_file), without a pid
    file and with no leftover temp file, in a fresh interpreter, never imports the status
    module, the daemon, the dev server, Jinja2, PyYAML, watchfiles or prometheus_client."""
    dev_server.put("app/db", {"password": "pw-lean"})
    token = tmp_path / "token"
    token.write_text(dev_server.root_token, encoding="utf-8")
    token.chmod(0o600)
    dest = tmp_path / "out"
    config = tmp_path / "agent.hcl"
    contents = '{{ with secret \\"secret/data/app/db\\" }}{{ .Data.data.password }}{{ end }}'
    config.write_text(
        f'vault {{\n  address = "{dev_server.url}"\n}}\n'
        'auto_auth {\n  method "token_file" {\n    config {\n'
        f'      token_file_path = "{token}"\n    }}\n  }}\n}}\n'
        f'template {{\n  contents = "{contents}"\n  destination = "{dest}"\n}}\n',
        encoding="utf-8",
    )
    script = (
        "import json, sys\nfrom kv2render.cli import main\n"
        f"code = main(['--config', {str(config)!r}, '--once'])\n"
        f"never = {_ONCE_NEVER!r}\n"
        "print(json.dumps([code, sorted(m for m in sys.modules "
        "if any(m == n or m.startswith(n + '.') for n in never))]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=cli_env({}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    code, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 0, proc.stderr
    assert loaded == []
    assert dest.read_text() == "pw-lean"
