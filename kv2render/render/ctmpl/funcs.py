"""Template functions: Go's builtins and consul-template's KV2 helpers.

Each function declares Go parameter types so the executor can check arguments
the way ``text/template`` does (``wrong type for value; expected string; got
json.Number``). Helper behaviour follows [CT] template/funcs.go; see
docs/reference/vault-agent.md §7.5.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from kv2render.render.ctmpl.gofmt import Spec, format_value, sprint, sprintf, sprintln
from kv2render.render.ctmpl.values import (
    INVALID,
    GoSecret,
    JsonNumber,
    StringSlice,
    TypedNil,
    is_true,
    type_name,
)


class FuncError(Exception):
    """A function returned an error; the executor reports ``error calling NAME: ...``.

    ``hidden`` is the same message without the values Go would print (an argument, an index,
    a byte offset in the input). The executor uses it unless every argument of the call is a
    literal written in the template (KV2-INV-366): a value computed by the template may be
    derived from a secret (``mustEnv (toLower .Data.data.password)``).
    """

    def __init__(self, message: str, *, hidden: str | None = None) -> None:
        super().__init__(message)
        self.hidden = message if hidden is None else hidden


class CallContext:
    """What a function call may use. Slotted classes here and in :class:`Func`, not
    dataclasses: fifty functions are declared at import on every consul-template start, and
    dataclass creation costs ~0.5 ms a class (KV2-NFR-520)."""

    __slots__ = ("env", "now", "secret", "max_bytes", "deadline", "timeout", "pos", "denied")

    def __init__(
        self,
        env: Mapping[str, str],
        now: Callable[[], datetime],
        secret: Callable[[str], GoSecret | None],
        max_bytes: int = 1 << 20,
        deadline: float = float("inf"),
        timeout: float = 10.0,
        pos: int = 0,
        denied: frozenset[str] = frozenset(),
    ) -> None:
        self.env = env
        self.now = now
        self.secret = secret
        # max_output_bytes: also the largest string a function may build (issue 10 item 3).
        self.max_bytes = max_bytes
        # KV2-INV-367: time.monotonic() after which the render stops, and its budget.
        self.deadline = deadline
        self.timeout = timeout
        # The source offset of the call running now: a secret path computed while
        # rendering is reported at its template line (KV2-INV-390).
        self.pos = pos
        # function_denylist (KV2-INV-496): consul-template functions that error when called.
        self.denied = denied


def _bounded(ctx: CallContext, name: str, size: int) -> None:
    """Refuse before building a string larger than max_output_bytes (a memory bomb)."""
    if size > ctx.max_bytes:
        raise FuncError(f"{name} would build more than max_output_bytes ({ctx.max_bytes})")


class Func:
    """A function as the executor calls it: Go parameter types, variadic type, impl."""

    __slots__ = ("name", "params", "variadic", "impl", "needs_ctx")

    def __init__(
        self,
        name: str,
        params: tuple[str, ...],  # "value" (reflect.Value), "any", "string", "int", "[]string"
        variadic: str | None,
        impl: Callable[..., Any],
        needs_ctx: bool = False,
    ) -> None:
        self.name = name
        self.params = params
        self.variadic = variadic
        self.impl = impl
        self.needs_ctx = needs_ctx

    def __repr__(self) -> str:
        return f"Func({self.name!r})"


# -- Go builtins -----------------------------------------------------------------------------


def _len(item: Any) -> int:
    if isinstance(item, TypedNil):
        raise FuncError("len of nil pointer")
    if isinstance(item, str):
        return len(item.encode("utf-8", "surrogateescape"))
    if isinstance(item, list | dict):
        return len(item)
    if item is INVALID or item is None:
        raise FuncError("reflect: call of reflect.Value.Type on zero Value")
    name = "dependency.Secret" if isinstance(item, GoSecret) else type_name(item)
    raise FuncError(f"len of type {name}")


def _index(item: Any, *indexes: Any) -> Any:
    if item is INVALID or item is None:
        raise FuncError("index of untyped nil")
    for idx in indexes:
        if isinstance(item, TypedNil):
            raise FuncError("index of nil pointer")
        if isinstance(item, list | str):
            seq: Any = item.encode("utf-8", "surrogateescape") if isinstance(item, str) else item
            item = seq[_index_arg(idx, len(seq))]
        elif isinstance(item, dict):
            if idx is INVALID or idx is None:
                raise FuncError("value is nil; should be of type string")
            if not isinstance(idx, str) or isinstance(idx, JsonNumber):
                raise FuncError(f"value has type {type_name(idx)}; should be string")
            item = item.get(idx)  # missing: the zero interface{}, whatever missingkey says
        else:
            name = "dependency.Secret" if isinstance(item, GoSecret) else type_name(item)
            raise FuncError(f"can't index item of type {name}")
    return item


def _index_arg(idx: Any, cap: int) -> int:
    if idx is INVALID or idx is None:
        raise FuncError("cannot index slice/array with nil")
    if not isinstance(idx, int) or isinstance(idx, bool):
        raise FuncError(f"cannot index slice/array with type {type_name(idx)}")
    if idx < 0 or idx >= cap:
        raise FuncError(f"index out of range: {idx}", hidden="index out of range")
    return idx


def _basic_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "invalid"


def _eq(arg1: Any, *args: Any) -> bool:
    if not args:
        raise FuncError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in args:
        k2 = _basic_kind(arg)
        if k1 != k2:
            if arg1 is not INVALID and arg is not INVALID:
                raise FuncError("incompatible types for comparison")
            continue
        if k1 != "invalid":
            if str(arg1) == str(arg) if k1 == "string" else arg1 == arg:
                return True
            continue
        if _is_nil(arg1) or _is_nil(arg):
            if _is_nil(arg1) == _is_nil(arg):
                return True
            continue
        raise FuncError(f"non-comparable type {type_name(arg)}")
    return False


def _is_nil(v: Any) -> bool:
    return v is INVALID or v is None or isinstance(v, TypedNil)


def _lt(a: Any, b: Any) -> bool:
    k1, k2 = _basic_kind(a), _basic_kind(b)
    if "invalid" in (k1, k2):
        raise FuncError("invalid type for comparison")
    if k1 != k2:
        raise FuncError("incompatible types for comparison")
    if k1 == "bool":
        raise FuncError("invalid type for comparison")
    if k1 == "string":
        return bool(
            str(a).encode("utf-8", "surrogateescape") < str(b).encode("utf-8", "surrogateescape")
        )
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, b)


def _print_arg(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str) and not isinstance(args[0], JsonNumber):
        return args[0]
    return sprint(list(args))


def _html(*args: Any) -> str:
    s = _print_arg(args)
    table = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}
    return "".join(table.get(c, c) for c in s)


def _js(*args: Any) -> str:
    out = []
    for c in _print_arg(args):
        if c in "\\'\"":
            out.append("\\" + c)
        elif c in "<>&=":
            out.append(f"\\u{ord(c):04X}")
        elif ord(c) < 0x20 or not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    out = []
    for b in _print_arg(args).encode("utf-8", "surrogateescape"):
        c = chr(b)
        if c.isascii() and (c.isalnum() or c in "-_.~"):
            out.append(c)
        elif c == " ":
            out.append("+")
        else:
            out.append(f"%{b:02X}")
    return "".join(out)


# -- consul-template helpers ---------------------------------------------------------------------

_GO_SPACE = " \t\n\v\f\r\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
_GO_SPACE += "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def go_trim_space(s: str) -> str:
    return s.strip(_GO_SPACE)


def _secret(ctx: CallContext, *paths: str) -> Any:
    # A piped value counts as the last argument: '"p" | secret' reads (exec.eval_call).
    if not paths:
        return None
    if len(paths) > 1:
        raise FuncError("writes through secret (extra arguments) are not supported by kv2render")
    return ctx.secret(paths[0])


def _env(ctx: CallContext, name: str) -> str:
    return ctx.env.get(name, "")


def _must_env(ctx: CallContext, name: str) -> str:
    value = ctx.env.get(name, "")
    if value == "":
        raise FuncError(
            f"required environment variable {name} is empty",
            hidden="a required environment variable (its name computed by the template) is empty",
        )
    return value


def _env_or_default(ctx: CallContext, name: str, default: str) -> str:
    return ctx.env.get(name, default)


_B64_STD = re.compile(r"[A-Za-z0-9+/]")
_B64_URL = re.compile(r"[A-Za-z0-9_\-]")


def _b64decode(s: str, name: str, url: bool) -> str:
    raw = s.replace("\r", "").replace("\n", "")
    alphabet = _B64_URL if url else _B64_STD
    for i, c in enumerate(raw):
        if c != "=" and not alphabet.fullmatch(c):
            raise FuncError(
                f"{name}: illegal base64 data at input byte {i}",
                hidden=f"{name}: illegal base64 data",
            )
    try:
        data = base64.b64decode(raw, altchars=b"-_" if url else None, validate=True)
    except (binascii.Error, ValueError):
        raise FuncError(
            f"{name}: illegal base64 data at input byte {_pad_error_at(raw)}",
            hidden=f"{name}: illegal base64 data",
        ) from None
    return data.decode("utf-8", "surrogateescape")


def _pad_error_at(raw: str) -> int:
    stripped = raw.rstrip("=")
    return len(stripped) if len(stripped) % 4 == 1 else len(raw)


def _b64encode(s: str, url: bool) -> str:
    data = s.encode("utf-8", "surrogateescape")
    return (base64.urlsafe_b64encode if url else base64.b64encode)(data).decode("ascii")


def _indent(ctx: CallContext, spaces: int, s: str) -> str:
    if spaces < 0:
        raise FuncError("indent value must be a positive integer")
    _bounded(ctx, "indent", len(s) + spaces * (s.count("\n") + 1))
    prefix = " " * spaces
    out = []
    at_line_start = True
    for c in s:
        if at_line_start and c != "\n":
            out.append(prefix)
        out.append(c)
        at_line_start = c == "\n"
    return "".join(out)


def _join(ctx: CallContext, sep: str, items: list[str]) -> str:
    _bounded(ctx, "join", sum(map(len, items)) + len(sep) * max(0, len(items) - 1))
    return sep.join(items)


def _replace_all(ctx: CallContext, old: str, new: str, s: str) -> str:
    _bounded(ctx, "replaceAll", len(s) + s.count(old) * (len(new) - len(old)))
    return s.replace(old, new)


def _split(sep: str, s: str) -> StringSlice:
    s = go_trim_space(s)
    if s == "":
        return StringSlice()
    if sep == "":
        return StringSlice(list(s))
    return StringSlice(s.split(sep))


def _contains(v: Any, lst: Any) -> bool:
    """consul-template ``contains v l`` is ``in l v``."""
    if isinstance(lst, list):
        for item in lst:
            if isinstance(item, bool):
                continue
            if isinstance(item, int) and isinstance(v, int) and not isinstance(v, bool):
                if item == v:
                    return True
            elif isinstance(item, float) and isinstance(v, float):
                if item == v:
                    return True
            elif isinstance(item, str) and isinstance(v, str):
                if type(item) is type(v) and item == v:
                    return True
        return False
    if isinstance(lst, str) and isinstance(v, str) and type(lst) is type(v):
        return v in lst
    return False


def _timestamp(ctx: CallContext, *fmt: str) -> str:
    # Imported on the first call: a template without timestamp never loads it (KV2-NFR-520).
    from kv2render.render.ctmpl.gotime import go_time_format

    now = ctx.now()
    if not fmt:
        return go_time_format(now, "2006-01-02T15:04:05Z07:00")
    if len(fmt) > 1:
        raise FuncError(
            f"timestamp: wrong number of arguments, expected 0 or 1, but got {len(fmt)}"
        )
    if fmt[0] == "unix":
        return str(int(now.timestamp()))
    return go_time_format(now, fmt[0])


def _to_json(name: str, indent: str | None, escape_html: bool) -> Callable[[Any], str]:
    def impl(v: Any) -> str:
        # Imported on the first call: a template without toJSON never loads it (KV2-NFR-520).
        from kv2render.render.ctmpl import gojson

        try:
            return gojson.encode(v, indent=indent, escape_html=escape_html).strip(" \t\r\n")
        except gojson.JSONError as exc:
            # Go names the value (json: unsupported value: +Inf); hidden keeps the kind only.
            kind = str(exc).split(":")[1].strip() if str(exc).count(":") >= 2 else "error"
            raise FuncError(f"{name}: {exc}", hidden=f"{name}: json: {kind}") from None

    return impl


def _parse_int(s: str) -> int:
    if s == "":
        return 0
    if not re.fullmatch(r"[+-]?[0-9]+", s):
        raise FuncError(
            f"parseInt: strconv.ParseInt: parsing {sprintf('%q', [s])}: invalid syntax",
            hidden="parseInt: strconv.ParseInt: parsing a computed value: invalid syntax",
        )
    return int(s)


def _parse_bool(s: str) -> bool:
    if s == "":
        return False
    table = {"1": True, "t": True, "T": True, "TRUE": True, "true": True, "True": True}
    table.update({"0": False, "f": False, "F": False, "FALSE": False, "false": False})
    table["False"] = False
    if s not in table:
        raise FuncError(
            f"parseBool: strconv.ParseBool: parsing {sprintf('%q', [s])}: invalid syntax",
            hidden="parseBool: strconv.ParseBool: parsing a computed value: invalid syntax",
        )
    return table[s]


def _map_runes(s: str, fn: Callable[[str], str]) -> str:
    """strings.ToUpper/ToLower map rune by rune (simple case mapping: 'ß' stays 'ß')."""
    out = []
    for c in s:
        mapped = "i" if c == "\u0130" and fn is str.lower else fn(c)
        out.append(mapped if len(mapped) == 1 else c)
    return "".join(out)


S = "string"
_FUNCS: list[Func] = [
    Func("not", ("value",), None, lambda v: not is_true(v)),
    Func("len", ("value",), None, _len),
    Func("index", ("value",), "value", _index),
    Func("print", (), "any", lambda *a: sprint(list(a))),
    Func("println", (), "any", lambda *a: sprintln(list(a))),
    Func("printf", (S,), "any", lambda f, *a: sprintf(f, list(a))),
    Func("html", (), "any", _html),
    Func("js", (), "any", _js),
    Func("urlquery", (), "any", _urlquery),
    Func("eq", ("value",), "value", _eq),
    Func("ne", ("value", "value"), None, lambda a, b: not _eq(a, b)),
    Func("lt", ("value", "value"), None, _lt),
    Func("le", ("value", "value"), None, _le),
    Func("gt", ("value", "value"), None, lambda a, b: not _le(a, b)),
    Func("ge", ("value", "value"), None, lambda a, b: not _lt(a, b)),
    Func("secret", (), S, _secret, needs_ctx=True),
    Func("env", (S,), None, _env, needs_ctx=True),
    Func("mustEnv", (S,), None, _must_env, needs_ctx=True),
    Func("envOrDefault", (S, S), None, _env_or_default, needs_ctx=True),
    Func("timestamp", (), S, _timestamp, needs_ctx=True),
    Func("toJSON", ("any",), None, _to_json("toJSON", None, True)),
    Func("toJSONPretty", ("any",), None, _to_json("toJSONPretty", "  ", True)),
    Func("toUnescapedJSON", ("any",), None, _to_json("toUnescapedJSON", None, False)),
    Func("toUnescapedJSONPretty", ("any",), None, _to_json("toUnescapedJSONPretty", "  ", False)),
    Func("base64Decode", (S,), None, lambda s: _b64decode(s, "base64Decode", False)),
    Func("base64Encode", (S,), None, lambda s: _b64encode(s, False)),
    Func("base64URLDecode", (S,), None, lambda s: _b64decode(s, "base64URLDecode", True)),
    Func("base64URLEncode", (S,), None, lambda s: _b64encode(s, True)),
    Func("trimSpace", (S,), None, go_trim_space),
    Func("trim", (S, S), None, lambda cut, s: s.strip(cut)),
    Func("trimPrefix", (S, S), None, lambda p, s: s[len(p) :] if p and s.startswith(p) else s),
    Func("trimSuffix", (S, S), None, lambda p, s: s[: -len(p)] if p and s.endswith(p) else s),
    Func("toLower", (S,), None, lambda s: _map_runes(s, str.lower)),
    Func("toUpper", (S,), None, lambda s: _map_runes(s, str.upper)),
    Func("indent", ("int", S), None, _indent, needs_ctx=True),
    Func("split", (S, S), None, _split),
    Func("join", (S, "[]string"), None, _join, needs_ctx=True),
    Func("replaceAll", (S, S, S), None, _replace_all, needs_ctx=True),
    Func("contains", ("any", "any"), None, _contains),
    Func("in", ("any", "any"), None, lambda lst, v: _contains(v, lst)),
    Func(
        "sha256Hex",
        (S,),
        None,
        lambda s: hashlib.sha256(s.encode("utf-8", "surrogateescape")).hexdigest(),
    ),
    Func(
        "md5sum",
        (S,),
        None,
        lambda s: hashlib.md5(s.encode("utf-8", "surrogateescape")).hexdigest(),
    ),
    Func("parseInt", (S,), None, _parse_int),
    Func("parseBool", (S,), None, _parse_bool),
]
FUNCS: dict[str, Func] = {f.name: f for f in _FUNCS}
SHORT_CIRCUIT = ("and", "or")

_CONSUL = "a Consul lookup; kv2render reads only KV2 secrets"
UNSUPPORTED: dict[str, str] = {
    **{
        name: _CONSUL
        for name in (
            "key keyExists keyOrDefault ls safeLs tree safeTree service services connect "
            "caRoots caLeaf node nodes datacenters partitions peerings exportedServices"
        ).split()
    },
    "pkiCert": "PKI certificates are not KV2 secrets; issue them with a PKI-aware tool",
    "pkiSign": "PKI certificates are not KV2 secrets; issue them with a PKI-aware tool",
    "secrets": "LIST is not supported: every secret must be named so reads are known up front",
    "file": "reading local files from a template is not supported",
    "writeToFile": "templates may not write files; kv2render writes the destination itself",
    "plugin": "running programs from a template is not supported",
    "executeTemplate": "not supported; use {{template}}",
    "scratch": "the scratch pad is not supported",
    "toYAML": "not supported yet; use toJSON or toJSONPretty",
    "toTOML": "not supported yet; use toJSON or toJSONPretty",
    "sockaddr": "not supported",
    "slice": "not supported yet",
    "call": "not supported",
}
for _name in (
    "add subtract multiply divide modulo minimum maximum loop byKey byTag byPort byMeta "
    "explode explodeMap mergeMap mergeMapWithOverride regexMatch regexReplaceAll parseJSON "
    "parseYAML parseFloat parseUint splitToMap toTitle hmacSHA256Hex containsAll containsAny "
    "containsNone containsNotAll spew_dump spew_printf spew_sdump spew_sprintf nomadService "
    "nomadServices nomadVar nomadVarList nomadVarExists"
).split():
    UNSUPPORTED.setdefault(_name, "not supported by kv2render's consul-template interpreter")


# Go's text/template built-ins: consul-template's funcMap does not hold them, so its
# function_denylist cannot deny them (measured: `function_denylist = ["printf", "len"]` leaves
# both working in OpenBao Agent 2.7.2).
GO_BUILTINS = frozenset(
    "and or not len index print println printf html js urlquery eq ne lt le gt ge call "
    "slice".split()
)


def _denied(*_args: str) -> str:
    # consul-template's denied(...string) (string, error): a call of a function on the
    # template's function_denylist fails when it runs, not when the template is parsed.
    raise FuncError("function is disabled")


def function_for(name: str, denied: frozenset[str]) -> Func | None:
    """The function ``name`` calls: consul-template's denied stand-in when it is on the
    template's function_denylist (KV2-INV-496), else kv2render's, else None."""
    if name in denied and name not in GO_BUILTINS:
        return Func(name, (), S, _denied)
    return FUNCS.get(name)


def check_function(name: str) -> str | None:
    """The parser's hook: None if ``name`` is callable, else the error message."""
    if name in FUNCS or name in SHORT_CIRCUIT:
        return None
    if name in UNSUPPORTED or name.startswith("sprig_"):
        reason = UNSUPPORTED.get(name, "Sprig functions are not supported")
        return f"function {_q(name)} is not supported: {reason}"
    return f"function {_q(name)} not defined"


def _q(s: str) -> str:
    return format_value(s, "q", Spec(), 0)
