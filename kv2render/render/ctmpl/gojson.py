"""Go ``encoding/json`` Marshal/MarshalIndent for the consul-template data model.

What consul-template's ``toJSON``/``toJSONPretty`` print ([CT] template/funcs.go):
map keys sorted byte-wise, ``<``, ``>``, ``&`` escaped as ``\\u003c \\u003e \\u0026``
unless ``escape_html`` is false, U+2028/U+2029 escaped, non-ASCII kept as UTF-8,
``json.Number`` written as its literal, a Secret as an object in struct field order.
"""

from __future__ import annotations

import math
from typing import Any

from kv2render.render.ctmpl.values import INVALID, GoSecret, JsonNumber, StringSlice, TypedNil


class JSONError(Exception):
    pass


def _string(s: str, escape_html: bool) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif o < 0x20 or (escape_html and ch in "<>&"):
            out.append(f"\\u{o:04x}")
        elif o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _float(f: float) -> str:
    """encoding/json floatEncoder: 'f' format, 'e' outside [1e-6, 1e21), exponent cleaned."""
    if math.isnan(f) or math.isinf(f):
        raise JSONError(f"json: unsupported value: {f}")
    a = abs(f)
    if a != 0 and (a < 1e-6 or a >= 1e21):
        text = repr(f)
        if "e" not in text:
            text = f"{f:e}"
        mant, _, exp = text.partition("e")
        sign = "-" if exp.startswith("-") else "+"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        if len(digits) < 2:
            digits = "0" + digits
        if mant.endswith(".0"):
            mant = mant[:-2]
        # Go: e-07 -> e-7 (two-digit negative exponents are cleaned up)
        text = f"{mant}e{sign}{digits}"
        if sign == "-" and digits.startswith("0"):
            text = f"{mant}e-{digits[1:]}"
        return text
    text = repr(f)
    if "e" in text or "E" in text:
        text = format(f, "f").rstrip("0").rstrip(".") if f != int(f) else str(int(f))
    if text.endswith(".0"):
        text = text[:-2]
    return text


def encode(v: Any, *, indent: str | None = None, escape_html: bool = True, level: int = 0) -> str:
    """json.Marshal (``indent`` None) or json.MarshalIndent(v, "", indent)."""
    text = _scalar(v, escape_html)
    if text is not None:
        return text
    return _composite(v, indent, escape_html, level)


def _scalar(v: Any, escape_html: bool) -> str | None:
    """The JSON text of a null, a boolean, a number or a string; None for anything else."""
    if v is None or v is INVALID or isinstance(v, TypedNil):
        return "null"
    if isinstance(v, bool):  # before int: a bool is an int
        return "true" if v else "false"
    if isinstance(v, JsonNumber):  # before str: a json.Number is a str
        return str(v) if v else "0"
    if isinstance(v, str):
        return _string(v, escape_html)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return _float(v)
    if isinstance(v, StringSlice) and v.is_nil:
        return "null"
    return None


def _composite(v: Any, indent: str | None, escape_html: bool, level: int) -> str:
    """An array, a map or a Secret, its members encoded one level deeper."""
    nl = "" if indent is None else "\n" + indent * (level + 1)
    end = "" if indent is None else "\n" + indent * level
    colon = ":" if indent is None else ": "

    def sub(x: Any) -> str:
        return encode(x, indent=indent, escape_html=escape_html, level=level + 1)

    if isinstance(v, list):
        if not v:
            return "[]"
        return "[" + nl + ("," + nl).join(sub(x) for x in v) + end + "]"
    if isinstance(v, dict):
        if not v:
            return "{}"
        keys = sorted(v)
        body = ("," + nl).join(_string(k, escape_html) + colon + sub(v[k]) for k in keys)
        return "{" + nl + body + end + "}"
    if isinstance(v, GoSecret):
        body = ("," + nl).join(
            _string(name, escape_html) + colon + sub(value) for name, value in v.field_values()
        )
        return "{" + nl + body + end + "}"
    raise JSONError(f"json: unsupported type: {type(v).__name__}")
