"""The template filters: consul-template's helpers people use with KV2, and three of ours.

``toJSON``/``toJSONPretty`` print Go's bytes (sorted keys, HTML-safe escapes, 2-space
indent), ``base64Encode``/``base64Decode``/``trimSpace`` behave as consul-template's do, and
``pgpass_escape``/``shell_quote``/``env_name`` serve the ready templates in ``templates/``.
Each takes a template value (a secret's data may arrive as a read-only mapping) and returns
text; a value it cannot handle is a RenderError that names the filter, never the value.
``guards.py`` wraps each in the sandbox's size guards.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Any

from jinja2 import Undefined

from kv2render import jsonnum
from kv2render.errors import RenderError
from kv2render.payload import value_to_text

__all__ = ["FILTERS", "plain"]


def plain(value: Any) -> Any:
    """Template values back to JSON-shaped Python (dict/list/str/number/bool/None)."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    """A filter's input as text: strings as they are, other values as compact JSON."""
    if isinstance(value, Undefined):
        return str(value)  # StrictUndefined raises (MissingKeyError); lenient is ''
    if isinstance(value, str):
        return value
    return value_to_text(plain(value))


def _json(value: Any, indent: int | None, escape_html: bool) -> str:
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises; a lenient missing key is null, as in Go
        value = None
    try:
        # Go's json.Marshal sorts map keys; numbers keep the server's text, as a json.Number
        # from Vault's client does (jsonnum, KV2-AC-320).
        text = jsonnum.dumps(plain(value), sort_keys=True, indent=indent)
    except (TypeError, ValueError):
        raise RenderError(
            f"toJSON: a {type(value).__name__} value cannot be written as JSON"
        ) from None
    if escape_html:  # consul-template's toJSON is Go's json.Marshal: HTML-safe escapes
        text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    # Go escapes U+2028/U+2029 even with HTML escaping off.
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def to_json(value: Any) -> str:
    return _json(value, None, True)


def to_json_pretty(value: Any) -> str:
    return _json(value, 2, True)  # json.MarshalIndent(v, "", "  ")


def to_unescaped_json(value: Any) -> str:
    return _json(value, None, False)


def to_unescaped_json_pretty(value: Any) -> str:
    return _json(value, 2, False)


def base64_encode(value: Any) -> str:
    return base64.b64encode(_text(value).encode("utf-8")).decode("ascii")


def base64_decode(value: Any) -> str:
    text = _text(value).replace("\r", "").replace("\n", "")  # Go's decoder skips CR/LF
    if len(text) % 4:  # Go's padded StdEncoding; Python would accept 'YWJj='
        raise RenderError("base64Decode: invalid base64 input (length is not a multiple of 4)")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        # Not binascii's text: it counts the input's characters (KV2-INV-366).
        raise RenderError("base64Decode: invalid base64 input") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RenderError(
            "base64Decode: the decoded bytes are not UTF-8 text",
            hint="templates write text; write the base64 value and decode it in the consumer",
        ) from None


# Go's unicode.IsSpace set (strings.TrimSpace); Python's str.strip() also trims \x1c-\x1f.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
_GO_SPACE += "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def trim_space(value: Any) -> str:
    return _text(value).strip(_GO_SPACE)


def pgpass_escape(value: Any) -> str:
    """One .pgpass field: '\\' then ':' backslash-escaped, as libpq reads them."""
    text = _text(value)
    if "\n" in text or "\r" in text or "\0" in text:
        raise RenderError(
            "pgpass_escape: the value contains a line break or NUL, which a .pgpass line "
            "cannot hold"
        )
    return text.replace("\\", "\\\\").replace(":", "\\:")


def shell_quote(value: Any) -> str:
    """POSIX sh single quoting, always quoted: ``it's`` -> ``'it'\\''s'``."""
    text = _text(value)
    if "\0" in text:
        raise RenderError("shell_quote: the value contains a NUL byte, which sh cannot hold")
    return "'" + text.replace("'", "'\\''") + "'"


def env_name(value: Any) -> str:
    """A key as an environment variable name: upper case, [A-Z0-9_] only, no leading digit."""
    name = re.sub(r"[^A-Z0-9_]", "_", _text(value).upper())
    if not name or name[0].isdigit():
        name = "_" + name
    return name


FILTERS: dict[str, Callable[..., Any]] = {
    "toJSON": to_json,
    "toJSONPretty": to_json_pretty,
    "toUnescapedJSON": to_unescaped_json,
    "toUnescapedJSONPretty": to_unescaped_json_pretty,
    "base64Encode": base64_encode,
    "base64Decode": base64_decode,
    "trimSpace": trim_space,
    "pgpass_escape": pgpass_escape,
    "shell_quote": shell_quote,
    "env_name": env_name,
}
