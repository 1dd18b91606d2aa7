"""JSON numbers as the real OpenBao server stores them (the openbao flavour only).

Measured on OpenBao 2.7.2 (docs/dev-server.md, "Measured against the real OpenBao server";
KV2-INV-340): the KV v2 engine stores ``data`` as Go ``float64`` values, so a read gives back
what Go's ``encoding/json`` writes for that float, not the literal the client sent:
``1.50`` -> ``1.5``, ``1e3``/``1E3`` -> ``1000``, ``-0.0`` -> ``-0``, ``1e20`` ->
``100000000000000000000``, ``1e21`` -> ``1e+21``, ``1e-7`` -> ``1e-7``,
``12345678901234567890`` -> ``12345678901234567000``, ``1e-400`` -> ``0``. A request body with a
number beyond float64 (``1e400``), anywhere in it and on any path, is refused with 400. KV v1
and ``custom_metadata`` keep the literal. HashiCorp Vault decodes with ``UseNumber`` and keeps
literals, so the vault flavour never calls this module.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from kv2render.jsonnum import JsonFloat, JsonInt, number_text

__all__ = ["float64_text", "go_float64", "out_of_range"]


def float64_text(value: float) -> str:
    """Go's ``encoding/json`` text for a float64 (floatEncoder: 'f' in [1e-6, 1e21), else 'e')."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    shortest = repr(value)  # shortest round-trip digits, like strconv's precision -1
    if 1e-6 <= abs(value) < 1e21:
        return format(Decimal(shortest).normalize(), "f")
    # Python's repr is already in exponent form here; Go cleans "e-07" to "e-7".
    mantissa, _, exponent = shortest.partition("e")
    sign, digits = exponent[0], exponent[1:].lstrip("0") or "0"
    if sign == "+":
        digits = digits.rjust(2, "0")
    return f"{mantissa}e{sign}{digits}"


def _number(value: Any) -> Any:
    text = float64_text(float(number_text(value) or value))
    if any(c in text for c in ".e"):
        return JsonFloat(text)
    return JsonInt(text)


def go_float64(value: Any) -> Any:
    """``value`` with every number replaced by its float64 round trip (objects, arrays)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return _number(value)
    if isinstance(value, dict):
        return {k: go_float64(v) for k, v in value.items()}
    if isinstance(value, list):
        return [go_float64(v) for v in value]
    return value


def out_of_range(value: Any) -> str | None:
    """The literal of the first number (in document order) that float64 cannot hold."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return None
    if isinstance(value, int | float):
        text = number_text(value) or repr(value)
        return text if math.isinf(float(text)) else None
    if isinstance(value, dict | list):
        for child in value.values() if isinstance(value, dict) else value:
            found = out_of_range(child)
            if found is not None:
                return found
    return None
