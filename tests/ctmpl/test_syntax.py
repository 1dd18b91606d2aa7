"""Lexer/parser errors carry Go's message and line; unsupported functions are refused up front.

Expected messages were produced by Go 1.19's text/template on the same input.
"""

from __future__ import annotations

import pytest

from kv2render.errors import RenderError, TemplateSyntaxError
from kv2render.render.ctmpl import compile_ctmpl, render_ctmpl

GO_PARSE_ERRORS = [
    ("line1\n{{ if .x }}\nno end", "t:3: unexpected EOF"),
    ("{{ $x }}", 't:1: undefined variable "$x"'),
    ("a\n{{ end }}", "t:2: unexpected {{end}}"),
    ('{{ "unterminated }}', "t:1: unterminated quoted string"),
    ("a\nb\n{{ foo 1 }}", 't:3: function "foo" not defined'),
    ("{{/* open", "t:1: unclosed comment"),
    (
        'x\n{{ with secret "p" }}\n{{ else }}\n{{ else }}\n{{ end }}',
        "t:4: expected end; found {{else}}",
    ),
    ("{{ break }}", "t:1: {{break}} outside {{range}}"),
    ("{{ 3 | 4 }}", "t:1: non executable command in pipeline stage 2"),
    ("{{ .a.b\n c }}", 't:2: function "c" not defined'),
    ("{{ (1 }}", "t:1: unclosed left paren"),
    ("{{ 1x }}", 't:1: bad number syntax: "1x"'),
]


@pytest.mark.parametrize(("text", "message"), GO_PARSE_ERRORS)
def test_parse_errors_match_go(text: str, message: str) -> None:
    """KV2-INV-250: a template that does not parse is a `name:line: message` error, as Go says."""
    with pytest.raises(TemplateSyntaxError) as info:
        compile_ctmpl(text.replace('secret "p"', 'secret "secret/data/p"'), name="t")
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "function", "line"),
    [
        ('{{ with pkiCert "pki/issue/web" "common_name=a" }}{{ .Cert }}{{ end }}', "pkiCert", 1),
        ('a\n{{ key "service/redis/maxconns" }}', "key", 2),
        ('\n\n{{ range service "web" }}{{ .Address }}{{ end }}', "service", 3),
        ('{{ range secrets "secret/metadata/" }}{{ . }}{{ end }}', "secrets", 1),
        ('{{ file "/etc/passwd" }}', "file", 1),
        ('{{ "x" | writeToFile "/tmp/x" "" "" "0644" }}', "writeToFile", 1),
        ("{{ sprig_default 1 2 }}", "sprig_default", 1),
        ('{{ scratch.Set "a" 1 }}', "scratch", 1),
    ],
)
def test_unsupported_functions_name_function_and_line(text: str, function: str, line: int) -> None:
    """KV2-FC-250, KV2-AC-259: unsupported functions are a check error naming function and line."""
    with pytest.raises(TemplateSyntaxError) as info:
        compile_ctmpl(text, name="app.ctmpl")
    assert str(info.value).startswith(f'app.ctmpl:{line}: function "{function}" is not supported')


def test_secret_write_is_refused() -> None:
    """KV2-FC-250, KV2-AC-259: `secret` with key=value arguments is a write; refused."""
    with pytest.raises(TemplateSyntaxError) as info:
        compile_ctmpl('x\n{{ with secret "secret/data/a" "k=v" }}{{ end }}', name="w")
    assert str(info.value).startswith("w:2: secret with more than one argument")
    # Go passes a piped value as the LAST argument: secret "secret/data/a" "k=v", a write.
    with pytest.raises(TemplateSyntaxError, match="is a write"):
        compile_ctmpl('{{ "k=v" | secret "secret/data/a" }}', name="w")


def test_dynamic_secret_path_is_found_while_rendering() -> None:
    """KV2-INV-390: a computed path is accepted; compile records its line for `check`."""
    tpl = compile_ctmpl('\n{{ with secret (printf "secret/data/%s" "a") }}{{ end }}', name="d")
    assert tpl.refs == ()
    assert tpl.dynamic == ("d:2",)


def test_refs_are_collected_once_in_order() -> None:
    """KV2-AC-250: every secret path is known after compile, deduplicated (legacy and pinned)."""
    tpl = compile_ctmpl(
        '{{ with secret "secret/data/b" }}{{ end }}'
        '{{ with secret "secret/a?version=3" }}{{ end }}'
        '{{ with secret "secret/data/b" }}{{ end }}'
        '{{ define "x" }}{{ secret "kv/data/c" }}{{ end }}',
        name="r",
    )
    assert [str(loc) for loc in sorted(tpl.locations, key=str)] == [
        "kv/c",
        "secret/a?version=3",
        "secret/b",
    ]
    assert len(tpl.refs) == 3


def test_unread_secret_is_a_render_error_naming_it() -> None:
    tpl = compile_ctmpl('{{ with secret "secret/data/app" }}{{ .Data.data.k }}{{ end }}', name="u")
    with pytest.raises(RenderError, match=r"not read yet \(first: secret/app\)"):
        render_ctmpl(tpl, {}, env={})


def test_errors_never_carry_secret_values() -> None:
    """KV2-INV-001: Go would print the value in `range can't iterate over VALUE`; we do not."""
    from kv2render.model import SecretVersion
    from kv2render.refs import SecretLocation

    sentinel = "SENTINEL-9f8e7d"
    loc = SecretLocation("secret", "app")
    secrets = {loc: SecretVersion(loc, 1, {"password": sentinel}, {"version": 1})}
    for body in (
        "{{ range .Data.data.password }}{{ end }}",
        "{{ .Data.data.password.x }}",
        "{{ base64Decode .Data.data.password }}",
        "{{ indent .Data.data.password 2 }}",
    ):
        tpl = compile_ctmpl('{{ with secret "secret/data/app" }}' + body + "{{ end }}", name="s")
        with pytest.raises(RenderError) as info:
            render_ctmpl(tpl, secrets, env={})
        assert sentinel not in str(info.value)
        assert sentinel not in repr(info.value)


def test_else_with_chain() -> None:
    """KV2-AC-251: `with ... else with` (Go 1.23, current Vault Agent builds) is accepted."""
    from kv2render.model import SecretVersion
    from kv2render.refs import SecretLocation

    loc = SecretLocation("secret", "app")
    secrets = {loc: SecretVersion(loc, 1, {"b": "B"}, {"version": 1})}
    tpl = compile_ctmpl(
        '{{ with secret "secret/data/app" }}{{ with .Data.data.a }}a={{ . }}'
        "{{ else with .Data.data.b }}b={{ . }}{{ else }}none{{ end }}{{ end }}",
        name="e",
    )
    assert render_ctmpl(tpl, secrets, env={}) == "b=B"
