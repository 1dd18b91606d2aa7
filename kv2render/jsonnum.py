"""JSON numbers that remember how the server wrote them.

Vault's API client decodes with Go's ``UseNumber``, so a consul-template template
prints ``1.50`` and ``1e3`` exactly as they were stored. Python's ``json`` turns
them into ``1.5`` and ``1000.0``. The store decodes numbers into these int and
float subclasses instead: they behave as numbers everywhere, and the
consul-template engine and ``value_to_text`` print ``json_text``
(KV2-AC-258: numbers keep their JSON text).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["JsonFloat", "JsonInt", "loads", "number_text"]


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
