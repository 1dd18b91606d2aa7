"""`kv2render convert`: converted Jinja2 renders the bytes the consul-template original renders.

Both sides get the same secrets as hvac decodes them (Python int/float), and the consul-template
side is the interpreter that test_corpus.py holds byte-identical to Go.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kv2render.errors import ConfigError, MissingKeyError, RenderError
from kv2render.model import SecretVersion
from kv2render.refs import SecretLocation
from kv2render.render.ctmpl import compile_ctmpl, render_ctmpl, to_jinja2
from kv2render.render.ctmpl.values import JsonNumber
from kv2render.render.jinja import compile_template, render

from .corpus_util import FIXED_NOW, MODES, Case, load_cases

CASES = load_cases()

# Cases whose Go semantics Jinja2 cannot express; to_jinja2 must refuse them with a ConfigError
# naming the construct (never convert them into something that renders other bytes).
REFUSED = {
    "09-variables": "variable reassignment ($x = ...)",
    "10-printf-verbs": "printf verb",
    "11-base64": "base64URLEncode",
    "14-env": "function env",
    "20-numbers": "printf verb",
    "22-unicode": "printf verb",
    "26-range-list-else": "{{continue}}",
    "27-comparisons": "number 1.5",
    "29-replace-contains": "trimPrefix",
    "30-timestamp": "function timestamp",
    "32-multi-secret-yaml": "urlquery",
    "37-define-template": "{{define}}",
    "06-whole-secret-json": "encoding a whole secret",
    "21-bools-nil": "secret field .Warnings",
    "33-whole-secret-print": "printing a whole secret",
}

# Converted, but the bytes depend on the data in ways no static translation can know: Go
# prints lists/maps as [a b] / map[k:v] where Jinja2 prints JSON, a missing key as <no value>
# where Jinja2 prints nothing, and a float as Go's json.Number literal. The converted template
# is still produced; only its output for these data differs.
DATA_DEPENDENT = {
    "04-json-config": "1e3 arrives from hvac as float 1000.0; Jinja2 writes 1000.0",
    "13-split-join": "prints a list",
    "17-missing-key": "prints a missing key (<no value> in Go, empty in Jinja2)",
    "18-missing-key-index": "prints a missing key",
    "19-nested-maps": "prints maps and lists",
    "38-parenthesized-chain": "prints a map",
    "40-range-error-mode": "prints a map",
}
KNOWN_BUGS: dict[str, str] = {}  # case name -> the bug that keeps it from round-tripping


def _plain(value: Any) -> Any:
    """A corpus value with numbers as Python int/float, as hvac's JSON decoding returns them."""
    if isinstance(value, JsonNumber):
        return json.loads(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _hvac_typed(case: Case) -> dict[SecretLocation, SecretVersion]:
    return {
        location: SecretVersion(location, v.version, _plain(v.data), _plain(v.metadata))
        for location, v in case.secrets.items()
    }


def _convert_cases() -> list[Any]:
    """A known bug is a strict xfail: the case still runs, and its fix turns the mark into a
    failure that says to drop it (KV2-AC-459; an imperative pytest.xfail never ran the case)."""
    return [
        pytest.param(
            c,
            id=c.name,
            marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[c.name])]
            if c.name in KNOWN_BUGS
            else [],
        )
        for c in CASES
    ]


@pytest.mark.parametrize("case", _convert_cases())
def test_convert_refuses_or_round_trips(case: Case) -> None:
    """KV2-AC-262: convert output renders the same bytes, or convert says what it cannot do."""
    if case.name in REFUSED:
        with pytest.raises(ConfigError) as info:
            to_jinja2(
                case.template,
                name=case.name,
                left_delim=case.left_delim,
                right_delim=case.right_delim,
            )
        assert REFUSED[case.name] in str(info.value)
        assert f"{case.name}:" in str(info.value)
        return
    jinja_text = to_jinja2(
        case.template, name=case.name, left_delim=case.left_delim, right_delim=case.right_delim
    )
    secrets = _hvac_typed(case)
    for mode in MODES:
        strict = mode == "error"
        ct = compile_ctmpl(
            case.template,
            name=case.name,
            left_delim=case.left_delim,
            right_delim=case.right_delim,
            error_on_missing_key=strict,
        )
        jinja = compile_template(jinja_text, name=case.name, error_on_missing_key=strict)
        try:
            want = render_ctmpl(ct, secrets, env=case.env, now=lambda: FIXED_NOW)
        except MissingKeyError:
            with pytest.raises(MissingKeyError):  # strict mode fails on a missing key in both
                render(jinja, secrets)
            continue
        except RenderError:
            continue  # Go's type errors (eq json.Number 5432): Jinja2 is more lenient
        got = render(jinja, secrets)
        if case.name not in DATA_DEPENDENT:
            assert got == want, f"mode={mode}"
