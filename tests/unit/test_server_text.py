"""Regressions found against the real OpenBao server (tests/openbao/), pinned at unit level.

* The real server wraps an ACL denial in go-multierror's multi-line text; it used to reach log
  lines as three lines (KV2-AC-318).
* The real server sends ``1e-7`` and ``-0``; Jinja2's ``toJSON`` and an object selected by a
  ``ref:`` used to write ``1e-07`` and ``0`` (KV2-AC-320).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from kv2render import jsonnum
from kv2render.payload import value_to_text
from kv2render.render.filters import to_json, to_json_pretty
from kv2render.store.responses import errors_text as _errors_text


@pytest.mark.parametrize(
    ("errors", "expected"),
    [
        (["1 error occurred:\n\t* permission denied\n\n"], "permission denied"),
        (["2 errors occurred:\n\t* one\n\t* two\n\n"], "one; two"),
        (["permission denied"], "permission denied"),
        (["line\nbreak\r\nand\u2028sep\x1b[31m", ""], "line break and sep [31m"),
        ([], ""),
    ],
)
def test_server_errors_come_out_on_one_line(errors: list[str], expected: str) -> None:
    """KV2-AC-318: go-multierror's items are kept, every other control character is a space."""
    assert _errors_text({"errors": errors}) == expected


_SERVER_BODY = b'{"a": 1.5, "b": 1e-7, "c": -0, "d": [1, 2.5, {"e": 1000}], "f": "1.50"}'


def test_objects_and_to_json_keep_each_number_as_the_server_wrote_it() -> None:
    """KV2-AC-320: a nested number keeps its text in a ``ref:``'s object output and in
    ``toJSON``/``toJSONPretty``."""
    data = jsonnum.loads(_SERVER_BODY)
    assert value_to_text(data) == '{"a":1.5,"b":1e-7,"c":-0,"d":[1,2.5,{"e":1000}],"f":"1.50"}'
    assert value_to_text(data["d"]) == '[1,2.5,{"e":1000}]'
    assert to_json(data) == '{"a":1.5,"b":1e-7,"c":-0,"d":[1,2.5,{"e":1000}],"f":"1.50"}'
    assert to_json_pretty({"b": data["b"], "x": []}) == '{\n  "b": 1e-7,\n  "x": []\n}'


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, 2, {"x": None}], "a": "é<\u2028", "c": True, "d": {}, "e": [], "f": 1.5},
        [[[]], {}, "", 0, -1, 0.1, False],
        {7: "x", 2.5: "y", True: "z", None: "n"},
        "text",
        None,
    ],
)
@pytest.mark.parametrize("indent", [None, 2])
def test_dumps_lays_out_plain_values_as_json_dumps_does(value: Any, indent: int | None) -> None:
    """KV2-AC-320: for values that did not come from the server, ``jsonnum.dumps`` is
    ``json.dumps`` (compact or indented), so templates see no other change."""
    separators = (",", ":") if indent is None else (",", ": ")
    expected = json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)
    assert jsonnum.dumps(value, indent=indent) == expected


def test_dumps_refuses_what_json_dumps_refuses() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="Circular"):
        jsonnum.dumps(loop)
    with pytest.raises(ValueError):
        jsonnum.dumps(float("nan"))
    with pytest.raises(TypeError):
        jsonnum.dumps({"k": object()})
    with pytest.raises(TypeError):
        jsonnum.dumps({(1, 2): "tuple key"})
