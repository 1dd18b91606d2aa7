"""kv2render/config/hcl.py, the Vault Agent HCL reader, against python-hcl2 (KV2-NFR-237).

python-hcl2 read agent configs until it cost more start-up than the rest of an HCL ``--once``;
it stays a test dependency as the oracle here. ``_oracle`` is exactly what kv2render did
before: python-hcl2 with these options, then the heredoc pass config_sources applied to its
output. Every agent config we know of (examples, docs, the HCL inputs of the other tests,
gathered into hcl_corpus/ by hcl_corpus/_record.py) and Hypothesis-generated ones must give
the same tree (KV2-AC-236). Where python-hcl2 accepted something Vault Agent refuses or reads
differently, kv2render now refuses it with a ConfigError naming the line (KV2-AC-237), and
hostile text fails fast with HclError only (KV2-AC-238).
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hcl2
import pytest
from hcl2.utils import SerializationOptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kv2render.config import hcl
from kv2render.config.sources import load_tree
from kv2render.devserver import DevServer
from kv2render.errors import ConfigError
from tests.integration.cli_helpers import REPO, cli_env, run_cli

CORPUS = Path(__file__).resolve().parent / "hcl_corpus"
EXAMPLES = REPO / "examples" / "vault-agent"
SENTINEL = "S3NT1NEL-hcl-4a7f"
_HCL_BLOCK = re.compile(r"^```hcl\n(.*?)^```$", re.MULTILINE | re.DOTALL)

# -- the oracle: what kv2render read before ----------------------------------------------------

_OPTIONS = SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True, preserve_heredocs=True
)
_HEREDOC = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_-]*)\n(.*?)[ \t]*\2\Z", re.DOTALL)


def _heredocs(node: Any) -> Any:
    """config_sources._heredocs as it was, verbatim."""
    if isinstance(node, dict):
        return {key: _heredocs(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_heredocs(item) for item in node]
    if isinstance(node, str):
        match = _HEREDOC.match(node)
        if match is None:
            return node
        body = match.group(3)
        if match.group(1):
            lines = body.splitlines(keepends=True)
            widths = [len(line) - len(line.lstrip(" \t")) for line in lines if line.strip()]
            cut = min(widths, default=0)
            body = "".join(line[cut:] if line.strip() else line.lstrip(" \t") for line in lines)
        return body
    return node


def _oracle(text: str) -> Any:
    """python-hcl2's tree, or None when it refuses the text."""
    try:
        tree = hcl2.loads(text, serialization_options=_OPTIONS)
    except Exception:  # noqa: BLE001 - lark raises many types
        return None
    return _heredocs(tree)


def _same(a: Any, b: Any) -> bool:
    """Equal, key order and int/float/bool types included (convert-config prints the order)."""
    return json.dumps(a) == json.dumps(b)


def _octal_read(mine: Any, oracle: Any) -> Any:
    """``oracle`` with the one documented difference in numbers applied (KV2-INV-495): where
    python-hcl2 read an integer written with a leading zero in decimal (``0640`` as 640),
    kv2render reads it in octal as the agent does (416). An integer of the oracle whose
    decimal digits, read in octal, give kv2render's integer is taken as kv2render's."""
    if isinstance(mine, dict) and isinstance(oracle, dict):
        return {k: _octal_read(mine.get(k), v) for k, v in oracle.items()}
    if isinstance(mine, list) and isinstance(oracle, list) and len(mine) == len(oracle):
        return [_octal_read(m, o) for m, o in zip(mine, oracle, strict=True)]
    ints = [type(v) is int for v in (mine, oracle)]
    if all(ints) and set(str(abs(oracle))) <= set("01234567"):
        if int(str(abs(oracle)), 8) * (-1 if oracle < 0 else 1) == mine:
            return mine
    return oracle


def _same_reading(mine: Any, oracle: Any) -> bool:
    """_same, but for leading-zero integers: octal here, decimal in python-hcl2."""
    return _same(mine, _octal_read(mine, oracle))


def _known_configs() -> dict[str, str]:
    texts = {f"examples/{p.name}": p.read_text() for p in sorted(EXAMPLES.glob("*.hcl"))}
    for doc in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for i, match in enumerate(_HCL_BLOCK.finditer(doc.read_text(encoding="utf-8"))):
            texts[f"{doc.relative_to(REPO)}#{i}"] = match.group(1)
    for path in sorted(CORPUS.glob("*.hcl")):
        texts[f"corpus/{path.name}"] = path.read_text(encoding="utf-8")
    return texts


KNOWN = _known_configs()


def test_the_known_configs_are_all_there() -> None:
    """KV2-AC-236: the differential corpus is not silently empty (a broken glob must fail)."""
    assert len([k for k in KNOWN if k.startswith("examples/")]) >= 3
    assert len([k for k in KNOWN if k.startswith("docs/")]) >= 5
    assert len([k for k in KNOWN if k.startswith("corpus/")]) >= 25


@pytest.mark.parametrize("name", sorted(KNOWN))
def test_same_tree_as_python_hcl2(name: str) -> None:
    """KV2-AC-236 KV2-INV-256: every agent config we know gives python-hcl2's tree, or both
    refuse it (two corpus files are deliberate syntax errors)."""
    text = KNOWN[name]
    expected = _oracle(text)
    if expected is None:
        with pytest.raises(hcl.HclError):
            hcl.loads(text)
        return
    assert _same_reading(hcl.loads(text), expected)


# -- generated configs: the same tree, and the tree they were generated from --------------------

_RESERVED = {"true", "false", "null", "in", "for", "if", "for_each", "else", "endif", "endfor"}
_IDENTS = st.from_regex(r"[a-z_][a-z0-9_-]{0,7}", fullmatch=True).filter(
    lambda s: s not in _RESERVED
)
_PLAIN = st.sampled_from(list("abcXYZ019 .,:;!?'/<>=+*&|^~-_@#()[]{}") + ["é", "ß", "😀", "\x7f"])
_SIMPLE_TEXT = st.text(alphabet="abcxyz019 -./", max_size=8)
_MARKERS = ("EOT", "EOF", "END_X", "T-1")


@st.composite
def _strings(draw: Any) -> tuple[str, str]:
    """(value, HCL source) of a quoted string: escapes in every form HCL allows, ``{{ }}``
    as consul-template writes it, and ``${...}`` in the forms python-hcl2 keeps verbatim."""
    value, source = [], []
    for _ in range(draw(st.integers(0, 12))):
        kind = draw(st.integers(0, 9))
        if kind <= 4:
            char = draw(_PLAIN)
            value.append(char)
            form = draw(st.integers(0, 2))
            if form == 0 or char == "{" or char == "}":
                source.append(char)
            elif ord(char) <= 0xFFFF:
                source.append(f"\\u{ord(char):04x}" if form == 1 else f"\\u{ord(char):04X}")
            else:
                source.append(f"\\U{ord(char):08x}")
        elif kind == 5:
            char = draw(st.sampled_from(['"', "\\", "\n", "\t", "\r"]))
            value.append(char)
            escaped = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}[char]
            source.append(draw(st.sampled_from([escaped, "\t"])) if char == "\t" else escaped)
        elif kind == 6:
            piece = draw(st.sampled_from(["{{ .Data.data.password }}", '{{ "x" }}', "{{- end -}}"]))
            value.append(piece)
            source.append(piece.replace('"', '\\"'))
        else:
            piece = draw(st.sampled_from(["$ ", "$x", "$$ ", "% ", "%d", "${name}", "$${ x }"]))
            value.append(piece)
            source.append(piece)
    return "".join(value), '"' + "".join(source) + '"'


@st.composite
def _heredocs_gen(draw: Any) -> tuple[str | None, str]:
    """(value, source) of a heredoc; value None for ``<<-`` (the oracle decides the dedent)."""
    marker = draw(st.sampled_from(_MARKERS))
    lines = draw(
        st.lists(
            st.text(alphabet='ab {}"\\$%#/*é\t=', max_size=12).filter(
                lambda line: line.lstrip(" \t") != marker
            ),
            max_size=4,
        )
    )
    indent = draw(st.sampled_from(["", "  ", "\t"]))
    trim = draw(st.booleans())
    body = "".join(indent * trim + line + "\n" for line in lines)
    source = f"<<{'-' if trim else ''}{marker}\n{body}{indent}{marker}\n"
    return (None if trim else body), source


_NUMBERS = st.one_of(
    st.integers(-(10**6), 10**12).map(lambda n: (n, str(n))),
    # KV2-INV-495: a leading zero makes an integer octal, as Go's strconv base 0 reads it.
    st.tuples(st.integers(0, 0o777), st.integers(1, 3)).map(
        lambda t: (t[0], "0" * t[1] + format(t[0], "o"))
    ),
    st.tuples(st.integers(-999, 999), st.from_regex(r"[0-9]{1,4}", fullmatch=True)).map(
        lambda t: (float(f"{t[0]}.{t[1]}"), f"{t[0]}.{t[1]}")
    ),
)
_LEAVES = st.one_of(
    _strings(),
    _heredocs_gen(),
    _NUMBERS,
    st.sampled_from([(True, "true"), (False, "false"), (None, "null")]),
).map(lambda pair: ("leaf", pair[0], pair[1]))
_KEYS = st.one_of(_IDENTS.map(lambda k: (k, k)), _SIMPLE_TEXT.map(lambda k: (k, f'"{k}"')))
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: ("list", items)),
        st.lists(st.tuples(_KEYS, inner), max_size=4, unique_by=lambda kv: kv[0][0]).map(
            lambda items: ("object", items)
        ),
    ),
    max_leaves=12,
)


class _Unknown:
    """Stands for a ``<<-`` heredoc's value in an expected tree: the oracle decides it."""


def _render(node: Any, rnd: random.Random) -> tuple[Any, str]:
    """(expected value, HCL source) of a generated value, formatted at random."""
    kind = node[0]
    if kind == "leaf":
        return (_Unknown if node[1] is None and node[2].startswith("<<-") else node[1]), node[2]
    gap = lambda: rnd.choice(["", " ", "\n", "\n  "])  # noqa: E731
    if kind == "list":
        values, parts = [], []
        for item in node[1]:
            value, source = _render(item, rnd)
            values.append(value)
            parts.append(source)
        trailing = "," if parts and rnd.random() < 0.3 else ""
        return values, "[" + gap() + ("," + gap()).join(parts) + trailing + "]"
    out: dict[str, Any] = {}
    elems = []
    for (key, key_source), item in node[1]:
        value, source = _render(item, rnd)
        out[key] = value
        elems.append(f"{key_source}{rnd.choice([' = ', '=', ': '])}{source}")
    seps = [", ", ",\n", "\n"] + ([" "] if rnd.random() < 0.2 else [])
    body = "".join(
        e + (rnd.choice(seps) if i < len(elems) - 1 else "") for i, e in enumerate(elems)
    )
    end = rnd.choice(["", "\n", ","]) if elems else ""
    return out, "{" + rnd.choice(["", "\n"]) + body + end + "}"


_COMMENTS = ("# a comment", "// a comment", "/* a\n comment */")


def _render_body(items: list[Any], rnd: random.Random, depth: int) -> tuple[dict[str, Any], str]:
    out: dict[str, Any] = {}
    lines = []
    pad = "  " * depth
    for item in items:
        if rnd.random() < 0.15:
            lines.append(pad + rnd.choice(_COMMENTS))
        if item[0] == "attr":
            _, name, node = item
            if name in out:
                continue  # generated twice: kv2render refuses duplicates (KV2-AC-237)
            value, source = _render(node, rnd)
            out[name] = value
            end = "" if source.endswith("\n") else rnd.choice(["", "", " # c", " // c"])
            lines.append(f"{pad}{name}{rnd.choice([' = ', '=', '   = '])}{source}{end}")
        else:
            _, name, labels, children = item
            if name in out and not isinstance(out[name], list):
                continue
            body, source = _render_body(children, rnd, depth + 1)
            nested: Any = body
            for label, _ in reversed(labels):
                nested = {label: nested}
            out.setdefault(name, []).append(nested)
            heads = " ".join(label_source for _, label_source in labels)
            lines.append(f"{pad}{name} {heads}{' ' if heads else ''}{{\n{source}{pad}}}")
    return out, "".join(line + "\n" + rnd.choice(["", "", "\n"]) for line in lines)


_LABELS = st.lists(
    st.one_of(_IDENTS.map(lambda k: (k, k)), _SIMPLE_TEXT.map(lambda k: (k, f'"{k}"'))),
    max_size=2,
)
_ATTR_NAMES = st.sampled_from(["address", "contents", "perms", "x", "config", "a-b", "_y"])
_BLOCK_NAMES = st.sampled_from(["template", "vault", "method", "auto_auth", "exec"])
_BODIES = st.recursive(
    st.lists(st.tuples(st.just("attr"), _ATTR_NAMES, _VALUES), max_size=4),
    lambda inner: st.lists(
        st.one_of(
            st.tuples(st.just("attr"), _ATTR_NAMES, _VALUES),
            st.tuples(st.just("block"), _BLOCK_NAMES, _LABELS, inner),
        ),
        max_size=4,
    ),
    max_leaves=4,
)


def _fill(expected: Any, actual: Any) -> Any:
    """``expected`` with each _Unknown replaced by the value found at its place in ``actual``."""
    if expected is _Unknown:
        return actual
    if isinstance(expected, dict) and isinstance(actual, dict):
        return {k: _fill(v, actual.get(k)) for k, v in expected.items()}
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [_fill(e, a) for e, a in zip(expected, actual, strict=True)]
    return expected


_GENERATED = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@_GENERATED
@given(body=_BODIES, rnd=st.randoms(use_true_random=False))
def test_generated_configs_give_their_tree_and_python_hcl2s(body: Any, rnd: random.Random) -> None:
    """KV2-AC-236: a generated config gives the tree it was generated from, and the tree
    python-hcl2 gives: blocks as lists, nested labels, escapes, heredocs, numbers with leading
    zeros, lists and objects in every separator style, comments."""
    expected, text = _render_body(body, rnd, 0)
    mine = hcl.loads(text)
    oracle = _oracle(text)
    assert oracle is not None, text
    assert _same_reading(mine, oracle), text
    assert _same(mine, _fill(expected, mine)), text


# -- departures: refused, with the line, never the text ----------------------------------------

DEPARTURES = [
    # (id, text, line of the error, words of the message)
    ("duplicate-attribute", f'a = "{SENTINEL}"\n\na = "x"\n', 3, "set twice"),
    ("block-then-attribute", f'vault {{}}\nvault = "{SENTINEL}"\n', 2, "both a block"),
    ("attribute-then-block", f'vault = "{SENTINEL}"\nvault {{}}\n', 2, "both an attribute"),
    ("duplicate-object-key", f'c = {{\n k = 1\n k = "{SENTINEL}"\n}}\n', 3, "set twice"),
    ("unknown-escape", f'a = "{SENTINEL}\\b"\n', 1, "unknown escape"),
    ("octal-escape", f'a = "\\101{SENTINEL}"\n', 1, "unknown escape"),
    ("surrogate-escape", f'a = "{SENTINEL}\\ud83d\\ude00"\n', 1, "not a Unicode character"),
    ("too-large-escape", f'a = "\\U00110000{SENTINEL}"\n', 1, "not a Unicode character"),
    ("line-break-in-quotes", f'x = 1\na = "{SENTINEL}\nmore"\n', 2, "not closed on its line"),
    ("unterminated-string", f'x = 1\n\na = "{SENTINEL}', 3, "not closed on its line"),
    ("bare-name", f"x = 1\ntoken_file_path = {SENTINEL.replace('-', '_')}\n", 2, "a name where"),
    ("capital-true", "a = True\n", 1, "a name where"),
    ("expression", "a = 1 + 2\n", 1, "expected an attribute name"),
    ("function-call", f'a = file("{SENTINEL}")\n', 1, "a name where"),
    ("exponent", "perms = 1e3\n", 1, "not a number"),
    ("illegal-octal", "x = 1\nperms = 0680\n", 2, "illegal octal number"),
    ("octal-prefix-0o", "perms = 0o640\n", 1, "not a number"),
    ("out-of-int64", "uid = 9223372036854775808\n", 1, "out of the 64-bit range"),
    ("unterminated-heredoc", f"x = 1\na = <<EOT\n{SENTINEL}\nEOX\n", 2, "never closed"),
    ("heredoc-marker-not-alone", f"a = <<EOT {SENTINEL}\nx\nEOT\n", 1, "must end its line"),
    ("heredoc-dotted-marker", f"a = <<E.T\n{SENTINEL}\nE.T\n", 1, "must end its line"),
    ("unclosed-block", f'vault {{\n  address = "{SENTINEL}"\n', 1, "never closed"),
    ("unclosed-list", f'x = 1\na = ["{SENTINEL}",\n', 2, "never closed"),
    ("unclosed-object", f'a = {{ k = "{SENTINEL}"\n', 1, "never closed"),
    ("unclosed-comment", f"x = 1\n/* {SENTINEL}\n", 2, "never closed"),
    ("unclosed-interpolation", f'a = "${{{SENTINEL}"\n', 1, "not closed on its line"),
    ("stray-brace", f'a = "{SENTINEL}"\n}}\n', 2, "closes nothing"),
    ("quoted-attribute-name", f'"a" = "{SENTINEL}"\n', 1, "expected an attribute name"),
    ("comma-in-block", f'b {{ a = 1, c = "{SENTINEL}" }}\n', 1, "expected an attribute name"),
    ("semicolon", f'a = "{SENTINEL}";\n', 1, "expected an attribute name"),
    ("numeric-object-key", f'a = {{ 1 = "{SENTINEL}" }}\n', 1, "expected an object key"),
    ("nul", f'a = "{SENTINEL}"\nb = "\x00"\n', 2, "NUL"),
    ("missing-value", f'a =\n  "{SENTINEL}"\n', 1, "must start on the line of its name"),
    ("no-brace", "vault\n\n", 1, "followed on its line"),
    ("label-on-next-line", 'method\n"approle" {\n}\n', 1, "followed on its line"),
    ("lost-hash", " a comment\ntemplate {\n}\n", 1, "on the line of its type"),
    ("unclosed-escaped-interpolation", f'a = "$${{ {SENTINEL}"\n', 1, "not closed on its line"),
    ("object-value-next-line", "a = {\n  k =\n  1\n}\n", 2, "on the line of its key"),
    ("file-ends-after-equals", "x = 1\na = ", 2, "must start on the line"),
]


@pytest.mark.parametrize(
    ("text", "line", "words"), [d[1:] for d in DEPARTURES], ids=[d[0] for d in DEPARTURES]
)
def test_refused_with_the_line_and_never_the_text(
    workdir: Path, text: str, line: int, words: str
) -> None:
    """KV2-AC-237 KV2-INV-001: what python-hcl2 accepted wrongly (or refused with a lark
    error) is a ConfigError (exit 2) naming file:line and column, without the input's text."""
    path = workdir / "agent.hcl"
    path.write_bytes(text.encode("utf-8"))
    with pytest.raises(ConfigError) as caught:
        load_tree(path)
    err = caught.value
    assert err.exit_code == 2
    assert err.where == f"{path}:{line}"
    assert err.message.startswith("invalid HCL (column ")
    assert words in str(err)
    assert SENTINEL not in str(err) and SENTINEL not in repr(err)
    assert "S3NT1NEL" not in str(err)


def test_refused_config_exits_2_from_the_cli(workdir: Path) -> None:
    """KV2-AC-237: `kv2render check` on such a file exits 2 with the place, never the text."""
    path = workdir / "agent.hcl"
    path.write_text(f'vault {{\n  address = "x"\n}}\nvault = "{SENTINEL}"\n', encoding="utf-8")
    result = run_cli(["check", "--config", str(path)])
    assert result.code == 2, result.err
    assert f"{path}:4" in result.err and "Traceback" not in result.err
    assert SENTINEL not in result.err + result.out


def test_crlf_files_read_as_their_lf_twin(workdir: Path) -> None:
    """KV2-AC-236: a file saved with CRLF line endings reads as with LF (the config is read in
    text mode); a carriage return reaching a heredoc any other way is refused, not kept."""
    lf = 'vault {\n  address = "http://x"\n}\ntemplate {\n  contents = <<EOT\na\nEOT\n}\n'
    path = workdir / "agent.hcl"
    path.write_bytes(lf.replace("\n", "\r\n").encode())
    assert load_tree(path) == hcl.loads(lf) == _oracle(lf)
    with pytest.raises(hcl.HclError, match="carriage return") as caught:
        hcl.loads(lf.replace("\n", "\r\n"))
    assert caught.value.line == 5


def test_brace_on_the_next_line_opens_the_block() -> None:
    """KV2-AC-237: ``listener "tcp"`` with ``{`` on the next line is the block Vault reads;
    python-hcl2 made the line break a label. Labels themselves stay on the type's line."""
    text = 'listener "tcp"\n{\n  a = 1\n}\nvault\n{\n}\n'
    assert hcl.loads(text) == {"listener": [{"tcp": {"a": 1}}], "vault": [{}]}
    assert _oracle(text) == {"listener": [{"tcp": {"\n": {"a": 1}}}], "vault": [{"\n": {}}]}


def test_a_quoted_string_that_looks_like_a_heredoc_is_kept() -> None:
    """KV2-AC-237: a bug of the old heredoc pass, fixed: it rewrote any string value shaped
    like ``<<EOT\\n...EOT``, quoted ones included, so ``"<<EOT\\nx\\nEOT"`` became ``x\\n``."""
    text = 'a = "<<EOT\\nbody\\nEOT"\n'
    assert hcl.loads(text) == {"a": "<<EOT\nbody\nEOT"}
    assert _oracle(text) == {"a": "body\n"}


def test_templates_in_strings_are_kept_verbatim() -> None:
    """KV2-AC-237: ``${...}`` and ``%{...}`` are text to Vault Agent (its HCL 1 does not
    interpolate), kept byte for byte; python-hcl2 reformatted their spacing. Escapes inside
    them are not decoded, and a quote inside ``${ }`` does not end the string."""
    text = 'a = "${ x }|$${ y }|%{ if z }w%{ endif }|${"}"}|${a\\n}|{{ .X }}"\n'
    assert hcl.loads(text) == {"a": '${ x }|$${ y }|%{ if z }w%{ endif }|${"}"}|${a\\n}|{{ .X }}'}
    assert _oracle('a = "${ x }"') == {"a": "${x}"}  # the python-hcl2 reading we leave


def test_perms_octal_and_heredoc_bytes_as_before(workdir: Path) -> None:
    """KV2-AC-236 KV2-INV-256 KV2-INV-495: ``perms = 0640`` is the integer 0o640 (416, as
    the agent reads it; python-hcl2 gave 640), heredocs keep their final newline, ``<<-``
    dedents."""
    text = (
        "template {\n  perms = 0640\n  contents = <<EOT\n{{ .A }}\n  x\nEOT\n"
        "  source = <<-EOT\n    a\n      b\n\n    EOT\n}\n"
    )
    tree = hcl.loads(text)
    assert tree == {
        "template": [{"perms": 0o640, "contents": "{{ .A }}\n  x\n", "source": "a\n  b\n\n"}]
    }
    assert _oracle(text)["template"][0]["perms"] == 640  # the python-hcl2 reading we leave
    assert _same_reading(tree, _oracle(text))


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ("0640", 0o640),
        ("0600", 0o600),
        ("420", 420),
        ("644", 644),
        ("0x1A4", 0x1A4),
        ("0X1a4", 0x1A4),
        ("-0640", -0o640),
        ("0", 0),
        ("000", 0),
        ("0.5", 0.5),
        ("0159.23", 159.23),
        ("9223372036854775807", 9223372036854775807),
    ],
)
def test_integers_follow_go_base_0_as_the_agent_reads_them(literal: str, value: Any) -> None:
    """KV2-AC-480 KV2-INV-495: integers as the agent's HCL 1 reads them (strconv base 0):
    a leading 0 is octal, 0x hexadecimal, otherwise decimal; a fraction is a float, leading
    zeros and all. (Measured with OpenBao Agent 2.7.2: ``perms = 0x1A4`` writes 0644,
    ``perms = 0680`` is refused: "illegal octal number".)"""
    tree = hcl.loads(f"a = {literal}\nb = [{literal}]\nc = {{ k = {literal} }}\n")
    assert _same(tree, {"a": value, "b": [value], "c": {"k": value}})


# -- hostile input: only HclError, and quickly ------------------------------------------------


def _quick(fn: Callable[[], object], seconds: float = 5.0) -> float:
    started = time.perf_counter()
    with pytest.raises(hcl.HclError):
        fn()
    elapsed = time.perf_counter() - started
    assert elapsed < seconds, f"took {elapsed:.1f}s"
    return elapsed


_MB = 1 << 20


@pytest.mark.parametrize(
    "text",
    [
        "a = " + "[" * 200_000,
        "a = " + "{ k = " * 200_000,
        "b { " * 200_000,
        "b " + '"l" ' * 200_000 + "{",
        'a = "' + "${" * 200_000 + '"',
        'a = "' + "${" + '"' * 200_000,
        "a = " + "[1, " * 100 + "[" * 1000,
    ],
    ids=["lists", "objects", "blocks", "labels", "interpolations", "quotes", "mixed"],
)
def test_deep_nesting_is_refused_fast(text: str) -> None:
    """KV2-AC-238 KV2-NFR-239: nesting is bounded (hcl.MAX_DEPTH), never a RecursionError."""
    _quick(lambda: hcl.loads(text))


def test_nesting_limit_is_a_config_error(workdir: Path) -> None:
    """KV2-AC-238: through load_tree, too deep is a ConfigError with the line and a hint."""
    path = workdir / "deep.hcl"
    path.write_text("a = [\n" + "[" * (hcl.MAX_DEPTH + 5), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_tree(path)
    assert caught.value.where == f"{path}:2" and caught.value.hint == "flatten it"


@pytest.mark.parametrize(
    "tail",
    ['a = "unterminated', "a = <<EOT\nno end\n", "/* no end", "vault {", "a = [1,", '"x" = 1'],
    ids=["string", "heredoc", "comment", "block", "list", "junk"],
)
def test_huge_file_with_a_late_error_fails_fast(tail: str) -> None:
    """KV2-AC-238 KV2-NFR-239: 10 MB of valid HCL then an error: linear, fails in seconds."""
    block = 'template {\n  contents = "{{ .Data.data.password }}"\n  destination = "/x"\n}\n'
    body = ("# padding\n" + block.replace("template", "t" * 8)) * (8 * _MB // 80)
    text = "x = [" + "1," * 10 + "]\n" + body + tail
    assert len(text) > 8 * _MB
    _quick(lambda: hcl.loads(text), seconds=20)


def test_huge_heredoc_and_string_are_linear() -> None:
    """KV2-AC-238: an 8 MB heredoc and an 8 MB quoted string parse in seconds."""
    line = "x" * 79 + "\n"
    text = "a = <<EOT\n" + line * (8 * _MB // 80) + 'EOT\nb = "' + "y" * (8 * _MB) + '"\n'
    started = time.perf_counter()
    tree = hcl.loads(text)
    assert len(tree["a"]) == 8 * _MB // 80 * 80 and len(tree["b"]) == 8 * _MB
    assert time.perf_counter() - started < 20


def test_value_count_is_bounded() -> None:
    """KV2-AC-238 KV2-NFR-239: more than hcl.MAX_VALUES values is refused while parsing."""
    text = "a = [" + "1," * (hcl.MAX_VALUES + 1) + "]\n"
    _quick(lambda: hcl.loads(text), seconds=30)


def test_invalid_utf8_is_a_config_error(workdir: Path) -> None:
    """KV2-AC-238: bytes that are not UTF-8 (a lone surrogate, latin-1) fail as config errors."""
    for data in (b'a = "\xed\xa0\x80"\n', b'a = "caf\xe9"\n', b"\xff\xfe"):
        path = workdir / "bad.hcl"
        path.write_bytes(data)
        with pytest.raises(ConfigError, match="not UTF-8 text"):
            load_tree(path)


_HOSTILE_PIECES = st.sampled_from(
    [
        "a", "=", " ", "\n", "\r", "\t", '"', "\\", "{", "}", "[", "]", ",", ":", "#", "//",
        "/*", "*/", "<<", "<<-", "EOT", "${", "%{", "$${", "\\u", "\\U", "0", "-", ".", "e",
        "true", "null", "block", "\x00", "é", "\ud800", "0640", "\\n", "\\\"",
    ]
)  # fmt: skip


@settings(max_examples=400, deadline=None, database=None)
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.lists(_HOSTILE_PIECES, max_size=60).map("".join),
    )
)
def test_any_text_gives_a_tree_or_hcl_error(text: str) -> None:
    """KV2-AC-238: arbitrary text yields a tree of plain values or HclError, nothing else."""
    try:
        tree = hcl.loads(text)
    except hcl.HclError as exc:
        assert exc.line >= 1 and exc.column >= 1
        return
    assert isinstance(tree, dict)
    json.dumps(tree)  # plain dicts, lists, strings, numbers, bools, None


@settings(max_examples=300, deadline=None, database=None)
@given(
    body=_BODIES,
    rnd=st.randoms(use_true_random=False),
    cuts=st.lists(st.tuples(st.integers(0, 10_000), _HOSTILE_PIECES), min_size=1, max_size=4),
)
def test_mangled_configs_give_a_tree_or_hcl_error(
    body: Any, rnd: random.Random, cuts: list[tuple[int, str]]
) -> None:
    """KV2-AC-238 KV2-AC-236: a generated config with pieces inserted or replaced at random
    places gives HclError or a tree; when python-hcl2 reads it too, the same tree, except for
    the departures of KV2-AC-237 (templates kept verbatim, a '{' on the next line) and of
    KV2-INV-495 (hexadecimal read, leading-zero integers octal)."""
    _, text = _render_body(body, rnd, 0)
    for at, piece in cuts:
        at %= len(text) + 1
        rest = text[at + 1 :] if rnd.random() < 0.5 else text[at:]
        text = text[:at] + piece + rest
    try:
        mine = hcl.loads(text)
    except hcl.HclError:
        return
    oracle = _oracle(text)
    if oracle is None:
        # python-hcl2 parsed these as expressions; it refuses hexadecimal (KV2-INV-495)
        assert "${" in text or "%{" in text or re.search("0[xX][0-9A-Fa-f]", text), text
    elif not _same_reading(mine, oracle):
        assert any("\n" in key for key in _keys(oracle)), text  # its line-break label


def _keys(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [*node, *(k for v in node.values() for k in _keys(v))]
    if isinstance(node, list):
        return [k for v in node for k in _keys(v)]
    return []


# -- start-up: nothing heavy is imported for an HCL config --------------------------------------

_AGENT = """\
vault {{
  address = "{addr}"
}}
template {{
  contents    = "{{{{ with secret \\"secret/data/app/db\\" }}}}{{{{ .Data.data.password }}}}\
{{{{ end }}}}"
  destination = "{dest}"
}}
"""
_HEAVY = ("hcl2", "lark", "yaml", "jinja2", "watchfiles", "kv2render.devserver")


def _modules_after(argv: list[str], env: dict[str, str]) -> tuple[int, list[str], str]:
    script = (
        "import json, sys\nfrom kv2render.cli import main\n"
        f"code = main({argv!r})\n"
        f"print(json.dumps([code, sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{_HEAVY[:-1]!r} or m.startswith({_HEAVY[-1]!r}))]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=cli_env(env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    code, loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    return code, loaded, proc.stderr


def test_hcl_check_and_once_import_no_parser_generator(
    dev_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-239 KV2-NFR-110: `check` and `--once` on an agent HCL config whose templates are
    consul-template, in a fresh interpreter, leave python-hcl2, lark, PyYAML, Jinja2,
    watchfiles and the dev server out of sys.modules, and render the file."""
    dev_server.put("app/db", {"password": "pw-hcl"})
    dest = workdir / "out"
    path = workdir / "agent.hcl"
    path.write_text(_AGENT.format(addr=dev_server.url, dest=dest), encoding="utf-8")
    env = {"VAULT_TOKEN": dev_server.root_token}
    for argv in (["check", "--config", str(path)], ["--config", str(path), "--once"]):
        code, loaded, err = _modules_after(argv, env)
        assert code == 0, err
        assert loaded == [], argv
    assert dest.read_text() == "pw-hcl"
