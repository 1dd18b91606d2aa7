"""A secret's data once read: the part a reference selects, and the text it is written as.

Decision 3 of the spec (KV2-INV-007, KV2-INV-008): ``#KEY`` selects a top-level key of
``data.data``, ``#/json/pointer`` an RFC 6901 pointer, neither the whole object; a selected
string is written raw, anything else as compact JSON with numbers as the server wrote them
(KV2-AC-320). Errors name the key or pointer and the secret's location, never a value
(KV2-INV-001).

The reference grammar that produces the key and the pointer is refs.py, which sits above this
module: ``SecretRef.select`` calls :func:`select`, and refs re-exports :func:`value_to_text`
(a fixed contract of ``kv2render.refs``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from kv2render import jsonnum
from kv2render.errors import MissingKeyError, RenderError

__all__ = ["select", "value_to_text"]


def select(data: Mapping[str, Any], key: str | None, pointer: str | None, secret: object) -> Any:
    """Apply ``key``/``pointer`` to a secret's ``data.data``; the whole object when neither.

    ``secret`` names the secret in errors (its ``str()``, metadata only: a SecretLocation).
    Raises MissingKeyError naming the key or pointer (never a value).
    """
    if pointer is not None:
        return _resolve_pointer(data, pointer, secret)
    if key is None:
        return data
    if not isinstance(data, Mapping) or key not in data:
        raise MissingKeyError(f"key {key!r} not found in secret {secret}")
    return data[key]


def _resolve_pointer(data: Any, pointer: str, secret: object) -> Any:
    """RFC 6901 evaluation; errors name the pointer, the failing prefix and a type, never data."""
    if pointer == "":
        return data
    node = data
    done = ""
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        here = f"{done}/{raw}"
        if isinstance(node, Mapping):
            if token not in node:
                raise MissingKeyError(
                    f"JSON pointer {pointer!r}: no member at {here!r} in secret {secret}"
                )
            node = node[token]
        elif isinstance(node, list):
            if not re.fullmatch(r"0|[1-9][0-9]{0,17}", token) or int(token) >= len(node):
                raise MissingKeyError(
                    f"JSON pointer {pointer!r}: no array element at {here!r} "
                    f"(an array of {len(node)}) in secret {secret}"
                )
            node = node[int(token)]
        else:
            raise MissingKeyError(
                f"JSON pointer {pointer!r}: {done or '/'!r} is {_kind(node)}, not an object "
                f"or array, in secret {secret}"
            )
        done = here
    return node


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return f"a {type(value).__name__}"


def value_to_text(value: Any) -> str:
    """A selected value as output text: a string raw, anything else compact JSON."""
    if isinstance(value, str):
        return value
    text = getattr(value, "json_text", None)  # a number as the server wrote it (jsonnum)
    if isinstance(text, str) and not isinstance(value, bool):
        return text
    try:
        # Nested numbers keep the server's text too (KV2-AC-320).
        return jsonnum.dumps(value)
    except (TypeError, ValueError):
        # NaN/Infinity (Python's json accepts them from a server) or a non-JSON object.
        raise RenderError(
            f"the selected value ({_kind(value)}) cannot be written as JSON"
        ) from None
