"""Jinja2 templates: kv2()/secret(), filters, exact bytes, ref discovery, strictness, sandbox.

Unit tests with in-memory SecretVersion objects (no server): template.py never reads secrets,
it renders the ones it is given.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kv2render.errors import (
    ConfigError,
    Kv2RenderError,
    MissingKeyError,
    RenderError,
    TemplateSyntaxError,
)
from kv2render.model import SecretVersion
from kv2render.refs import SecretLocation, parse_ref
from kv2render.render.jinja import (
    MAX_RANGE,
    REDACTED,
    CompiledTemplate,
    compile_template,
    redact,
    render,
)

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"

DB = SecretLocation("secret", "app/db")
DB_V2 = SecretLocation("secret", "app/db", 2)
CFG = SecretLocation("secret", "app/config")
REF = "vault+kv2:///secret/data/app/db"

# A sentinel no message may ever contain (KV2-INV-001).
SENTINEL = "S3ntinel-Value-9f2c"


def version(location: SecretLocation, data: dict[str, object], number: int = 7) -> SecretVersion:
    return SecretVersion(
        location,
        number,
        data,
        {
            "created_time": "2024-05-01T10:00:00.123456Z",
            "custom_metadata": {"owner": "ops"},
            "deletion_time": "",
            "destroyed": False,
            "version": number,
        },
    )


SECRETS = {
    DB: version(
        DB,
        {
            "username": "app",
            "password": "p&<>\"'ss",
            "port": 5432,
            "ssl": True,
            "ratio": 1.5,
            "none": None,
            "obj": {"b": [1, "x"], "a": True},
            "key-with-dash": "dash",
            "items": "shadowed",
            "b64": base64.b64encode("héllo wörld".encode()).decode(),
            "padded": " \t value \n",
        },
    ),
    DB_V2: version(DB_V2, {"password": "old-password"}, number=2),
    CFG: version(CFG, {"token": SENTINEL, "short": "ab"}, number=3),
}


def run(text: str, secrets: dict[SecretLocation, SecretVersion] | None = None, **kw: object) -> str:
    tpl = compile_template(text, name="t.j2", **kw)  # type: ignore[arg-type]
    return render(tpl, SECRETS if secrets is None else secrets)


def fails(text: str, **kw: object) -> Kv2RenderError:
    with pytest.raises(Kv2RenderError) as info:
        run(text, **kw)
    return info.value


# -- kv2() ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (f'kv2("{REF}#username")', "app"),
        (f'kv2("{REF}#password")', "p&<>\"'ss"),
        (f'kv2("{REF}#port")', "5432"),
        (f'kv2("{REF}#ssl")', "true"),
        (f'kv2("{REF}#ratio")', "1.5"),
        (f'kv2("{REF}#none")', "null"),
        (f'kv2("{REF}#obj")', '{"b":[1,"x"],"a":true}'),
        (f'kv2("{REF}#/obj/b/1")', "x"),
        (f'kv2("{REF}#/obj/b")', '[1,"x"]'),
        (f'kv2("{REF}")["port"]', "5432"),
        (f'kv2("{REF}").port', "5432"),
        (f'kv2("{REF}")["key-with-dash"]', "dash"),
        (f'kv2("{REF}").obj.b[1]', "x"),
        (f'kv2("{REF}").obj.a', "true"),
        (f'kv2("{REF}?version=2#password")', "old-password"),
        ('kv2("https://vault.example:8200/v1/secret/data/app/db#username")', "app"),
    ],
)
def test_kv2_values(expr: str, expected: str) -> None:
    """KV2-AC-070, KV2-AC-071: a selected string raw, anything else compact JSON; mapping access."""
    assert run("{{ " + expr + " }}") == expected


def test_kv2_key_first_attribute_lookup_and_mapping_methods() -> None:
    """KV2-AC-071: '.items' is the key when the secret has one; methods work otherwise."""
    assert run(f'{{{{ kv2("{REF}").items }}}}') == "shadowed"
    text = f'{{% for k, v in kv2("{REF}").obj|dictsort %}}{{{{ k }}}}={{{{ v }}}};{{% endfor %}}'
    assert run(text) == 'a=true;b=[1,"x"];'
    assert run(f'{{{{ kv2("{REF}").obj.keys()|sort|join(",") }}}}') == "a,b"
    assert run(f'{{{{ kv2("{REF}").get("nope", "dflt") }}}}') == "dflt"


def test_whole_object_prints_as_compact_json() -> None:
    """KV2-AC-070: a mapping printed with {{ }} is compact JSON, as kv2(REF#obj) is."""
    assert run(f'{{{{ kv2("{REF}").obj }}}}') == '{"b":[1,"x"],"a":true}'
    assert run("{{ [1, true, none, 'x'] }}") == '[1,true,null,"x"]'


# -- secret() ------------------------------------------------------------------------------


def test_secret_consul_template_shape() -> None:
    """KV2-AC-072: .Data.data.<key>, ['key'] and .Data.metadata.* as in Vault Agent templates."""
    text = (
        '{% with s = secret("secret/data/app/db") %}'
        "{{ s.Data.data.username }}|{{ s.Data.data['key-with-dash'] }}|"
        "{{ s.Data.metadata.version }}|{{ s.Data.metadata.created_time }}|"
        "{{ s.Data.metadata.destroyed }}|{{ s.Data.metadata.deletion_time }}|"
        "{{ s.Data.metadata.custom_metadata.owner }}{% endwith %}"
    )
    assert run(text) == "app|dash|7|2024-05-01T10:00:00.123456Z|false||ops"


def test_secret_accepts_every_reference_form() -> None:
    """KV2-AC-072: path form, vault+kv2 and https forms, and a pinned version."""
    assert run('{{ secret("secret/data/app/db?version=2").Data.data.password }}') == "old-password"
    assert run(f'{{{{ secret("{REF}").Data.data.username }}}}') == "app"
    url = "https://vault.example/v1/secret/data/app/db"
    assert run(f'{{{{ secret("{url}").Data.metadata.version }}}}') == "7"


def test_secret_metadata_defaults_when_server_sent_little() -> None:
    """KV2-AC-072: the version is SecretVersion.version; absent fields get Vault's zero values."""
    bare = {DB: SecretVersion(DB, 4, {"a": "b"})}
    text = (
        '{% set m = secret("secret/data/app/db").Data.metadata %}'
        "{{ m.version }}|{{ m.created_time }}|{{ m.destroyed }}|{{ m.custom_metadata }}"
    )
    assert run(text, bare) == "4||false|null"


def test_secret_with_a_key_is_refused() -> None:
    """KV2-FC-071: secret() returns the whole secret; a #key belongs to kv2()."""
    with pytest.raises(TemplateSyntaxError, match=r"t\.j2:1: secret\(\) returns the whole"):
        compile_template(f'{{{{ secret("{REF}#password") }}}}', name="t.j2")


# -- exactness -----------------------------------------------------------------------------


def test_no_autoescape_and_trailing_newline() -> None:
    """KV2-AC-074, KV2-AC-075, KV2-INV-070: values as written; the final newline is kept."""
    assert run(f'<{{{{ kv2("{REF}#password") }}}}>&\n') == "<p&<>\"'ss>&\n"
    assert run(f'{{{{ kv2("{REF}#username") }}}}') == "app"
    assert run("a\n\n") == "a\n\n"


def test_constant_text_and_control_flow_bytes() -> None:
    """KV2-AC-075: whitespace control behaves as in Jinja2; output bytes are exact."""
    text = "{% for i in range(3) -%}\n{{ i }},\n{%- endfor %}\nend\n"
    assert run(text) == "0,1,2,\nend\n"


# -- filters -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (f'kv2("{REF}").obj|toJSON', '{"a":true,"b":[1,"x"]}'),
        (f'kv2("{REF}#password")|toJSON', '"p\\u0026\\u003c\\u003e\\"\'ss"'),
        (f'kv2("{REF}#password")|toUnescapedJSON', '"p&<>\\"\'ss"'),
        ("'\u2028'|toUnescapedJSON", '"\\u2028"'),
        ("'é'|toJSON", '"é"'),
        (f'kv2("{REF}").obj|toJSONPretty', '{\n  "a": true,\n  "b": [\n    1,\n    "x"\n  ]\n}'),
        ("{}|toJSONPretty", "{}"),
        (f'kv2("{REF}#username")|base64Encode', "YXBw"),
        ("'héllo'|base64Encode", "aMOpbGxv"),
        (f'kv2("{REF}#b64")|base64Decode', "héllo wörld"),
        ("'aGVs\\nbG8='|base64Decode", "hello"),
        (f'kv2("{REF}#padded")|trimSpace', "value"),
        ("'\\x1c x \\u00a0'|trimSpace", "\x1c x"),
        ("'a:b\\\\c'|pgpass_escape", "a\\:b\\\\c"),
        ("5432|pgpass_escape", "5432"),
        ("'*'|pgpass_escape", "*"),
        ('"it\'s"|shell_quote', "'it'\\''s'"),
        ("''|shell_quote", "''"),
        ("'db-host.1'|env_name", "DB_HOST_1"),
        ("'1st'|env_name", "_1ST"),
    ],
)
def test_filters_exact(expr: str, expected: str) -> None:
    """KV2-AC-073: consul-template helpers and ours produce these exact bytes."""
    assert run("{{ " + expr + " }}") == expected


def test_to_json_is_what_go_json_marshal_writes() -> None:
    """KV2-AC-073: sorted keys, compact, HTML-safe escapes; it parses back to the same data."""
    out = run('{{ secret("secret/data/app/db").Data.data|toJSON }}')
    assert json.loads(out) == SECRETS[DB].data
    assert list(json.loads(out)) == sorted(SECRETS[DB].data)
    assert "&" not in out and "<" not in out and ", " not in out


@pytest.mark.parametrize("bad", ["not base64!", "YWJj=", "YQ"])
def test_base64_decode_invalid_is_render_error(bad: str) -> None:
    """KV2-AC-073, KV2-FC-072: invalid base64 is RenderError (exit 5) at name:line."""
    err = fails("\n{{ '" + bad + "'|base64Decode }}")
    assert type(err) is RenderError and err.exit_code == 5
    assert err.where == "t.j2:2" and "base64Decode" in err.message


def test_base64_decode_binary_is_refused() -> None:
    """KV2-AC-073: decoded bytes must be text; binary gets a clear error."""
    err = fails("{{ '" + base64.b64encode(b"\xff\xfe").decode() + "'|base64Decode }}")
    assert "not UTF-8" in err.message


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b"])
def test_pgpass_escape_refuses_line_breaks(value: str) -> None:
    """A .pgpass line cannot hold a line break; refusing beats writing a broken file."""
    secrets = {DB: version(DB, {"password": value})}
    err = fails(f'{{{{ kv2("{REF}#password")|pgpass_escape }}}}', secrets=secrets)
    assert "pgpass_escape" in err.message and value not in str(err)


# -- reference discovery -------------------------------------------------------------------


def test_refs_found_by_parsing_in_order_including_untaken_branches() -> None:
    """KV2-INV-071, KV2-AC-080: every call, in source order, de-duplicated, before any read."""
    text = (
        '{{ secret("secret/data/app/db") }}\n'
        "{% if false %}"
        '{{ kv2("vault+kv2:///secret/data/app/config#token") }}'
        "{% endif %}\n"
        f'{{{{ kv2("{REF}#password") }}}}{{{{ kv2("{REF}#password") }}}}\n'
    )
    tpl = compile_template(text, name="t.j2")
    assert isinstance(tpl, CompiledTemplate)
    assert tpl.refs == (
        parse_ref("secret/data/app/db", allow_path_form=True),
        parse_ref("vault+kv2:///secret/data/app/config#token"),
        parse_ref(f"{REF}#password"),
    )
    assert tpl.locations == frozenset({DB, CFG})


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ('{{ secret("secret/data/app/db", "x=1") }}', 1),
        ('{{ secret(ref="secret/data/app/db") }}', 1),
        ("{{ secret() }}", 1),
        ("{{ kv2(5) }}", 1),
        ("\n\n\n{{ secret(*refs) }}", 4),
    ],
)
def test_non_constant_reference_is_a_syntax_error_with_line(text: str, line: int) -> None:
    """KV2-FC-071, KV2-AC-079: one positional string argument (a computed one is resolved while
    rendering, KV2-INV-390, tests/integration/test_dynamic_paths.py); error gives name:line."""
    with pytest.raises(TemplateSyntaxError) as info:
        compile_template(text, name="tpl/app.j2")
    assert info.value.where == f"tpl/app.j2:{line}"
    assert (
        "takes exactly one argument" in info.value.message
        or "must be a string" in info.value.message
    )
    assert info.value.exit_code == 2


@pytest.mark.parametrize(
    "text",
    [
        '{% set f = kv2 %}{{ f("vault+kv2:///secret/data/app/db") }}',
        "{{ kv2 }}",
        "{{ kv2.__globals__ }}",
        "{% set secret = 1 %}",
        "{% for kv2 in [1] %}{% endfor %}",
        "{% macro m(secret) %}{% endmacro %}",
        "{% macro kv2() %}{% endmacro %}",
        '{{ ["vault+kv2:///secret/data/app/db"]|map(kv2)|list }}',
    ],
)
def test_aliasing_or_shadowing_the_functions_is_refused(text: str) -> None:
    """KV2-FC-071, KV2-AC-081: kv2/secret can only be called directly, never captured."""
    with pytest.raises(TemplateSyntaxError, match=r"^t\.j2:1: "):
        compile_template(text, name="t.j2")


def test_reference_syntax_errors_name_the_template_line() -> None:
    """KV2-FC-071: a malformed reference is a template syntax error at name:line (exit 2)."""
    with pytest.raises(TemplateSyntaxError) as info:
        compile_template('\n{{ kv2("vault://kv/pg") }}', name="t.j2")
    assert info.value.where == "t.j2:2" and "vault://" in info.value.message
    # the path form is for secret() only; kv2() takes the URL forms
    with pytest.raises(TemplateSyntaxError, match="kv2"):
        compile_template('{{ kv2("secret/data/app/db") }}', name="t.j2")


@pytest.mark.parametrize(
    ("text", "word"),
    [
        ('{% include "other.j2" %}', "include"),
        ('{% import "m.j2" as m %}', "import"),
        ('{% from "m.j2" import x %}', "import"),
        ('{% extends "base.j2" %}', "extends"),
    ],
)
def test_loaders_are_refused(text: str, word: str) -> None:
    """KV2-FC-071, KV2-AC-079: no include/import/extends; a clear error at name:line."""
    with pytest.raises(TemplateSyntaxError, match=rf"^t\.j2:1: .*{word}.* not supported"):
        compile_template(text, name="t.j2")


@pytest.mark.parametrize(
    ("text", "line"),
    [("{% if %}", 1), ("a\nb\n{{ x y }}", 3), ("{% for x in y %}", 1), ("\n{{ x|nosuch }}", 2)],
)
def test_syntax_errors_give_name_and_line(text: str, line: int) -> None:
    """KV2-FC-070, KV2-AC-078: TemplateSyntaxError 'name:line: message', a ConfigError (exit 2)."""
    with pytest.raises(TemplateSyntaxError) as info:
        compile_template(text, name="/etc/kv2render/app.j2")
    assert str(info.value).startswith(f"/etc/kv2render/app.j2:{line}: ")
    assert isinstance(info.value, ConfigError)


def test_undefined_names_are_compile_errors() -> None:
    """KV2-INV-070, KV2-AC-076: names outside kv2/secret/range/dict and the template's own fail."""
    with pytest.raises(TemplateSyntaxError, match=r"t\.j2:2: 'pasword' is undefined"):
        compile_template("ok\n{{ pasword }}", name="t.j2")
    # the template's own variables, loop and macro names are fine
    text = (
        "{% set a = 1 %}{% macro m(x) %}{{ x }}{{ caller() }}{% endmacro %}"
        "{% for i in [a] %}{{ loop.index }}{% call m(i) %}!{% endcall %}{% endfor %}"
    )
    assert run(text) == "11!"


def test_runtime_reference_not_seen_at_compile_is_resolved_while_rendering() -> None:
    """KV2-INV-390: a reference compile_template did not list is resolved while rendering,
    from the secrets handed to render(), and reported in ``used``."""
    tpl = compile_template(f'{{{{ kv2("{REF}#password") }}}}', name="t.j2")
    unlisted = CompiledTemplate(tpl.name, (), _template=tpl._template, _calls={})
    used: set[SecretLocation] = set()
    assert render(unlisted, SECRETS, used=used) == "p&<>\"'ss"
    assert used == {DB}


def test_render_needs_every_location() -> None:
    """A location missing from the mapping is a clear RenderError, not a KeyError."""
    tpl = compile_template(f'{{{{ kv2("{REF}#password") }}}}', name="t.j2")
    with pytest.raises(RenderError, match="secret/app/db was not read"):
        render(tpl, {})


def test_template_sees_only_its_own_secrets() -> None:
    """Only the locations a template references are handed to it (KV2-INV-001)."""
    tpl = compile_template(f'{{{{ kv2("{REF}#password") }}}}', name="t.j2")
    assert tpl.locations == frozenset({DB})
    assert render(tpl, {DB: SECRETS[DB]}) == "p&<>\"'ss"


# -- missing keys --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (f'{{{{ kv2("{REF}#nope") }}}}', "nope"),
        (f'{{{{ kv2("{REF}#/obj/zz") }}}}', "/obj/zz"),
        (f'{{{{ kv2("{REF}").nope }}}}', "nope"),
        (f'{{{{ kv2("{REF}")["no-pe"] }}}}', "no-pe"),
        ('{{ secret("secret/data/app/db").Data.data.nope }}', "nope"),
        ('{% if secret("secret/data/app/db").Data.data.nope %}{% endif %}', "nope"),
        ('{{ secret("secret/data/app/db").Data.data.nope|toJSON }}', "nope"),
    ],
)
def test_missing_key_is_missing_key_error(text: str, key: str) -> None:
    """KV2-AC-077: MissingKeyError (exit 5) naming the key and the secret, never a value."""
    err = fails("\n" + text)
    assert isinstance(err, MissingKeyError) and err.exit_code == 5
    assert key in err.message and "secret/app/db" in err.message
    assert err.where == "t.j2:2"
    assert "p&<>" not in str(err)


def test_is_defined_guards_optional_keys() -> None:
    """KV2-AC-077: strict mode still lets a template test for an optional key."""
    text = '{% set d = kv2("' + REF + '") %}{{ d.host if d.host is defined else "*" }}'
    assert run(text) == "*"


def test_missing_key_lenient_renders_empty() -> None:
    """error_on_missing_key=false: a missing key prints '' (consul-template: <no value>)."""
    text = (
        f'[{{{{ kv2("{REF}#nope") }}}}][{{{{ kv2("{REF}").nope }}}}]'
        '[{{ secret("secret/data/app/db").Data.data.nope }}]'
        '[{{ secret("secret/data/app/db").Data.data.nope|toJSON }}]'
    )
    assert run(text, error_on_missing_key=False) == "[][][][null]"
    # walking further into a missing key is still an error, as in consul-template
    with pytest.raises(MissingKeyError):
        run(f'{{{{ kv2("{REF}").nope.deeper }}}}', error_on_missing_key=False)
    # and undefined names stay compile errors whatever the setting
    with pytest.raises(TemplateSyntaxError):
        compile_template("{{ typo }}", name="t.j2", error_on_missing_key=False)


def test_undefined_variable_path_is_render_error_with_line() -> None:
    """KV2-FC-072, KV2-AC-076: an undefined attribute of a non-secret value is exit 5 with line."""
    err = fails("{% set x = {'a': 1} %}\n\n{{ x.b }}")
    assert type(err) is RenderError and err.where == "t.j2:3"


# -- sandbox -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ range.__globals__ }}",
        "{{ dict.__init__.__globals__ }}",
        "{{ (1).__class__.__base__ }}",
        "{{ '{0.__class__}'.format(1) }}",
        "{{ '{0.__class__.__init__.__globals__}'.format('') }}",
        "{{ '{0[__class__]}'.format('') }}",
        "{{ 'x'.encode() }}",
        "{{ dict.fromkeys([1]) }}",
        "{{ range(3)|attr('__class__') }}",
        f'{{{{ kv2("{REF}").obj.items.__self__ }}}}',
        f'{{{{ kv2("{REF}")._items }}}}',
        "{% set m = {'a': 1} %}{{ m.update({'b': 2}) }}",
        "{{ [1]|map('upper')|attr('gi_frame') }}",
        "{% for x in [1]|map('string') %}{{ loop.__class__ }}{% endfor %}",
    ],
)
def test_sandbox_escapes_are_refused(text: str) -> None:
    """KV2-AC-081, KV2-AC-284: attribute walks and unsafe calls end in a clear RenderError."""
    err = fails(text)
    assert type(err) in (RenderError, MissingKeyError)
    assert err.where == "t.j2:1"
    assert "sandbox" in err.message or "unsafe" in err.message or "not found" in err.message


@pytest.mark.parametrize("name", ["lipsum", "cycler", "joiner", "namespace", "self_", "config"])
def test_removed_globals_are_undefined(name: str) -> None:
    """KV2-AC-284: Jinja's lipsum/cycler/joiner/namespace are not available."""
    with pytest.raises(TemplateSyntaxError, match=f"'{name}' is undefined"):
        compile_template("{{ " + name + "() }}", name="t.j2")


@pytest.mark.parametrize("name", ["random", "center", "wordwrap", "batch", "slice", "pprint"])
def test_removed_filters(name: str) -> None:
    """Non-deterministic and amplifying filters are not available (docs/templates.md)."""
    with pytest.raises(TemplateSyntaxError, match=f"t.j2:1: .*{name}"):
        compile_template("{{ [1]|" + name + " }}", name="t.j2")


def test_pure_helpers_remain() -> None:
    """The sandbox keeps the pure string methods and filters templates commonly use."""
    text = (
        "{{ 'a,b'.split(',')|join('-') }}|{{ ' x '.strip().upper() }}|"
        "{{ '%s=%d'|format('n', 3) }}|{{ '{}:{}'.format('h', 1) }}|{{ 'ab'|replace('a', 'z') }}|"
        "{{ 'l1\\nl2'|indent(2) }}|{{ dict(a=1)|toJSON }}|{{ [3, 1]|sort|first }}"
    )
    assert run(text) == 'a-b|X|n=3|h:1|zb|l1\n  l2|{"a":1}|1'


# -- limits --------------------------------------------------------------------------------


def test_max_output_bytes_stops_runaway_output() -> None:
    """KV2-INV-073, KV2-FC-073, KV2-AC-285: output past the limit is a RenderError."""
    text = "{% for i in range(10000) %}0123456789{% endfor %}"
    assert len(run(text, max_output_bytes=100_000)) == 100_000
    err = fails(text, max_output_bytes=99_999)
    assert type(err) is RenderError and "max_output_bytes (99999)" in err.message


def test_max_output_bytes_counts_utf8_bytes() -> None:
    """KV2-INV-073: the limit is in bytes, not characters."""
    assert run("{{ 'é' * 5 }}", max_output_bytes=10) == "é" * 5
    with pytest.raises(RenderError, match="max_output_bytes"):
        run("{{ 'é' * 6 }}", max_output_bytes=11)


def test_range_is_bounded() -> None:
    """KV2-AC-285: range() is limited to MAX_RANGE items."""
    assert run(f"{{{{ range({MAX_RANGE})|list|length }}}}") == str(MAX_RANGE)
    err = fails(f"{{% for i in range({MAX_RANGE + 1}) %}}{{% endfor %}}")
    assert "range() is limited" in err.message


def test_runaway_loops_stop_quickly() -> None:
    """KV2-AC-285: nested loops with no output are stopped by the step budget."""
    text = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    started = time.monotonic()
    err = fails(text)
    assert "loop iterations" in err.message
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    "text",
    [
        "{{ 'a' * 100000000 }}",
        "{{ ['a'] * 100000000 }}",
        "{{ 2 ** 100000 }}",
        "{{ '%999999999s' % 'x' }}",
        "{{ '%*s' % (5, 'x') }}",
        "{{ '{:>999999999}'.format('x') }}",
        "{{ 'x'.ljust(999999999) }}",
        "{{ 'x\\t'.expandtabs(999999999) }}",
        "{{ '%999999999s'|format('x') }}",
        "{{ ('a' * 1000)|indent(9999999) }}",
        "{{ ('\\n' * 1000)|indent(2000) }}",
        "{{ ('a' * 1000)|replace('a', 'b' * 100000) }}",
        "{{ ('a' * 1000).replace('a', 'b' * 100000) }}",
        "{{ ('x' * 1000).join(range(10000)|map('string')) }}",
        "{{ range(10000)|join('x' * 1000) }}",
        "{% set x = 'ab' %}" + "{% set x = x ~ x %}" * 30 + "{{ x|length }}",
        "{% set x = 'ab' %}" + "{% set x = x + x %}" * 30 + "{{ x|length }}",
        "{% set x = ['ab'] %}" + "{% set x = [x, x] %}" * 40 + "{{ x|length }}",
        "{% set x = {'a': 'b'} %}" + "{% set x = {'a': x, 'b': x} %}" * 40 + "{{ 1 }}",
        "{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n else s }}{% endmacro %}{{ f('ab', 40) }}",
        "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    ],
)
def test_resource_bombs_are_refused(text: str) -> None:
    """KV2-AC-285: amplifying operations are refused before they exhaust memory or CPU."""
    started = time.monotonic()
    err = fails(text)
    assert type(err) is RenderError and err.where.startswith("t.j2")
    assert time.monotonic() - started < 30


# -- errors never carry values -------------------------------------------------------------


def test_runtime_error_messages_are_redacted() -> None:
    """KV2-AC-083, KV2-INV-001: a Python error quoting a value shows [redacted] instead."""
    ref = "vault+kv2:///secret/data/app/config"
    for text in (
        f'{{{{ kv2("{ref}#token")|int + "x" }}}}',
        f'{{{{ kv2("{ref}#token") + 1 }}}}',
        f'{{{{ kv2("{ref}#token")|base64Decode }}}}',
        f'{{{{ kv2("{ref}#token").index("zzz") }}}}',
        f'{{{{ kv2("{ref}")[kv2("{ref}#token")] }}}}',
        f'{{{{ {{}}[kv2("{ref}#token")].x }}}}',
    ):
        err = fails(text)
        assert SENTINEL not in str(err) and SENTINEL not in repr(err), text
        assert err.__cause__ is None and err.__suppress_context__
    # these two would quote the value (a key lookup by value); the message keeps the shape.
    # kv2render's own missing-key message names no computed key at all (KV2-INV-366).
    assert "a computed key was not found in secret secret/app/config" in str(
        fails(f'{{{{ kv2("{ref}")[kv2("{ref}#token")] }}}}')
    )
    assert f"'{REDACTED}'" in str(fails(f'{{{{ {{}}[kv2("{ref}#token")].x }}}}'))


def test_redact_replaces_every_spelling() -> None:
    """KV2-INV-001: raw, repr-escaped and JSON-escaped spellings; short values only quoted."""
    secrets = [
        version(
            DB,
            {"a": "hunter22", "q": "it's\x01", "n": 987654, "s": "ab", "deep": {"x": ["zz-top"]}},
        )
    ]
    text = (
        'raw hunter22; repr "it\'s\\x01"; json "it\'s\\u0001"; num 987654; '
        "short 'ab' and ab; deep zz-top; line 5"
    )
    assert redact(text, secrets) == (
        f'raw {REDACTED}; repr "{REDACTED}"; json "{REDACTED}"; num {REDACTED}; '
        f"short '{REDACTED}' and ab; deep {REDACTED}; line 5"
    )
    assert redact("nothing here", secrets) == "nothing here"
    assert redact("x", []) == "x"


def test_repr_shows_no_values() -> None:
    """KV2-INV-001: the data view's repr carries metadata only."""
    out = run(f'{{{{ kv2("{REF}")|string }}}}')  # str() is JSON, by design: it is output
    assert json.loads(out)["username"] == "app"
    tpl = compile_template(f'{{{{ kv2("{REF}#password") }}}}', name="t.j2")
    assert "p&<>" not in repr(tpl)


# -- the ready templates -------------------------------------------------------------------

READY = {
    DB: version(
        DB,
        {
            "username": "app:user",
            "password": "p@ss:w\\rd$'\"&<>",
            "host": "db.example.com",
            "port": 5432,
        },
        number=9,
    ),
    CFG: version(
        CFG,
        {
            "api-key": 'it\'s $HOME `id` "q" \\n',
            "DB_URL": "postgres://a:b@h/db?x=1&y=2",
            "multi": "line1\nline2",
            "port": 8080,
            "flags": {"a": True},
            "empty": "",
        },
    ),
}


def ready(name: str, secrets: dict[SecretLocation, SecretVersion] = READY) -> str:
    path = TEMPLATES / name
    return render(compile_template(path.read_text(), name=str(path)), secrets)


def test_ready_password_template() -> None:
    """KV2-AC-084: the bare value, no trailing newline (the connector's password_file)."""
    assert ready("password.j2") == "p@ss:w\\rd$'\"&<>"


def test_ready_pgpass_template() -> None:
    """KV2-AC-084: host:port:database:user:password with libpq escapes; missing keys are '*'."""
    assert ready("pgpass.j2") == "db.example.com:5432:*:app\\:user:p@ss\\:w\\\\rd$'\"&<>\n"
    minimal = {DB: version(DB, {"username": "u", "password": "pw"})}
    assert ready("pgpass.j2", minimal) == "*:*:*:u:pw\n"


def test_ready_env_template() -> None:
    """KV2-AC-084: one sorted NAME='value' line per key, values single-quoted for sh."""
    assert ready("env.j2") == (
        "DB_URL='postgres://a:b@h/db?x=1&y=2'\n"
        "API_KEY='it'\\''s $HOME `id` \"q\" \\n'\n"
        "EMPTY=''\n"
        "FLAGS='{\"a\":true}'\n"
        "MULTI='line1\nline2'\n"
        "PORT='8080'\n"
    )


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs a POSIX sh")
def test_ready_env_template_round_trips_through_sh(tmp_path: Path) -> None:
    """KV2-AC-084: a POSIX shell reads back exactly the secret's values (no expansion)."""
    env_file = tmp_path / "app.env"
    env_file.write_text(ready("env.j2"))
    script = f"set -a; . '{env_file}'; set +a; for n in API_KEY DB_URL MULTI PORT EMPTY; do "
    script += 'printf "%s=%s\\0" "$n" "$(printenv "$n"; echo x)"; done'
    out = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, check=True, env={"PATH": os.defpath}
    ).stdout
    got = dict(item.split("=", 1) for item in out.split("\0") if item)
    got = {k: v[: -len("\nx")] for k, v in got.items()}  # printenv's newline + our sentinel
    data = READY[CFG].data
    assert got == {
        "API_KEY": data["api-key"],
        "DB_URL": data["DB_URL"],
        "MULTI": data["multi"],
        "PORT": "8080",
        "EMPTY": "",
    }


def test_ready_json_template() -> None:
    """KV2-AC-084: a valid JSON document with the secret's values and version."""
    out = ready("config.json.j2")
    assert out == (
        "{\n"
        '  "database": {\n'
        '    "host": "db.example.com",\n'
        '    "port": 5432,\n'
        '    "user": "app:user",\n'
        '    "password": "p@ss:w\\\\rd$\'\\"\\u0026\\u003c\\u003e"\n'
        "  },\n"
        '  "secret_version": 9\n'
        "}\n"
    )
    assert json.loads(out)["database"]["password"] == READY[DB].data["password"]


def test_ready_templates_reference_placeholders_only() -> None:
    """The shipped templates reference the documented placeholder secrets, nothing else."""
    for path in sorted(TEMPLATES.glob("*.j2")):
        tpl = compile_template(path.read_text(), name=str(path))
        assert tpl.locations <= {DB, CFG}, path.name
