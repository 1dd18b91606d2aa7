"""Secret hygiene with values a template derives from a secret (issue 14 item 2).

``redact()`` replaces the secret values themselves; it cannot recognise text computed from
them (lower-cased, reversed, sliced, concatenated, a secret number plus one). Such text used
to reach kv2render's own error messages: ``key 'sentinel-7f3a9c' not found``,
``required environment variable <value> is empty``, ``index out of range: <number>``,
``range() ... this one has <number>``. The fix is structural (KV2-INV-366): no error raised
during a render formats a key, index or argument the template computed.

Every template below fails at render time on a value derived from a sentinel secret, in
Jinja2 and in consul-template. The real CLI runs them at trace level (text and JSON logs);
the API runs each one alone to check exception texts and reprs. The scanner
(``hygiene_util``) looks for the sentinel, its core in any case, reversed, base64, and the
exact derived texts (slices, arithmetic results) registered with ``Sentinels.derive``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kv2render.config import TemplateSpec
from kv2render.devserver import DevServer
from kv2render.errors import MissingKeyError, RenderError
from kv2render.model import SecretVersion
from kv2render.refs import parse_ref
from kv2render.runner import prepare_one

from .cli_helpers import run_cli, write_config
from .hygiene_util import Sentinels, exception_texts, report, scan_tree, snapshot

DB = "secret/data/app/db"
R = f"vault+kv2:///{DB}"
P = f"{R}#password"
PW = f'kv2("{P}")'  # the password, as a Jinja2 expression
N = f'kv2("{R}").count'  # the numeric secret
W = '{{ with secret "' + DB + '" }}%s{{ end }}'  # a consul-template body with the secret as dot


def make_sentinels() -> tuple[Sentinels, int]:
    s = Sentinels()
    s.make("password", "SENTINEL-SECRET-pw")
    count = s.add_number("count")
    pw = s["password"]
    s.derive("slice", pw[-10:])  # 10 characters of the random core
    s.derive("count+1", str(count + 1))
    s.derive("count*2", str(count * 2))
    s.derive("count*3", str(count * 3))
    s.derive("count*5", str(count * 5))
    s.derive("count-7", str(count - 7))
    s.derive("count+3", str(count + 3))
    s.derive("len", f"{len(pw)}0000")  # len(pw) * 10000 below
    return s, count


# (id, Jinja2 template): each fails on a key, index or argument derived from a secret.
JINJA: list[tuple[str, str]] = [
    ("missing-key-lower", f"{{{{ kv2('{R}')[{PW}|lower] }}}}"),
    ("missing-key-upper", f"{{{{ kv2('{R}')[{PW}|upper] }}}}"),
    ("missing-key-reverse", f"{{{{ kv2('{R}')[{PW}|reverse] }}}}"),
    ("missing-key-slice", f"{{{{ kv2('{R}')[{PW}[-10:]] }}}}"),
    ("missing-key-concat", f"{{{{ kv2('{R}')['x-' ~ {PW}] }}}}"),
    ("missing-key-arith", f"{{{{ kv2('{R}')[{N} + 1] }}}}"),
    ("missing-key-secret", f"{{{{ secret('{DB}').Data.data[{PW}|lower] }}}}"),
    ("index-out-of-range", f"{{{{ kv2('{R}').list[{N} * 2] }}}}"),
    ("str-index-out-of-range", f"{{{{ ({PW}|lower)[{N} - 7] }}}}"),
    ("dict-missing-key", f"{{{{ {{}}[{PW}|upper] }}}}"),
    ("range-length", f"{{{{ range({N} * 3) }}}}"),
    ("format-keyerror", f"{{{{ ('{{' ~ {PW}|reverse ~ '}}').format() }}}}"),
    ("format-spec", f"{{{{ ('{{:' ~ {PW}|lower ~ '}}').format(1) }}}}"),
    ("percent-keyerror", f"{{{{ ('%(' ~ {PW}|upper ~ ')s') % {{}} }}}}"),
    ("percent-type", f"{{{{ '%d' % ({PW}|lower) }}}}"),
    ("attr-filter", f"{{{{ 'x'|attr({PW}|lower) }}}}"),
    ("map-attribute", f"{{{{ [{{'a': 1}}]|map(attribute={PW}|lower)|first }}}}"),
    ("dictsort-argument", f"{{{{ kv2('{R}')|dictsort(by={PW}|lower) }}}}"),
    ("round-argument", f"{{{{ 1|round(2, {PW}|reverse) }}}}"),
    ("type-error-concat", f"{{{{ ({PW}|lower) + {N} }}}}"),
    ("type-error-compare", f"{{{{ ({PW}|lower) < {N} }}}}"),
    ("list-index", f"{{{{ [1].index({PW}|lower) }}}}"),
    ("str-index", f"{{{{ 'abc'.index({PW}|reverse) }}}}"),
    ("zfill-type", f"{{{{ 'abc'.zfill({PW}|lower) }}}}"),
    ("base64decode", f"{{{{ ({PW}|lower)|base64Decode }}}}"),
    ("size-repeat", f"{{{{ 'x' * ({N} * 5) }}}}"),
    ("size-ljust", f"{{{{ 'x'.ljust({N} + 3) }}}}"),
    ("size-indent", f"{{{{ 'x'|indent({N} + 3) }}}}"),
    ("size-length", f"{{{{ range(({PW}|length) * 10000) }}}}"),
    ("power", f"{{{{ {N} ** {N} }}}}"),
    ("zero-division", f"{{{{ {N} / ({N} - {N}) }}}}"),
    ("tojson-inf", f"{{{{ ({N}|float * 1e300 * 1e300)|toJSON }}}}"),
    ("sandbox", f"{{{{ ({PW}|lower).encode() }}}}"),
]

# (id, consul-template body run with the secret as dot, error_on_missing_key)
CTMPL: list[tuple[str, str]] = [
    ("mustenv-lower", "{{ mustEnv (toLower .Data.data.password) }}"),
    ("mustenv-printf", '{{ mustEnv (printf "%s-x" .Data.data.password) }}'),
    ("mustenv-pipe", "{{ toUpper .Data.data.password | mustEnv }}"),
    ("mustenv-printf-verb", '{{ mustEnv (printf "%d" .Data.data.password) }}'),
    ("index-out-of-range", "{{ index .Data.data.list .Data.data.count.Int64 }}"),
    ("index-by-length", "{{ index .Data.data.list (len .Data.data.password) }}"),
    ("index-split", '{{ index (split "-" (toLower .Data.data.password)) 9 }}'),
    ("parseint", "{{ parseInt (toLower .Data.data.password) }}"),
    ("parsebool", "{{ parseBool (toUpper .Data.data.password) }}"),
    ("parseint-concat", '{{ parseInt (printf "%s%s" "x" .Data.data.password) }}'),
    ("base64-offset", '{{ base64Decode (printf "YWJj%s" .Data.data.password) }}'),
    ("base64-lower", "{{ base64URLDecode (toLower .Data.data.password) }}"),
    ("field-on-string", "{{ $x := toLower .Data.data.password }}{{ $x.nope }}"),
    ("number-method", "{{ .Data.data.password.Int64 }}"),
    ("len-of-nil", "{{ len (index .Data.data (toLower .Data.data.password)) }}"),
    ("eq-types", "{{ eq (toLower .Data.data.password) 1 }}"),
    ("lt-types", "{{ lt (toLower .Data.data.password) .Data.data.count.Int64 }}"),
    ("size-indent", '{{ indent .Data.data.count.Int64 "x" }}'),
    ("range-string", "{{ range (toLower .Data.data.password) }}{{ end }}"),
    ("missing-key-computed", "{{ index .Data.data (toLower .Data.data.password) | len }}"),
]


def _jinja_entry(text: str) -> dict[str, Any]:
    return {"contents": text}


def _ct_entry(body: str) -> dict[str, Any]:
    return {"contents": W % body, "syntax": "consul-template", "error_on_missing_key": True}


ENTRIES: list[tuple[str, dict[str, Any]]] = [
    *((f"jinja-{name}", _jinja_entry(text)) for name, text in JINJA),
    *((f"ctmpl-{name}", _ct_entry(body)) for name, body in CTMPL),
]


@pytest.fixture
def world(workdir: Path) -> Iterator[tuple[DevServer, Sentinels, int]]:
    s, count = make_sentinels()
    srv = DevServer(flavor="vault").start()
    try:
        srv.put(
            "app/db", {"username": "app", "password": s["password"], "count": count, "list": [1, 2]}
        )
        yield srv, s, count
    finally:
        srv.stop()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_cli_derived_values_never_leak(
    world: tuple[DevServer, Sentinels, int], workdir: Path, fmt: str
) -> None:
    """KV2-AC-372 KV2-INV-366 KV2-INV-001 KV2-FC-090: every template failing on a value derived
    from a secret (both languages) exits 5 and keeps its old file; the good template is
    written; at trace level, no sentinel or derived text is in stdout, stderr or any file."""
    srv, s, _ = world
    out = workdir / "out"
    out.mkdir(mode=0o700)
    templates = []
    for i, (_, entry) in enumerate(ENTRIES):
        dest = out / f"bad{i}"
        dest.write_text("old-good-content")
        templates.append({**entry, "destination": str(dest)})
    good = out / "good"
    templates.append({"ref": f"{R}#username", "destination": str(good)})
    cfg = write_config(workdir, {"vault": {"address": srv.url}, "template": templates})
    before = snapshot(workdir)
    result = run_cli(
        ["--config", str(cfg), "--once", "--log-level", "trace", "--log-format", fmt],
        {"VAULT_TOKEN": srv.root_token},
    )
    assert result.code == 5, result.err[-3000:]
    assert good.read_text() == "app"
    for i, (name, _) in enumerate(ENTRIES):
        assert (out / f"bad{i}").read_text() == "old-good-content", name
        assert f"template[{i}]" in result.err, name
    leaks = s.leaks("stdout", result.out) + s.leaks("stderr", result.err)
    leaks += scan_tree(s, workdir, before, [good])
    assert not leaks, report(leaks)


@pytest.mark.parametrize(("name", "entry"), ENTRIES, ids=[e[0] for e in ENTRIES])
def test_each_derived_error_names_place_and_kind_only(name: str, entry: dict[str, Any]) -> None:
    """KV2-AC-372 KV2-INV-366 KV2-INV-001: each template alone fails with a RenderError naming
    the template and its line; no exception text, repr, where or hint holds the sentinel or a
    derived text."""
    s, count = make_sentinels()
    location = parse_ref(R).location
    version = SecretVersion(
        location, 1, {"username": "app", "password": s["password"], "count": count, "list": [1, 2]}
    )
    spec = TemplateSpec(index=0, destination=Path("/nonexistent/out"), **entry)
    item = prepare_one(spec)
    with pytest.raises(RenderError) as info:
        item.render({location: version})
    err = info.value
    assert err.where is not None and err.where.startswith("template[0].contents:1")
    assert err.__cause__ is None and err.__suppress_context__
    leaks: list[str] = []
    for label, text in exception_texts(err):
        leaks += s.leaks(f"{name} {label}", text)
    assert not leaks, report(leaks)


def _render(entry: dict[str, Any], data: dict[str, Any]) -> RenderError:
    location = parse_ref(R).location
    spec = TemplateSpec(index=0, destination=Path("/nonexistent/out"), **entry)
    with pytest.raises(RenderError) as info:
        prepare_one(spec).render({location: SecretVersion(location, 4, data)})
    return info.value


@pytest.mark.parametrize(
    "entry",
    [
        _jinja_entry(f"{{{{ kv2('{R}').nope }}}}"),
        _jinja_entry(f"{{{{ kv2('{R}')['nope'] }}}}"),
        _jinja_entry(f"{{% set k = 'nope' %}}{{{{ kv2('{R}')[k] }}}}"),
        _jinja_entry(f"{{{{ secret('{DB}').Data.data.nope }}}}"),
        _ct_entry("{{ .Data.data.nope }}"),
        {"ref": parse_ref(f"{R}#nope")},
    ],
)
def test_a_constant_missing_key_is_named(entry: dict[str, Any]) -> None:
    """KV2-AC-373 KV2-INV-366: a key written in the template is the operator's text: the error
    names it and the secret's mount/path (consul-template keeps Go's text, which names the
    field chain of the action instead)."""
    err = _render(entry, {"password": "x"})
    assert isinstance(err, MissingKeyError)
    assert "nope" in str(err)
    if entry.get("syntax") == "consul-template":
        assert "<.Data.data.nope>" in str(err)
    else:
        assert "secret/app/db" in str(err)


@pytest.mark.parametrize(
    "entry",
    [
        _jinja_entry(f"{{{{ kv2('{R}')[{PW}|lower] }}}}"),
        _jinja_entry(f"{{{{ kv2('{R}')['no' ~ 'pe' ~ {PW}[:0]] }}}}"),
        _jinja_entry(f"{{{{ secret('{DB}').Data.data[{PW}[1:]] }}}}"),
    ],
)
def test_a_computed_missing_key_is_not_named(entry: dict[str, Any]) -> None:
    """KV2-AC-373 KV2-INV-366: a computed key is "a computed key"; the secret's mount/path and
    the template's line are still given."""
    err = _render(entry, {"password": "Sentinel-Pw-0c4e"})
    assert isinstance(err, MissingKeyError)
    assert "a computed key was not found" in err.message
    assert "secret/app/db" in err.message
    assert err.where == "template[0].contents:1"
    assert "entinel" not in str(err).lower() and "nope" not in str(err)


@pytest.mark.parametrize(
    ("entry", "ending"),
    [
        (_ct_entry(dict(CTMPL)["index-by-length"]), "error calling index: index out of range"),
        (_ct_entry(dict(CTMPL)["base64-offset"]), "base64Decode: illegal base64 data"),
        (
            _jinja_entry(dict(JINJA)["size-length"]),
            "range() is limited to 10000 items, this one has more",
        ),
        (_jinja_entry(f"{{{{ kv2('{R}').list[{PW}|length] }}}}"), "tuple object has no element …"),
    ],
)
def test_numbers_derived_from_a_secret_are_not_shown(entry: dict[str, Any], ending: str) -> None:
    """KV2-AC-372 KV2-INV-366: a length, index or byte offset computed from a secret (which no
    sentinel scan can recognise) is left out: the message ends with the kind of error."""
    err = _render(entry, {"password": "Sentinel-Pw-0c4e", "count": 5, "list": [1, 2]})
    assert err.message.endswith(ending), err.message
    assert "16" not in err.message  # len("Sentinel-Pw-0c4e")
