"""Acceptance rules that no other test proved on its own (docs/spec/acceptance-tests.md).

Each test cites the rule it proves. The CLI cases run ``kv2render --once`` in-process against
the dev server over a real socket; the consul-template cases replay the Go-generated corpus
(tests/ctmpl/corpus), so the expected bytes are Go's, not ours.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kv2render import cli
from kv2render.devserver import DevServer
from kv2render.errors import (
    AuthError,
    CommandError,
    ConfigError,
    Kv2RenderError,
    RenderError,
    SecretReadError,
    TemplateSyntaxError,
    WriteError,
)
from kv2render.render.ctmpl import compile_ctmpl, render_ctmpl
from kv2render.render.jinja import compile_template

from ..ctmpl.corpus_util import FIXED_NOW, MODES, Case, load_cases
from .cli_helpers import cli_env, run_cli, write_config

PACKAGE = Path(__file__).resolve().parents[2] / "kv2render"
CASES = {case.name: case for case in load_cases()}
PASSWORD = "S3NT1NEL-secret-gaps"


def token_env(server: DevServer) -> dict[str, str]:
    return {"VAULT_ADDR": server.url, "VAULT_TOKEN": server.root_token}


@pytest.fixture
def seeded(dev_server: DevServer) -> DevServer:
    dev_server.put("app/db", {"username": "app", "password": PASSWORD})
    return dev_server


def once(cfg: Path, server: DevServer) -> tuple[int, str]:
    result = run_cli(["--config", str(cfg), "--once"], token_env(server))
    return result.code, result.err


# -- store boundary -----------------------------------------------------------------------------


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_store_modules_import_hvac_or_requests() -> None:
    """KV2-AC-069, KV2-INV-050: an AST scan of every package module (lazy imports inside
    functions included) finds hvac only in store/client.py, and requests and urllib3 only in
    the store's modules (kv2render/store/: the hvac boundary and its transport, response and
    network-error mapping)."""
    store = PACKAGE / "store"
    offenders = {
        str(path.relative_to(PACKAGE.parent)): sorted(found)
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.parent != store
        and (found := _imported_modules(path) & {"hvac", "requests", "urllib3"})
    }
    assert not offenders, f"modules importing the HTTP stack outside the store: {offenders}"
    hvac_users = sorted(
        str(path.relative_to(PACKAGE.parent))
        for path in PACKAGE.rglob("*.py")
        if "hvac" in _imported_modules(path)
    )
    assert hvac_users == ["kv2render/store/client.py"], hvac_users
    # the scan sees lazy imports: client.py's are all inside functions
    assert {"hvac", "requests"} <= _imported_modules(store / "client.py")
    # auth.py builds login requests and reaches the network only through the store
    assert not _imported_modules(store / "auth.py") & {"hvac", "requests", "urllib3"}


def test_environment_token_is_never_sent_when_auto_auth_is_configured(
    seeded: DevServer, workdir: Path
) -> None:
    """KV2-AC-038, KV2-INV-033: with `auto_auth`, a VAULT_TOKEN/BAO_TOKEN in the environment is
    never sent: a one-use token there is still unused after the run."""
    env_tokens = {name: seeded.create_token(num_uses=1) for name in ("VAULT_TOKEN", "BAO_TOKEN")}
    token_file = workdir / "token"
    token_file.write_text(seeded.root_token + "\n")
    cfg = write_config(
        workdir,
        {
            "auto_auth": {
                "method": {"type": "token_file", "config": {"token_file_path": str(token_file)}}
            },
            "template": [{"ref": "vault+kv2:///secret/data/app/db#password", "destination": "pw"}],
        },
    )
    result = run_cli(["--config", str(cfg), "--once"], {"VAULT_ADDR": seeded.url, **env_tokens})
    assert result.code == 0, result.text
    assert (workdir / "pw").read_text() == PASSWORD
    for token in env_tokens.values():
        request = urllib.request.Request(
            seeded.url + "/v1/auth/token/lookup-self", headers={"X-Vault-Token": token}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:  # 403 if already used
            assert answer.status == 200


# -- templates ----------------------------------------------------------------------------------


def test_contents_renders_exactly_like_a_source_file(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-082: the same text inline (`contents:`) and in a `source` file gives the same
    bytes, trailing newline and whitespace control included."""
    text = (
        "user={{ kv2('vault+kv2:///secret/data/app/db#username') }}\n"
        "{%- set d = secret('secret/data/app/db') %}\n"
        "pw={{ d.Data.data.password }} v{{ d.Data.metadata.version }}\n"
    )
    (workdir / "t.j2").write_text(text, encoding="utf-8")
    cfg = write_config(
        workdir,
        {
            "template": [
                {"contents": text, "destination": "inline.txt"},
                {"source": "t.j2", "destination": "file.txt"},
            ]
        },
    )
    code, err = once(cfg, seeded)
    assert code == 0, err
    inline = (workdir / "inline.txt").read_bytes()
    assert inline == (workdir / "file.txt").read_bytes()
    assert inline == f"user=app\npw={PASSWORD} v1\n".encode()


def test_undefined_name_in_an_untaken_branch_is_a_compile_error() -> None:
    """KV2-AC-076, KV2-FC-074: an undefined name is refused when the template is compiled
    (exit 2, name:line), even in a branch that never runs and with error_on_missing_key off."""
    for lenient in (False, True):
        with pytest.raises(TemplateSyntaxError) as info:
            compile_template(
                "ok\n{% if false %}\n{{ pasword }}{% endif %}",
                name="t.j2",
                error_on_missing_key=not lenient,
            )
        assert info.value.exit_code == 2
        assert str(info.value).startswith("t.j2:3: ") and "'pasword' is undefined" in str(
            info.value
        )


# -- commands -----------------------------------------------------------------------------------


def test_argv_command_runs_without_a_shell_and_string_with_bin_sh(
    seeded: DevServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-AC-101: an argv list reaches the program verbatim (no expansion, no `;`), a string
    runs as `/bin/sh -c STRING` (its `$0` is /bin/sh and variables expand)."""
    monkeypatch.setenv("KV2_GAPS_WORD", "expanded")
    argv_out, shell_out = workdir / "argv.json", workdir / "shell.txt"
    writer = "import json, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))"
    cfg = write_config(
        workdir,
        {
            "template": [
                {
                    "contents": "a",
                    "destination": "a.txt",
                    "command": [sys.executable, "-c", writer, str(argv_out), "$KV2_GAPS_WORD;x"],
                },
                {
                    "contents": "b",
                    "destination": "b.txt",
                    "command": f'printf "%s|%s" "$0" "$KV2_GAPS_WORD" > {shell_out}',
                },
            ]
        },
    )
    code, err = once(cfg, seeded)
    assert code == 0, err
    assert json.loads(argv_out.read_text()) == ["$KV2_GAPS_WORD;x"]
    assert shell_out.read_text() == "/bin/sh|expanded"


def test_failing_command_exits_7_naming_template_and_status(
    seeded: DevServer, workdir: Path
) -> None:
    """KV2-AC-104, KV2-FC-093: a command exiting 3 makes the run exit 7, the message names the
    template and status 3, and the file it followed stays written."""
    cfg = write_config(
        workdir,
        {
            "template": [
                {"ref": "vault+kv2:///secret/data/app/db#username", "destination": "ok"},
                {
                    "ref": "vault+kv2:///secret/data/app/db#password",
                    "destination": "pw",
                    "command": ["/bin/sh", "-c", "exit 3"],
                },
            ]
        },
    )
    code, err = once(cfg, seeded)
    assert code == 7, err
    assert "template[1].command" in err and "status 3" in err
    assert (workdir / "pw").read_text() == PASSWORD
    assert (workdir / "ok").read_text() == "app"
    assert PASSWORD not in err


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie is dead; only its parent's wait is missing


def test_timed_out_command_is_killed_with_its_children(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-103, KV2-INV-100, KV2-FC-093: past `command_timeout` the command and the child it
    started are killed, the run exits 7 saying it timed out, and the written file stays."""
    child = workdir / "child.pid"
    cfg = write_config(
        workdir,
        {
            "template": [
                {
                    "ref": "vault+kv2:///secret/data/app/db#password",
                    "destination": "pw",
                    "command": f"sleep 60 & echo $! > {child}; wait",
                    "command_timeout": "1s",
                }
            ]
        },
    )
    started = time.monotonic()
    code, err = once(cfg, seeded)
    assert code == 7, err
    assert time.monotonic() - started < 30
    assert "timed out after 1s" in err and "template[0].command" in err
    assert (workdir / "pw").read_text() == PASSWORD
    pid = int(child.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid), "the command's child outlived the timeout"


def test_shared_command_runs_once_per_pass(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-106, KV2-INV-096: two changed templates naming the same command run it once;
    a different command still runs."""
    log = workdir / "runs.log"
    shared = f"echo shared >> {log}"
    cfg = write_config(
        workdir,
        {
            "template": [
                {"contents": "1", "destination": "one", "command": shared},
                {"contents": "2", "destination": "two", "command": shared},
                {"contents": "3", "destination": "three", "command": f"echo other >> {log}"},
            ]
        },
    )
    code, err = once(cfg, seeded)
    assert code == 0, err
    assert log.read_text().splitlines() == ["shared", "other"]
    # nothing changed on the second pass: no command at all
    code, err = once(cfg, seeded)
    assert code == 0, err
    assert log.read_text().splitlines() == ["shared", "other"]


# -- CLI ----------------------------------------------------------------------------------------


def test_each_written_file_is_one_info_line_with_location_version_destination(
    seeded: DevServer, workdir: Path
) -> None:
    """KV2-AC-110, KV2-INV-114: `--once` exits 0 and logs one INFO line per written file,
    `rendered <mount>/<path>@v<N> -> <destination>`; an unchanged file is no INFO line."""
    seeded.put("app/db", {"username": "app", "password": PASSWORD})  # version 2
    cfg = write_config(
        workdir,
        {
            "template": [
                {"ref": "vault+kv2:///secret/data/app/db#password", "destination": "pw"},
                {"ref": "vault+kv2:///secret/data/app/db#username", "destination": "user"},
            ]
        },
    )
    code, err = once(cfg, seeded)
    assert code == 0, err
    rendered = [line for line in err.splitlines() if "[INFO]" in line and "rendered" in line]
    assert [line.split("rendered ", 1)[1] for line in rendered] == [
        f"secret/app/db@v2 -> {workdir / 'pw'}",
        f"secret/app/db@v2 -> {workdir / 'user'}",
    ]
    code, err = once(cfg, seeded)
    assert code == 0, err
    assert " rendered " not in err
    assert PASSWORD not in err


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (Kv2RenderError("x"), 1),
        (ConfigError("x"), 2),
        (AuthError("x"), 3),
        (SecretReadError("x"), 4),
        (RenderError("x"), 5),
        (WriteError("x"), 6),
        (CommandError("x"), 7),
        (RuntimeError("a bug"), 1),
    ],
)
def test_each_error_class_maps_to_its_exit_code(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, code: int
) -> None:
    """KV2-AC-111, KV2-INV-110: `cli.main` turns each error class into its documented code
    (1 unexpected, 2 config, 3 auth, 4 read, 5 render, 6 write, 7 command)."""

    def failing(args: object) -> int:
        raise error

    monkeypatch.setattr(cli, "_cmd_run", failing)
    result = run_cli(["--config", str(workdir / "unused.yaml"), "--once"])
    assert result.code == code, result.err
    assert "Traceback" not in result.err


def test_once_never_imports_watchfiles(seeded: DevServer, workdir: Path) -> None:
    """KV2-AC-117, KV2-NFR-110: a real `--once` in a fresh interpreter leaves `watchfiles`,
    `hcl2` and the dev server out of sys.modules."""
    template = {"ref": "vault+kv2:///secret/data/app/db#username", "destination": "u"}
    cfg = write_config(workdir, {"template": [template]})
    script = (
        "import json, sys\n"
        "from kv2render.cli import main\n"
        f"code = main(['--config', {str(cfg)!r}, '--once'])\n"
        "print(json.dumps([code, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('watchfiles', 'hcl2') or m.startswith('kv2render.devserver'))]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=cli_env(token_env(seeded)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    code, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert code == 0, proc.stderr
    assert (workdir / "u").read_text() == "app"
    assert loaded == []


@pytest.mark.parametrize(
    ("template", "place", "fix"),
    [
        (
            {"contents": '{{ kv2("vault+kv2:///secret/data/app/db#nope") }}'},
            "template[0].contents:1",
            "key 'nope' not found in secret secret/app/db",
        ),
        (
            {"ref": "vault+kv2:///secret/data/app/gone#password"},
            "template[0]",
            "secret/app/gone",
        ),
    ],
)
def test_expected_failure_is_one_line_without_traceback(
    seeded: DevServer, workdir: Path, template: dict[str, str], place: str, fix: str
) -> None:
    """KV2-AC-118: at the default log level an expected failure is one ERROR line naming the
    place and what to fix, with no traceback and no secret value."""
    cfg = write_config(workdir, {"template": [{**template, "destination": "out"}]})
    code, err = once(cfg, seeded)
    assert code in (4, 5), err
    errors = [line for line in err.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1, err
    assert place in errors[0] and fix in errors[0]
    assert "Traceback" not in err
    assert PASSWORD not in err
    assert not (workdir / "out").exists()


# -- consul-template semantics, against Go's own output ------------------------------------------


def _render(case: Case, mode: str) -> str:
    tpl = compile_ctmpl(
        case.template,
        name=case.name,
        left_delim=case.left_delim,
        right_delim=case.right_delim,
        error_on_missing_key=mode == "error",
    )
    return render_ctmpl(tpl, case.secrets, env=case.env, now=lambda: FIXED_NOW)


def go_output(name: str, *constructs: str, mode: str = "zero") -> str:
    """Render corpus case `name` and return Go's bytes, after checking that ours are equal in
    both modes and that the template really uses each construct the caller relies on."""
    case = CASES[name]
    for construct in constructs:
        assert construct in case.template, f"{name} no longer uses {construct!r}"
    for each in MODES:
        out, err = case.expected(each)
        if out is None:
            with pytest.raises(RenderError) as info:
                _render(case, each)
            assert str(info.value) == (err or "").removeprefix("template: ")
        else:
            assert _render(case, each).encode("utf-8", "surrogateescape") == out
    out, err = case.expected(mode)
    assert out is not None, f"{name} fails in mode {mode}: {err}"
    return out.decode("utf-8", "surrogateescape")


def test_range_over_a_map_is_bytewise_sorted() -> None:
    """KV2-AC-252: `range $k, $v := .Data.data` visits keys in byte order (upper case, then
    `_`, then lower case), as Go sorts map keys."""
    text = go_output("03-dotenv-range", "range $k, $v := .Data.data")
    keys = [line.split("=", 1)[0] for line in text.splitlines() if line]
    assert keys == sorted(keys, key=lambda k: k.encode())
    assert keys.index("Zeta") < keys.index("_private") < keys.index("a-b")


def test_if_uses_go_truthiness() -> None:
    """KV2-AC-253: JSON 0 and "false" are true; "", false, null, an empty list and a missing
    key are false."""
    text = go_output("08-if-else-if", "if .Data.data.zero", "if .Data.data.false_string")
    assert text.splitlines() == [
        "verbose",  # debug is false
        "zero is true",
        '"false" is true',
        "empty is false",
        "null is false",
        "empty list is false",
    ]
    missing = go_output("39-missing-in-if", "if .Data.data.optional")
    assert "no optional" in missing


def test_variables_comments_and_trim_markers_follow_go() -> None:
    """KV2-AC-254: `$x :=`, reassignment `$n = $i`, `$` (the root), `{{/* */}}` comments and
    the `{{-`/`-}}` trim markers produce Go's bytes."""
    variables = go_output("09-variables", "$n = $i", "{{- $db := secret")
    assert "user=app last=2" in variables
    assert "line1\nline2 line3" in go_output("24-comments", "{{/* a comment */}}")
    trimmed = go_output("23-trim-markers", "{{- /* comment with trim */ -}}")
    assert trimmed.splitlines() == ["[app]", "A x B", "3<4end"]


def test_builtin_functions_match_go() -> None:
    """KV2-AC-255: index, printf verbs, env, and/or/not and the comparisons print what Go
    prints, and `eq` on a JSON number and an int fails with Go's error."""
    printf = go_output("10-printf-verbs", 'printf "%q"', 'printf "%s|%v')
    assert printf.splitlines()[0] == '"s3cr3t<&>\\"\'"'
    assert "%!d(MISSING)" in printf
    logic = go_output("21-bools-nil", "{{ not ", "{{ and ", "{{ or ")
    assert logic.splitlines()[1] == "false false fallback 0 "
    comparisons = go_output("27-comparisons", "{{ lt 1 2 }}", "{{ ge ")
    assert comparisons.splitlines()[1] == "true true false true true true"
    index = go_output("18-missing-key-index", 'index .Data.data "nope"', mode="error")
    assert index.splitlines()[0] == "no token" and index.rstrip().endswith("<no value>")
    go_output("14-env", "env ")
    case = CASES["28-eq-number-error"]
    assert case.expected("zero")[0] is None  # Go fails: incompatible types for comparison
    go_output_error = case.expected("error")[1]
    assert go_output_error is not None and "incompatible types" in go_output_error


def test_to_json_and_pretty_are_gos_bytes() -> None:
    """KV2-AC-256: toJSON is compact, key-sorted, with \\u003c/\\u003e/\\u0026 escapes (a
    whole secret in struct field order); toJSONPretty indents by two spaces."""
    compact = go_output("04-json-config", "toJSON")
    assert "\\u003c" in compact and "\\u0026" in compact and "<&>" not in compact
    whole = go_output("06-whole-secret-json", "toJSON")
    assert whole.startswith('{"RequestID":"","LeaseID":""')
    pretty = go_output("05-json-pretty", "toJSONPretty")
    assert pretty.startswith('{\n  "a": {},\n  "b": [\n    1,')


def test_string_functions_match_consul_template() -> None:
    """KV2-AC-257: base64Encode/base64Decode, trimSpace, indent, split/join, replaceAll,
    contains, toLower/toUpper and timestamp give consul-template's bytes."""
    go_output("11-base64", "base64Encode", "base64Decode")
    go_output("12-indent-cert", "indent")
    go_output("13-split-join", "split", "join")
    go_output("29-replace-contains", "replaceAll", "contains")
    go_output("30-timestamp", "timestamp")
    used = {
        fn
        for fn in ("trimSpace", "toLower", "toUpper")
        for name in ("22-unicode", "29-replace-contains", "31-nginx-upstream")
        if fn in CASES[name].template
    }
    for name in ("22-unicode", "31-nginx-upstream"):
        go_output(name)
    assert used == {"trimSpace", "toLower", "toUpper"}
