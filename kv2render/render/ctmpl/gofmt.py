"""Go ``fmt`` and ``strconv`` behaviour for the consul-template data model.

Covers what templates print: ``fmt.Fprint`` of an action's value, ``print``,
``println`` and ``printf`` with the verbs ``v s q d x X o b c t e E f F g G T``
and the ``+ - # 0 space`` flags, width and precision.
"""

from __future__ import annotations

import re
from typing import Any

from kv2render.render.ctmpl.values import (
    INVALID,
    GoSecret,
    JsonNumber,
    StringSlice,
    TypedNil,
    type_name,
)

_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_ESCAPES["\v"] = "\\v"


def go_quote(s: str, *, ascii_only: bool = False, quote: str = '"') -> str:
    """strconv.Quote (``ascii_only``: QuoteToASCII)."""
    out = [quote]
    for ch in s:
        if ch == quote or ch == "\\":
            out.append("\\" + ch)
        elif ch.isprintable() and not (ascii_only and ord(ch) > 126):
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\\ufffd")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append(quote)
    return "".join(out)


_UNQUOTE_RE = re.compile(
    r"\\(?:([abfnrtv\\'\"])|x([0-9a-fA-F]{2})|([0-7]{3})|u([0-9a-fA-F]{4})|U([0-9a-fA-F]{8}))"
)


def go_unquote(text: str) -> str:
    """strconv.Unquote for ``"..."`` and raw ``...`` literals; ValueError if malformed."""
    if len(text) >= 2 and text[0] == text[-1] == "`":
        return text[1:-1].replace("\r", "")
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        raise ValueError("invalid syntax")
    body = text[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out += ch.encode("utf-8", "surrogatepass")
            i += 1
            continue
        m = _UNQUOTE_RE.match(body, i)
        if m is None or m.group(1) == "'":
            raise ValueError("invalid syntax")
        simple, hx, octal, u4, u8 = m.groups()
        if simple:
            out += {"a": b"\a", "b": b"\b", "f": b"\f", "n": b"\n", "r": b"\r", "t": b"\t"}.get(
                simple, b"\v" if simple == "v" else simple.encode()
            )
        elif hx or octal:
            value = int(hx, 16) if hx else int(octal, 8)
            if value > 255:
                raise ValueError("invalid syntax")
            out.append(value)
        else:
            out += chr(int(u4 or u8, 16)).encode("utf-8", "surrogatepass")
        i = m.end()
    return out.decode("utf-8", "replace")


# -- floats -----------------------------------------------------------------------------


def _digits(f: float) -> tuple[str, int]:
    """Shortest decimal digits and decimal-point position (strconv's ``digs.d``/``digs.dp``)."""
    # decimal (with numbers) costs ~1.5 ms to import; only a float printed needs it (KV2-NFR-520).
    from decimal import Decimal

    sign, digit_tuple, exp = Decimal(repr(f)).normalize().as_tuple()
    del sign
    digits = "".join(str(d) for d in digit_tuple).rstrip("0") or "0"
    assert isinstance(exp, int)
    dp = len(digit_tuple) + exp
    return digits, dp


def format_float_g_shortest(f: float) -> str:
    """strconv.FormatFloat(f, 'g', -1, 64), as fmt's %v prints a float64."""
    if f != f:
        return "NaN"
    if f in (float("inf"), float("-inf")):
        return "+Inf" if f > 0 else "-Inf"
    neg = f < 0 or (f == 0 and str(f).startswith("-"))
    if f == 0:
        return "-0" if neg else "0"
    digits, dp = _digits(abs(f))
    exp = dp - 1
    if exp < -4 or exp >= 6:  # strconv: shortest precision decides with eprec = 6
        mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        text = f"{mant}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    elif dp <= 0:
        text = "0." + "0" * (-dp) + digits
    elif dp >= len(digits):
        text = digits + "0" * (dp - len(digits))
    else:
        text = digits[:dp] + "." + digits[dp:]
    return ("-" if neg else "") + text


# -- fmt ----------------------------------------------------------------------------------


class Spec:
    """A verb's flags, width and precision. A slotted class, not a dataclass: one is made
    per printed value, and the generated methods cost import time (KV2-NFR-520)."""

    __slots__ = ("plus", "minus", "sharp", "zero", "space", "width", "prec")

    def __init__(
        self,
        plus: bool = False,
        minus: bool = False,
        sharp: bool = False,
        zero: bool = False,
        space: bool = False,
        width: int | None = None,
        prec: int | None = None,
    ) -> None:
        self.plus = plus
        self.minus = minus
        self.sharp = sharp
        self.zero = zero
        self.space = space
        self.width = width
        self.prec = prec


def _pad(s: str, spec: Spec, *, numeric: bool = False) -> str:
    if spec.width is None or len(s) >= spec.width:
        return s
    fill = spec.width - len(s)
    if spec.minus:
        return s + " " * fill
    if spec.zero and numeric:
        sign = s[0] if s[:1] in ("+", "-", " ") else ""
        return sign + "0" * fill + s[len(sign) :]
    return " " * fill + s


def _bad_verb(verb: str, arg: Any) -> str:
    if arg is None or arg is INVALID:
        return f"%!{verb}(<nil>)"
    return f"%!{verb}({type_name(arg)}={format_value(arg, 'v', Spec(), 0)})"


def _fmt_int(v: int, verb: str, spec: Spec) -> str:
    if verb == "c":
        return _pad(chr(v), spec)
    if verb == "q":
        return _pad(go_quote(chr(v), quote="'"), spec)
    if verb == "U":
        return _pad(f"U+{v:04X}", spec)
    base = {"d": 10, "v": 10, "b": 2, "o": 8, "O": 8, "x": 16, "X": 16}[verb]
    digits = format(abs(v), {2: "b", 8: "o", 10: "d", 16: "x"}[base])
    if verb == "X":
        digits = digits.upper()
    if spec.prec is not None:
        digits = digits.zfill(spec.prec) if not (spec.prec == 0 and v == 0) else ""
    prefix = ""
    if verb == "O" or (spec.sharp and verb == "o" and not digits.startswith("0")):
        prefix = "0o" if verb == "O" else "0"
    elif spec.sharp and verb in ("x", "X"):
        prefix = "0" + verb
    elif spec.sharp and verb == "b":
        prefix = "0b"
    sign = "-" if v < 0 else ("+" if spec.plus else (" " if spec.space else ""))
    zero_ok = spec.prec is None
    return _pad(sign + prefix + digits, spec, numeric=zero_ok)


def _fmt_float(v: float, verb: str, spec: Spec) -> str:
    if verb == "v" or (verb in "gG" and spec.prec is None):
        text = format_float_g_shortest(v)
        if verb == "G":
            text = text.upper()
    elif verb in "eEfFgG":
        prec = 6 if spec.prec is None else spec.prec
        text = format(v, f".{prec}{verb}")
        if verb in "gG" and "e" in text.lower():
            mant, _, exp = text.lower().partition("e")
            text = f"{mant}{'e' if verb == 'g' else 'E'}{exp[0]}{int(exp[1:]):02d}"
    else:
        return _bad_verb(verb, v)
    if spec.plus and not text.startswith("-"):
        text = "+" + text
    elif spec.space and not text.startswith("-"):
        text = " " + text
    return _pad(text, spec, numeric=True)


def _fmt_str(s: str, verb: str, spec: Spec) -> str:
    if spec.prec is not None and verb in "vsq":
        s = s[: spec.prec]
    if verb in ("v", "s"):
        return _pad(s, spec)
    if verb == "q":
        if spec.sharp and "`" not in s and all(c.isprintable() or c == "\t" for c in s):
            return _pad("`" + s + "`", spec)
        return _pad(go_quote(s, ascii_only=spec.plus), spec)
    if verb in ("x", "X"):
        data = s.encode("utf-8", "surrogatepass")
        if spec.prec is not None:
            data = data[: spec.prec]
        parts = [format(b, "02x" if verb == "x" else "02X") for b in data]
        if spec.space:
            pre = ("0" + verb) if spec.sharp else ""
            return _pad(" ".join(pre + p for p in parts), spec)
        return _pad(("0" + verb if spec.sharp and parts else "") + "".join(parts), spec)
    return ""


_INT_VERBS = set("vdbo OxXcqU".replace(" ", ""))


def format_value(arg: Any, verb: str, spec: Spec, depth: int) -> str:  # noqa: C901
    """fmt's printArg/printValue for one operand."""
    if verb == "T":
        return _pad("<nil>" if arg is None or arg is INVALID else type_name(arg), spec)
    if arg is None or arg is INVALID:
        return _pad("<nil>", spec) if verb == "v" else _bad_verb(verb, arg)
    if isinstance(arg, JsonNumber):  # a fmt.Stringer: String() for v s x X q
        return _fmt_str(str(arg), verb, spec) if verb in "vsxXq" else _bad_verb(verb, arg)
    if isinstance(arg, bool):
        return _pad("true" if arg else "false", spec) if verb in "tv" else _bad_verb(verb, arg)
    if isinstance(arg, int):
        return _fmt_int(arg, verb, spec) if verb in _INT_VERBS else _bad_verb(verb, arg)
    if isinstance(arg, float):
        return _fmt_float(arg, verb, spec)
    if isinstance(arg, str):
        return _fmt_str(arg, verb, spec) if verb in "vsqxX" else _bad_verb(verb, arg)
    if isinstance(arg, dict):
        items = [
            format_value(k, verb, spec, depth + 1)
            + ":"
            + format_value(arg[k], verb, spec, depth + 1)
            for k in sorted(arg)
        ]
        return "map[" + " ".join(items) + "]"
    if isinstance(arg, list):
        return "[" + " ".join(format_value(x, verb, spec, depth + 1) for x in arg) + "]"
    if isinstance(arg, GoSecret):
        if depth > 0:
            return "0xc000000000"  # Go prints the pointer's address; not reproducible
        parts = []
        for name, value in arg.field_values():
            text = format_value(value, verb, spec, depth + 1)
            parts.append(f"{name}:{text}" if spec.plus else text)
        return "&{" + " ".join(parts) + "}"
    if isinstance(arg, TypedNil):
        return _pad("<nil>", spec) if verb == "v" else _bad_verb(verb, arg)
    raise TypeError(f"unprintable value of type {type(arg).__name__}")


def print_struct_deref(arg: GoSecret) -> str:
    """``{{ $secret }}``: the template printer dereferences the pointer first."""
    return format_value(arg, "v", Spec(), 0)[1:]


def sprint(args: list[Any]) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    out: list[str] = []
    prev_string = False
    for i, arg in enumerate(args):
        is_string = isinstance(arg, str) and not isinstance(arg, StringSlice)
        if i > 0 and not is_string and not prev_string:
            out.append(" ")
        out.append(format_value(arg, "v", Spec(), 0))
        prev_string = is_string
    return "".join(out)


def sprintln(args: list[Any]) -> str:
    return " ".join(format_value(a, "v", Spec(), 0) for a in args) + "\n"


# Go's fmt refuses widths and precisions beyond 1e6 (tooLarge in fmt/print.go): a digit
# string is given up once the number read so far passes 1e6 ("%!(NOVERB)", rest of the
# format consumed), a '*' argument beyond it gives %!(BADWIDTH) / %!(BADPREC).
_TOO_LARGE = 1_000_000


def _too_large(digits: str | None) -> bool:
    """Go's parsenum gives up when the number read before the last digit passes 1e6."""
    if digits is None or digits == "*":
        return False
    digits = digits.lstrip("0")  # (also keeps int() clear of Python's 4,300-digit limit)
    return len(digits) > 8 or (len(digits) > 1 and int(digits[:-1]) > _TOO_LARGE)


_SPEC_RE = re.compile(r"%([-+# 0]*)(\*|\d+)?(?:\.(\*|\d+)?)?(.)?", re.S)


def sprintf(fmt: str, args: list[Any]) -> str:  # noqa: C901
    """fmt.Sprintf, including ``%!v(MISSING)`` and ``%!(EXTRA ...)``."""
    out: list[str] = []
    argi = 0
    i = 0
    while i < len(fmt):
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        m = _SPEC_RE.match(fmt, j)
        assert m is not None
        flags, width, prec, verb = m.groups()
        i = m.end()
        if verb is None:
            out.append("%!(NOVERB)")
            break
        if verb == "%" and not flags and width is None and prec is None:
            out.append("%")
            continue
        if _too_large(width) or _too_large(prec):
            out.append("%!(NOVERB)")
            break
        spec = Spec("+" in flags, "-" in flags, "#" in flags, "0" in flags, " " in flags)
        for name, part in (("width", width), ("prec", prec)):
            if part == "*":
                value = args[argi] if argi < len(args) else None
                argi += 1
                if isinstance(value, int) and abs(value) > _TOO_LARGE:
                    out.append("%!(BADWIDTH)" if name == "width" else "%!(BADPREC)")
                    value = None
                setattr(spec, name, value if isinstance(value, int) else None)
            elif part is not None:
                setattr(spec, name, int(part.lstrip("0") or "0"))
        if prec is None and m.group(0).endswith("." + verb):
            spec.prec = 0
        if spec.minus:
            spec.zero = False
        if verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[argi]
        argi += 1
        known = verb in "vsqdxXobOcUteEfFgGT"
        out.append(format_value(arg, verb, spec, 0) if known else _bad_verb(verb, arg))
    if argi < len(args):
        extra = ", ".join(
            "<nil>" if a is None else f"{type_name(a)}={format_value(a, 'v', Spec(), 0)}"
            for a in args[argi:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)
