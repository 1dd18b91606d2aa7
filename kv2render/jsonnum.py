"""JSON numbers that remember how the server wrote them.

Vault's API client decodes with Go's ``UseNumber``, so a consul-template template
prints ``1.50`` and ``1e3`` exactly as they were stored. Python's ``json`` turns
them into ``1.5`` and ``1000.0``. The store decodes numbers into these int and
float subclasses instead: they behave as numbers everywhere, and the
consul-template engine and ``value_to_text`` print ``json_text``
(KV2-AC-258: numbers keep their JSON text). :func:`dumps` writes JSON the same way, so a
``ref:`` selecting an object and Jinja2's ``toJSON`` keep each number's text too: the real
OpenBao server sends ``1e-7`` and ``-0``, and Python's own encoder would write ``1e-07`` and
``0`` (KV2-AC-320).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["JsonFloat", "JsonInt", "dumps", "loads", "number_text"]


class JsonInt(int):
    json_text: str

    def __new__(cls, text: str) -> JsonInt:
        obj = super().__new__(cls, text)
        obj.json_text = text
        return obj


class JsonFloat(float):
    json_text: str

    def __new__(cls, text: str) -> JsonFloat:
        obj = super().__new__(cls, text)
        obj.json_text = text
        return obj


def _refuse_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259) and Vault never sends them.
    raise ValueError(f"{name} is not a JSON value")


def loads(data: bytes | str) -> Any:
    """``json.loads`` keeping number texts; ValueError for NaN/Infinity, RecursionError for
    absurd nesting (the caller maps both to a bad response)."""
    return json.loads(
        data, parse_int=JsonInt, parse_float=JsonFloat, parse_constant=_refuse_constant
    )


def number_text(value: Any) -> str | None:
    """The server's text of a number decoded by :func:`loads`, else None."""
    text = getattr(value, "json_text", None)
    return text if isinstance(text, str) else None


def dumps(value: Any, *, sort_keys: bool = False, indent: int | None = None) -> str:
    """``json.dumps(value, ensure_ascii=False, allow_nan=False)``, compact or indented (as
    json.dumps lays them out), writing each number :func:`loads` decoded as its server text.
    TypeError for a value JSON cannot hold; ValueError for NaN/Infinity or a container that
    contains itself, as json.dumps raises."""
    pad = None if indent is None else " " * indent
    colon = ":" if pad is None else ": "
    on_path: set[int] = set()

    def enc(item: Any, level: int) -> str:
        if item is None or isinstance(item, bool | str):
            return json.dumps(item, ensure_ascii=False)
        text = number_text(item)
        if text is not None:
            return text
        if isinstance(item, int | float):
            return json.dumps(item, allow_nan=False)
        if isinstance(item, Mapping):
            pairs = list(item.items())
            if sort_keys:
                pairs.sort(key=lambda pair: pair[0])
            members = [(_key(k) + colon, v) for k, v in pairs]
            return nest(item, "{}", members, level)
        if isinstance(item, list | tuple):
            return nest(item, "[]", [("", v) for v in item], level)
        raise TypeError(f"Object of type {type(item).__name__} is not JSON serializable")

    def nest(container: Any, brackets: str, members: list[tuple[str, Any]], level: int) -> str:
        if not members:
            return brackets
        if id(container) in on_path:
            raise ValueError("Circular reference detected")
        on_path.add(id(container))
        try:
            items = [prefix + enc(v, level + 1) for prefix, v in members]
        finally:
            on_path.discard(id(container))
        if pad is None:
            return brackets[0] + ",".join(items) + brackets[1]
        inner = "\n" + pad * (level + 1)
        return brackets[0] + inner + ("," + inner).join(items) + "\n" + pad * level + brackets[1]

    return enc(value, 0)


def _key(key: Any) -> str:
    """A member name as JSON text; json.dumps also turns number, bool and null keys into text."""
    if isinstance(key, str):
        return json.dumps(key, ensure_ascii=False)
    if key is None or isinstance(key, bool | int | float):
        return json.dumps(json.dumps(key, allow_nan=False))
    raise TypeError(f"keys must be str, int, float, bool or None, not {type(key).__name__}")
