"""Issue 18's lean start: what `--once` imports and creates, the batched folder fsync, the
short agent notices, and the lexer's fast paths (KV2-AC-520..523)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kv2render import runner
from kv2render.config import TemplateSpec, load
from kv2render.devserver import DevServer
from kv2render.model import SecretVersion
from kv2render.output.writer import write_atomic
from kv2render.refs import SecretLocation
from kv2render.render.ctmpl.lexer import lex
from kv2render.render.prepare import prepare_one
from tests.integration.cli_helpers import cli_env

SENTINEL = "SENTINEL-lean-start-7f3a"

# Every kv2render module `--once` loads for an agent HCL config with one consul-template
# template and token_file auth. A module added to this path must be added here on purpose
# (KV2-NFR-520): import it lazily where only some configs need it.
ONCE_HCL_MODULES = frozenset(
    {
        "kv2render",
        "kv2render._version",
        "kv2render.app",
        "kv2render.authority",
        "kv2render.cli",
        "kv2render.config",
        "kv2render.config.agent",
        "kv2render.config.auth",
        "kv2render.config.build",
        "kv2render.config.hcl",
        "kv2render.config.listener",
        "kv2render.config.methods",
        "kv2render.config.optional",
        "kv2render.config.sources",
        "kv2render.config.values",
        "kv2render.errors",
        "kv2render.hardening",
        "kv2render.jsonnum",
        "kv2render.logsetup",
        "kv2render.model",
        "kv2render.output",
        "kv2render.output.dirchecks",
        "kv2render.output.instance",
        "kv2render.output.sink",
        "kv2render.output.writer",
        "kv2render.payload",
        "kv2render.redact",
        "kv2render.refs",
        "kv2render.render",
        "kv2render.render.computed",
        "kv2render.render.ctmpl",
        "kv2render.render.ctmpl.exec",
        "kv2render.render.ctmpl.funcs",
        "kv2render.render.ctmpl.gofmt",
        "kv2render.render.ctmpl.lexer",
        "kv2render.render.ctmpl.nodes",
        "kv2render.render.ctmpl.parser",
        "kv2render.render.ctmpl.values",
        "kv2render.render.prepare",
        "kv2render.runner",
        "kv2render.shown",
        "kv2render.store",
        "kv2render.store.auth",
        "kv2render.store.backoff",
        "kv2render.store.client",
        "kv2render.store.credentials",
        "kv2render.store.login",
        "kv2render.store.network",
        "kv2render.store.responses",
        "kv2render.store.retries",
        "kv2render.store.transport",
    }
)
# Loaded only by the configs and templates that use them (each was on this path before).
ONCE_HCL_NEVER = (
    "kv2render.config.supervise",
    "kv2render.config.logins",
    "kv2render.output.commands",
    "kv2render.render.ctmpl.gojson",
    "kv2render.render.ctmpl.gotime",
    "decimal",
    "signal",
)
# Dataclasses defined by the kv2render modules of this path: 59 before issue 18's lean
# start, each ~0.3-0.5 ms of import (generated methods are compiled at class creation).
ONCE_HCL_MAX_DATACLASSES = 20

_PROBE = """
import json, sys
from kv2render.cli import main
code = main(['--config', sys.argv[1], '--once'])
own = sorted(m for m in sys.modules if m == 'kv2render' or m.startswith('kv2render.'))
dataclasses = sorted(
    f'{m}.{name}'
    for m in own
    for name, value in vars(sys.modules[m]).items()
    if isinstance(value, type) and value.__module__ == m and '__dataclass_fields__' in vars(value)
)
never = [m for m in json.loads(sys.argv[2]) if m in sys.modules]
print(json.dumps([code, own, dataclasses, never]))
"""


def _agent_config(tmp_path: Path, server: DevServer, count: int) -> Path:
    token = tmp_path / "token"
    token.write_text(server.root_token, encoding="utf-8")
    token.chmod(0o600)
    blocks = "".join(
        "template {\n"
        '  contents = "{{ with secret \\"secret/data/app/db\\" }}'
        '{{ .Data.data.password }}{{ end }}"\n'
        f'  destination = "{tmp_path / "out" / f"t{i}.conf"}"\n'
        "}\n"
        for i in range(count)
    )
    config = tmp_path / "agent.hcl"
    config.write_text(
        f'vault {{\n  address = "{server.url}"\n}}\n'
        'auto_auth {\n  method "token_file" {\n    config {\n'
        f'      token_file_path = "{token}"\n    }}\n  }}\n}}\n' + blocks,
        encoding="utf-8",
    )
    return config


def test_once_on_agent_hcl_loads_a_pinned_set_of_modules_and_dataclasses(
    dev_server: DevServer, tmp_path: Path
) -> None:
    """KV2-AC-520, KV2-NFR-520: `--once` on an agent HCL config (one consul-template
    template, token_file), in a fresh interpreter, loads exactly ONCE_HCL_MODULES of
    kv2render, none of the lazily loaded modules, and defines at most 20 dataclasses."""
    dev_server.put("app/db", {"password": SENTINEL})
    config = _agent_config(tmp_path, dev_server, 1)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, str(config), json.dumps(ONCE_HCL_NEVER)],
        env=cli_env({}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    code, own, dataclasses, never = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 0, proc.stderr
    assert (tmp_path / "out" / "t0.conf").read_text(encoding="utf-8") == SENTINEL
    added = sorted(set(own) - ONCE_HCL_MODULES)
    gone = sorted(ONCE_HCL_MODULES - set(own))
    assert not added, f"--once now also imports {added}: import them where they are needed"
    assert not gone, f"--once no longer imports {gone}: remove them from ONCE_HCL_MODULES"
    assert never == []
    assert len(dataclasses) <= ONCE_HCL_MAX_DATACLASSES, dataclasses
    assert SENTINEL not in proc.stderr


def test_lazily_loaded_modules_still_load_when_a_template_needs_them(tmp_path: Path) -> None:
    """KV2-AC-520: toJSON, timestamp and a printed float load gojson, gotime and decimal on
    first use and render as before."""
    loc = SecretLocation("secret", "app")
    secrets = {loc: SecretVersion(loc, 1, {"password": SENTINEL, "n": 1.5})}
    spec = TemplateSpec(
        index=0,
        destination=tmp_path / "out",
        syntax="consul-template",
        contents=(
            '{{ with secret "secret/data/app" }}{{ .Data.data | toJSON }} '
            '{{ printf "%v" 2.5 }} {{ timestamp "2006" | len }}{{ end }}'
        ),
    )
    out = prepare_one(spec).render(secrets).decode()
    assert out == '{"n":1.5,"password":"' + SENTINEL + '"} 2.5 4'
    for name in ("gojson", "gotime"):
        assert f"kv2render.render.ctmpl.{name}" in sys.modules
    assert "decimal" in sys.modules


def _spec(index: int, destination: Path) -> TemplateSpec:
    return TemplateSpec(
        index=index,
        destination=destination,
        syntax="consul-template",
        contents='{{ with secret "secret/data/app" }}{{ .Data.data.password }}{{ end }}',
    )


def test_a_pass_fsyncs_each_folder_once_after_its_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-521, KV2-INV-520: a pass writing three files in one folder and one in another
    fsyncs each file's content before its rename, then each folder once, after the last
    rename of the pass; a template whose write fails costs only itself. No secret value is
    logged."""
    caplog.set_level(logging.DEBUG)
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(mode=0o700)
    two.mkdir(mode=0o700)
    (one / "busy").mkdir()  # a destination that is a directory: that write fails
    dests = [one / "a", one / "b", two / "c", one / "busy", one / "d"]
    loc = SecretLocation("secret", "app")
    secrets = {loc: SecretVersion(loc, 1, {"password": SENTINEL})}
    jobs = [(prepare_one(_spec(i, d)), secrets) for i, d in enumerate(dests)]

    calls: list[tuple[str, str]] = []
    dir_fds: dict[int, str] = {}
    real_open, real_fsync, real_replace = os.open, os.fsync, os.replace

    def spy_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        if flags & os.O_DIRECTORY:
            dir_fds[fd] = Path(path).name
        else:
            dir_fds.pop(fd, None)  # a closed folder's descriptor number is reused
        return fd

    def spy_fsync(fd: int) -> None:
        calls.append(("fsync-dir", dir_fds[fd]) if fd in dir_fds else ("fsync-file", ""))
        real_fsync(fd)

    def spy_replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(("replace", Path(dst).name))
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    results = runner.render_all(jobs, concurrency=2)
    monkeypatch.undo()

    assert [r.did_write for r in results] == [True, True, True, False, True]
    assert results[3].error is not None and results[4].error is None
    for dest in (one / "a", one / "b", two / "c", one / "d"):
        assert dest.read_text(encoding="utf-8") == SENTINEL
    folder_syncs = [name for kind, name in calls if kind == "fsync-dir"]
    assert sorted(folder_syncs) == ["one", "two"]
    last_replace = max(i for i, (kind, _) in enumerate(calls) if kind == "replace")
    first_folder_sync = min(i for i, (kind, _) in enumerate(calls) if kind == "fsync-dir")
    assert first_folder_sync > last_replace
    assert [kind for kind, _ in calls].count("fsync-file") == 4
    assert SENTINEL not in caplog.text
    assert all(SENTINEL not in str(r) for r in results)


def test_a_pass_cut_short_still_fsyncs_the_folders_it_wrote_into(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-AC-521, KV2-INV-520: Ctrl-C (or any BaseException) during a pass, after a file
    was renamed into place: that file's folder is fsynced before the exception goes on, as
    write_atomic alone would have done."""
    from kv2render.output import writer

    loc = SecretLocation("secret", "app")
    secrets = {loc: SecretVersion(loc, 1, {"password": SENTINEL})}
    jobs = [(prepare_one(_spec(i, tmp_path / f"f{i}")), secrets) for i in range(2)]
    synced: list[Path] = []
    real_render = runner.render_template

    def render(item: Any, *args: Any, **kwargs: Any) -> Any:
        if item.spec.index == 1:
            raise KeyboardInterrupt
        return real_render(item, *args, **kwargs)

    monkeypatch.setattr(runner, "render_template", render)
    monkeypatch.setattr(writer, "fsync_directory", synced.append)
    with pytest.raises(KeyboardInterrupt):
        runner.render_all(jobs, concurrency=1)
    assert (tmp_path / "f0").read_text(encoding="utf-8") == SENTINEL
    assert synced == [tmp_path]


def test_write_atomic_alone_and_a_given_writer_keep_their_own_folder_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-AC-521, KV2-INV-091: write_atomic called alone still fsyncs the folder after its
    rename, and a pass given a writer of its own (a daemon hook) is not batched."""
    folder_syncs: list[int] = []
    dir_fds: set[int] = set()
    real_open, real_fsync = os.open, os.fsync

    def spy_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        fd = real_open(path, flags, *args, **kwargs)
        if flags & os.O_DIRECTORY:
            dir_fds.add(fd)
        else:
            dir_fds.discard(fd)  # a closed folder's descriptor number is reused
        return fd

    def spy_fsync(fd: int) -> None:
        if fd in dir_fds:
            folder_syncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fsync", spy_fsync)
    assert write_atomic(tmp_path / "alone", b"x")
    assert len(folder_syncs) == 1
    loc = SecretLocation("secret", "app")
    secrets = {loc: SecretVersion(loc, 1, {"password": SENTINEL})}
    jobs = [(prepare_one(_spec(i, tmp_path / f"w{i}")), secrets) for i in range(3)]
    written: list[Path] = []

    def own_writer(path: Path, data: bytes, **options: Any) -> bool:
        written.append(path)
        return write_atomic(path, data, **options)

    runner.render_all(jobs, concurrency=1, write=own_writer)
    monkeypatch.undo()
    assert len(written) == 3
    assert len(folder_syncs) == 4  # one per write_atomic call: nothing batched


def test_agent_notices_name_at_most_four_templates(
    tmp_path: Path, dev_server: DevServer, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-AC-522, KV2-INV-521: an agent config of 100 templates without
    error_on_missing_key or perms gets one short line per notice: the first two templates,
    the last and the count; four or fewer are all named."""
    caplog.set_level(logging.INFO)
    load(_agent_config(tmp_path, dev_server, 100))
    lines = [r.getMessage() for r in caplog.records if "error_on_missing_key is false" in r.message]
    assert len(lines) == 1
    assert lines[0].startswith("template[0], template[1], ..., template[99] (100 in all): ")
    assert "template[50]" not in lines[0]
    perms = [r.getMessage() for r in caplog.records if "no perms set" in r.getMessage()]
    assert len(perms) == 1 and perms[0].startswith("template[0], template[1], ..., template[99]")
    caplog.clear()
    small = tmp_path / "small"
    small.mkdir()
    load(_agent_config(small, dev_server, 4))
    lines = [r.getMessage() for r in caplog.records if "error_on_missing_key is false" in r.message]
    assert lines[0].startswith("template[0], template[1], template[2], template[3]: ")


# Tokens of the lexer before its fast paths (KV2-AC-523), spaces left out: quoted strings
# with escapes, character constants, non-ASCII letters and digits after ASCII ones, and the
# errors of an unterminated or broken string.
_LEX_CASES: list[tuple[str, list[tuple[str, str]]]] = [
    (
        '{{ secret "secret/data/a\\"b\\\\c" }}',
        [("IDENTIFIER", "secret"), ("STRING", '"secret/data/a\\"b\\\\c"')],
    ),
    ("{{ 'x' '\\'' }}", [("CHAR_CONSTANT", "'x'"), ("CHAR_CONSTANT", "'\\''")]),
    (
        "{{ .Dataé.naïve_1 $vär }}",
        [("FIELD", ".Dataé"), ("FIELD", ".naïve_1"), ("VARIABLE", "$vär")],
    ),
    ('{{ "unterminated ' + SENTINEL + " }}", [("ERROR", "unterminated quoted string")]),
    ('{{ "line\nbreak" }}', [("ERROR", "unterminated quoted string")]),
    ('{{ "ends with backslash\\', [("ERROR", "unterminated quoted string")]),
    ('{{ `raw "q" \\ ` }}', [("RAW_STRING", '`raw "q" \\ `')]),
    (
        '{{ $x := .A_b9.c }}{{ printf "%d" 12 }}',
        [
            ("VARIABLE", "$x"),
            ("DECLARE", ":="),
            ("FIELD", ".A_b9"),
            ("FIELD", ".c"),
            ("RIGHT_DELIM", "}}"),
            ("LEFT_DELIM", "{{"),
            ("IDENTIFIER", "printf"),
            ("STRING", '"%d"'),
            ("NUMBER", "12"),
        ],
    ),
    ("{{ .a٣ }}", [("FIELD", ".a٣")]),
    ("{{ abc$ }}", [("ERROR", "bad character U+0024 '$'")]),
]


@pytest.mark.parametrize(("text", "expected"), _LEX_CASES)
def test_lexer_fast_paths_give_the_same_tokens(text: str, expected: list[tuple[str, str]]) -> None:
    """KV2-AC-523, KV2-NFR-521: runs of plain characters taken in one match give the tokens
    and errors the per-character lexer gave; an error never quotes the string's text."""
    tokens = [(t.typ.name, t.val) for t in lex(text) if t.typ.name != "SPACE"]
    body = tokens[1:]  # the first {{
    if body and body[-1] == ("EOF", ""):
        body = body[:-2]  # the last }} and EOF
    assert tokens[0] == ("LEFT_DELIM", "{{")
    assert body == expected
    assert all(SENTINEL not in val for typ, val in tokens if typ == "ERROR")


def test_lexer_counts_lines_across_fast_runs() -> None:
    """KV2-AC-523: line numbers after quoted strings and words are as before."""
    tokens = lex('{{ "a" }}\n{{ .B }}\n\n{{ "c\\"" x }}')
    lines = {t.val: t.line for t in tokens if t.typ.name in ("STRING", "FIELD", "IDENTIFIER")}
    assert lines == {'"a"': 1, ".B": 2, '"c\\""': 4, "x": 4}
