"""Scenario 3: hostile templates through the real CLI (``--once``) against the dev server.

Each attempt is refused with a clear error naming the template, the destination keeps its
old bytes, and no secret value reaches the output or the error (KV2-AC-284, KV2-AC-285,
KV2-INV-001). The Jinja2 cases complement tests/unit/test_template.py (which drives
template.py directly); the consul-template cases cover kv2render/render/ctmpl, which had no
resource guards before this suite (fixed: see docs/reliability.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kv2render.config import TemplateSpec
from kv2render.devserver import DevServer
from kv2render.errors import RenderError, TemplateSyntaxError
from kv2render.runner import prepare_one

from ..integration.cli_helpers import run_cli, write_config
from .helpers import mode_of, record_cases

SENTINEL = "S3NTINEL-hostile-template-7f3a"
REF = "vault+kv2:///secret/data/app/db#password"
OLD = b"old-good-content\n"

_NEST = 3000
_COMMAS = "," * 100  # split gives 101 items; four nested ranges: 10^8 iterations
# (name, syntax, template text, expected exit code, words the error must contain)
CASES: list[tuple[str, str, str, int, tuple[str, ...]]] = [
    # -- Jinja2: sandbox escapes (KV2-AC-284)
    ("jinja-class", "jinja2", "{{ ''.__class__ }}", 5, ("sandbox",)),
    ("jinja-mro-walk", "jinja2", "{{ ''.__class__.__mro__[1].__subclasses__() }}", 5, ("sandbox",)),
    ("jinja-globals", "jinja2", "{{ range.__globals__ }}", 5, ("sandbox",)),
    ("jinja-kv2-globals", "jinja2", f'{{{{ kv2("{REF}").__class__ }}}}', 5, ("sandbox",)),
    (
        "jinja-format-walk",
        "jinja2",
        "{{ '{0.__class__.__init__.__globals__}'.format('') }}",
        5,
        ("sandbox",),
    ),
    ("jinja-attr-filter", "jinja2", "{{ ''|attr('__class__') }}", 5, ()),
    (
        "jinja-map-attribute",
        "jinja2",
        "{{ ['']|map(attribute='__class__')|first }}",
        5,
        ("sandbox",),
    ),
    (
        "jinja-loop-globals",
        "jinja2",
        "{% for i in [1] %}{{ loop.cycle.__globals__ }}{% endfor %}",
        5,
        ("sandbox",),
    ),
    ("jinja-dict-update", "jinja2", "{% set d = dict() %}{{ d.update(a=1) }}", 5, ("sandbox",)),
    ("jinja-type-mro", "jinja2", "{{ dict.mro() }}", 5, ("sandbox",)),
    ("jinja-cycler", "jinja2", "{{ cycler }}", 2, ("cycler",)),
    ("jinja-lipsum", "jinja2", "{{ lipsum.__globals__ }}", 2, ("lipsum",)),
    ("jinja-namespace", "jinja2", "{{ namespace }}", 2, ("namespace",)),
    ("jinja-self", "jinja2", "{{ self.__init__.__globals__ }}", 5, ("sandbox",)),
    ("jinja-include", "jinja2", "{% include '/etc/passwd' %}", 2, ("not supported",)),
    ("jinja-import", "jinja2", "{% import 'os' as os %}", 2, ("not supported",)),
    # -- Jinja2: runaway output and loops (KV2-AC-285)
    (
        "jinja-output-bomb",
        "jinja2",
        "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
        5,
        ("max_output_bytes",),
    ),
    ("jinja-string-bomb", "jinja2", "{{ 'x' * 10 ** 9 }}", 5, ("max_output_bytes",)),
    ("jinja-format-width", "jinja2", "{{ '%0999999999d'|format(1) }}", 5, ("max_output_bytes",)),
    (
        "jinja-replace-bomb",
        "jinja2",
        "{% set s = 'a' * 100000 %}{{ s.replace('a', s) }}",
        5,
        ("max_output_bytes",),
    ),
    (
        "jinja-nested-loops",
        "jinja2",
        "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
        5,
        ("loop",),
    ),
    # -- Jinja2: one filter call doing unbounded work (issue 14 item 9, KV2-AC-375)
    (
        "jinja-cpu-list-sort",
        "jinja2",
        "{% set x='a'*500000 %}{% for i in range(50) %}{% set l = x|list|sort %}{% endfor %}",
        5,
        ("MAX_FILTER_ITEMS", "list filter"),
    ),
    (
        "jinja-cpu-list-sort-10000",
        "jinja2",
        "{% set x='a'*500000 %}{% for i in range(10000) %}{% set l = x|list|sort %}{% endfor %}",
        5,
        ("MAX_FILTER_ITEMS",),
    ),
    (
        "jinja-macro-recursion",
        "jinja2",
        "{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(0) }}",
        5,
        ("recursion",),
    ),
    (
        "jinja-deep-parens",
        "jinja2",
        "{{ " + "(" * _NEST + "1" + ")" * _NEST + " }}",
        2,
        ("nests too deeply",),
    ),
    (
        "jinja-deep-if",
        "jinja2",
        "{% if 1 %}" * _NEST + "x" + "{% endif %}" * _NEST,
        2,
        ("nests too deeply",),
    ),
    # -- consul-template: functions that reach outside (KV2-AC-284)
    ("ct-file", "consul-template", '{{ file "/etc/passwd" }}', 2, ("not supported",)),
    ("ct-plugin", "consul-template", '{{ plugin "rm" "-rf" "/" }}', 2, ("not supported",)),
    (
        "ct-writeToFile",
        "consul-template",
        '{{ writeToFile "/tmp/x" "" "" "0644" "x" }}',
        2,
        ("not supported",),
    ),
    ("ct-executeTemplate", "consul-template", '{{ executeTemplate "x" }}', 2, ("not supported",)),
    ("ct-call", "consul-template", "{{ call . }}", 2, ("not supported",)),
    # -- consul-template: runaway output, loops, recursion (KV2-AC-285)
    (
        "ct-nested-ranges",
        "consul-template",
        f'{{{{ $a := split "," "{_COMMAS}" }}}}{{{{ range $a }}}}{{{{ range $a }}}}'
        "{{ range $a }}{{ range $a }}{{ end }}{{ end }}{{ end }}{{ end }}",
        5,
        ("runaway",),
    ),
    (
        "ct-output-loop",
        "consul-template",
        f'{{{{ $a := split "," "{_COMMAS}" }}}}{{{{ range $a }}}}{{{{ range $a }}}}'
        '{{ printf "%1000d" 1 }}{{ end }}{{ end }}',
        5,
        ("max_output_bytes",),
    ),
    (
        "ct-template-recursion",
        "consul-template",
        '{{ define "x" }}{{ template "x" }}{{ end }}{{ template "x" }}',
        5,
        ("depth",),
    ),
    ("ct-indent-bomb", "consul-template", '{{ indent 999999999 "x" }}', 5, ("max_output_bytes",)),
    (
        "ct-replace-bomb",
        "consul-template",
        '{{ $s := "aaaaaaaaaa" }}'
        + '{{ $s = replaceAll "a" "aaaaaaaaaa" $s }}' * 9
        + "{{ len $s }}",
        5,
        ("max_output_bytes",),
    ),
    (
        "ct-join-bomb",
        "consul-template",
        '{{ $s := replaceAll " " "x" (printf "%1000000s" "") }}{{ join $s (split "" $s) }}',
        5,
        ("max_output_bytes",),
    ),
    (
        "ct-deep-parens",
        "consul-template",
        "{{ " + "(" * _NEST + "1" + ")" * _NEST + " }}",
        2,
        ("nests too deeply",),
    ),
    (
        "ct-deep-if",
        "consul-template",
        "{{ if 1 }}" * _NEST + "x" + "{{ end }}" * _NEST,
        2,
        ("nests too deeply",),
    ),
]


@pytest.fixture
def seeded(dev_server: DevServer) -> DevServer:
    dev_server.put("app/db", {"password": SENTINEL})
    return dev_server


@pytest.fixture(scope="module", autouse=True)
def _summary(request: pytest.FixtureRequest) -> Iterator[None]:
    """KV2-AC-294 KV2-AC-456: the scenario's figures, from the hostile-template cases that ran
    (a fixture finalizer: no test has to run after the others)."""
    yield
    record_cases(request, "hostile-templates", prefix="test_hostile_template_", cases=len(CASES))


@pytest.mark.parametrize(
    ("name", "syntax", "text", "code", "words"), CASES, ids=[c[0] for c in CASES]
)
def test_hostile_template_is_refused_and_old_file_kept(
    seeded: DevServer,
    workdir: Path,
    name: str,
    syntax: str,
    text: str,
    code: int,
    words: tuple[str, ...],
) -> None:
    """KV2-AC-284 KV2-AC-285 KV2-AC-296 KV2-FC-075 KV2-INV-259: refused clearly (exit 2/5),
    old file untouched, no secret shown."""
    dest = workdir / "out.txt"
    dest.write_bytes(OLD)
    dest.chmod(0o600)
    before = dest.stat()
    # Every template also reads the secret, so a refusal happens with the value in memory.
    prefix = (
        f'{{{{ kv2("{REF}")|length }}}}'
        if syntax == "jinja2"
        else '{{ with secret "secret/data/app/db" }}{{ len .Data.data.password }}{{ end }}'
    )
    cfg = write_config(
        workdir,
        {"template": [{"contents": prefix + text, "destination": str(dest), "syntax": syntax}]},
    )
    started = time.monotonic()
    result = run_cli(
        ["--config", str(cfg), "--once"],
        {"VAULT_ADDR": seeded.url, "VAULT_TOKEN": seeded.root_token},
    )
    elapsed = time.monotonic() - started
    assert result.code == code, result.text
    for word in words:
        assert word in result.text, result.text
    assert "template[0]" in result.text, result.text
    assert SENTINEL not in result.text
    assert "Traceback" not in result.text
    assert dest.read_bytes() == OLD and dest.stat().st_ino == before.st_ino
    assert mode_of(dest) == 0o600
    assert elapsed < 30, f"{name} took {elapsed:.1f}s"


# -- the consul-template fixes, at the function level -------------------------------------


def _ct(text: str, max_output_bytes: int = 1 << 20) -> Any:
    spec = TemplateSpec(
        index=0, destination=Path("/nonexistent/x"), contents=text, syntax="consul-template"
    )
    return prepare_one(spec, max_output_bytes=max_output_bytes).render({})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Go's fmt: a literal width past 1e6 stops the format (tooLarge in fmt/print.go) ...
        ('{{ printf "%0999999999d" 1 }}', b"%!(NOVERB)%!(EXTRA int=1)"),
        ('{{ printf "%' + "9" * 5000 + 'd" 1 }}', b"%!(NOVERB)%!(EXTRA int=1)"),
        ('{{ printf "%.' + "0" * 5000 + '3f" 1.0 }}', b"1.000"),
        ('{{ printf "%1000001s|" "" }}', b" " * 1000001 + b"|"),  # Go accepts 7 digits
        ('{{ printf "a%.99999999fb" 1.5 }}', b"a%!(NOVERB)%!(EXTRA float64=1.5)"),
        # ... a '*' width or precision past it is BADWIDTH / BADPREC, the verb still runs.
        ('{{ printf "%*d" 999999999 1 }}', b"%!(BADWIDTH)1"),
        ('{{ printf "%.*d" 1000001 7 }}', b"%!(BADPREC)7"),
        # up to the limit, widths work as before
        ('{{ printf "%5d|%-3s|" 42 "x" }}', b"   42|x  |"),
        ('{{ printf "%*d" 3 7 }}', b"  7"),
    ],
)
def test_ct_printf_follows_go_width_limits(text: str, expected: bytes) -> None:
    """KV2-AC-285 KV2-INV-252 KV2-INV-259:
    printf widths beyond Go's 1e6 limit no longer build gigabytes."""
    assert _ct(text) == expected


def test_ct_output_limit_counts_while_rendering() -> None:
    """KV2-AC-285 KV2-INV-259: the limit stops a consul-template render as soon as it is
    passed."""
    assert _ct('{{ printf "%10s" "x" }}', max_output_bytes=10) == b" " * 9 + b"x"
    with pytest.raises(RenderError, match=r"max_output_bytes \(9\)"):
        _ct('{{ printf "%10s" "x" }}', max_output_bytes=9)


def test_ct_env_cannot_read_the_token(
    dev_server: DevServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-AC-284 KV2-AC-271 KV2-INV-096 KV2-INV-101:
    consul-template's env sees the commands' environment, so
    ``{{ env "VAULT_TOKEN" }}`` cannot copy the token into a file; other variables still work."""
    dest = workdir / "out.txt"
    monkeypatch.setenv("KV2_FAULTS_PLAIN", "plain-value")
    cfg = write_config(
        workdir,
        {
            "template": [
                {
                    "contents": '[{{ env "VAULT_TOKEN" }}][{{ env "BAO_TOKEN" }}]'
                    '[{{ env "KV2_FAULTS_PLAIN" }}]',
                    "destination": str(dest),
                    "syntax": "consul-template",
                }
            ]
        },
    )
    result = run_cli(
        ["--config", str(cfg), "--once"],
        {"VAULT_ADDR": dev_server.url, "VAULT_TOKEN": dev_server.root_token,
         "BAO_TOKEN": dev_server.root_token},
    )  # fmt: skip
    assert result.code == 0, result.text
    assert dest.read_text() == "[][][plain-value]"


def test_ct_binary_output_is_written_as_bytes() -> None:
    """KV2-INV-252: base64Decode of a binary value writes its bytes (runner encoded the
    output strictly and crashed with an internal UnicodeEncodeError before)."""
    assert _ct('{{ base64Decode "/w==" }}') == b"\xff"


def test_ct_deep_nesting_is_a_syntax_error() -> None:
    """KV2-AC-285 KV2-AC-296 KV2-FC-075: deep nesting is refused at compile time, not an
    internal RecursionError."""
    with pytest.raises(TemplateSyntaxError, match="nests too deeply"):
        _ct("{{ " + "(" * _NEST + "1" + ")" * _NEST + " }}")
