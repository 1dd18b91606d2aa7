"""Scrubbing error text that a template engine produced (KV2-INV-001).

Jinja2's and Go's error messages quote the values they choke on: an attribute
name, a string that failed to parse, a key that is missing. When a template
computes that value from a secret (``kv2(...) | upper``, a slice, base64), the
quoted text is secret-derived, and redacting the exact secret values cannot
catch it. So an engine's own message keeps a quoted token only when the token
is written in the template itself (then it is the operator's text, not data)
or names a type (``'dict object'``); any other quoted token becomes ``'…'``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kv2render.model import SecretVersion

__all__ = [
    "REDACTED",
    "redact",
    "redactor",
    "secret_texts",
    "scrub_engine_text",
    "scrub_http",
    "scrub_quoted",
]


@functools.cache
def _rx(pattern: str) -> re.Pattern[str]:
    """The compiled ``pattern``, on first use: most runs never redact anything, and
    compiling these patterns at import cost ~0.7 ms on every start (KV2-NFR-520)."""
    return re.compile(pattern)


REDACTED = "[redacted]"
_MIN_REDACT = 4  # shorter values are redacted only where they appear quoted

# A single- or double-quoted run, the way Python's and Go's messages quote (no newlines).
_QUOTED = r"""(?P<q>['"])(?P<body>(?:\\.|(?!(?P=q))[^\\\n])*)(?P=q)"""
_TYPE_NAME = r"^[A-Za-z_][\w.]*( object)?$"
_TYPE_WORDS = frozenset(
    {"str", "int", "float", "bool", "dict", "list", "tuple", "NoneType", "bytes", "set"}
)


def scrub_quoted(message: str, source: str) -> str:
    """Replace quoted tokens of ``message`` that neither appear in ``source`` nor name a type."""

    def keep_or_hide(match: re.Match[str]) -> str:
        body = match.group("body")
        if body in ("", REDACTED) or body in source:
            return match.group(0)
        if _rx(_TYPE_NAME).match(body) and (body.endswith(" object") or body in _TYPE_WORDS):
            return match.group(0)
        quote = match.group("q")
        return f"{quote}…{quote}"

    return _rx(_QUOTED).sub(keep_or_hide, message)


def _leaves(value: Any, out: set[str]) -> None:
    if isinstance(value, str):
        out.add(value)
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        out.add(str(value))
        out.add(json.dumps(value))
    elif isinstance(value, Mapping):
        for child in value.values():
            _leaves(child, out)
    elif isinstance(value, list | tuple):
        for child in value:
            _leaves(child, out)


def redact(text: str, secrets: Iterable[SecretVersion]) -> str:
    """Replace every secret value in ``text`` with ``[redacted]`` (consul-template's word).

    Values of 4+ characters are replaced wherever they appear, also in their Python-repr and
    JSON-escaped spellings; shorter ones only where they appear quoted (``'ab'``, ``"ab"``),
    as Python error messages quote them, so that "5" does not eat every line number.
    """
    return redactor(secrets)(text)


def secret_texts(secrets: Iterable[SecretVersion]) -> set[str]:
    """Every leaf value of ``secrets`` as text (numbers in both their spellings)."""
    values: set[str] = set()
    for version in secrets:
        _leaves(version.data, values)
    return values


def redactor(secrets: Iterable[SecretVersion]) -> Callable[[str], str]:
    """:func:`redact` for many texts against the same secrets: the pattern is built once."""
    values = secret_texts(secrets)
    patterns: set[str] = set()
    for value in values:
        if not value:
            continue
        spellings = {value, repr(value)[1:-1], json.dumps(value)[1:-1]}
        spellings.add(json.dumps(value, ensure_ascii=False)[1:-1])
        if len(value) >= _MIN_REDACT:
            patterns.update(spellings)
        else:
            patterns.update(f"{q}{s}{q}" for s in spellings for q in ("'", '"'))
    if not patterns:
        return _unchanged
    regex = re.compile("|".join(re.escape(p) for p in sorted(patterns, key=len, reverse=True)))

    def replace(match: re.Match[str]) -> str:
        found = match.group(0)
        if len(found) >= 2 and found[0] == found[-1] and found[0] in "'\"":
            return f"{found[0]}{REDACTED}{found[0]}"
        return REDACTED

    return lambda text: regex.sub(replace, text)


def _unchanged(text: str) -> str:
    return text


# A number as Python's messages print it unquoted: an index, a length, a code point.
_NUMBER = r"(?<![\w.])(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?!\w)"
# Python's "'<' not supported between instances of 'str' and 'int'": the operator, not data.
_OPERATOR = r"'(?:<|<=|>|>=|\+|-|\*|/|//|%|\*\*|@|&|\||\^|<<|>>)' not supported"


def scrub_engine_text(message: str, constants: Collection[str]) -> str:
    """An engine's error text with nothing a template computed (KV2-INV-366).

    A quoted token is kept only when it is exactly a constant of the template source (a
    string literal, an attribute or variable name: ``constants``) or names a type; an
    unquoted number only when it is such a constant. Anything else may be derived from a
    secret (``kv2(...) | lower``, a slice, arithmetic on a secret number) and becomes ``…``.
    Stricter than :func:`scrub_quoted`, whose "appears in the source" test keeps a one-letter
    slice of a secret (any letter appears somewhere in a template).
    """

    def keep_or_hide(match: re.Match[str]) -> str:
        body = match.group("body")
        if body in ("", REDACTED) or body in constants:
            return match.group(0)
        if _rx(_TYPE_NAME).match(body) and (body.endswith(" object") or body in _TYPE_WORDS):
            return match.group(0)
        quote = match.group("q")
        return f"{quote}…{quote}"

    def keep_number(match: re.Match[str]) -> str:
        return match.group(0) if match.group(0) in constants else "…"

    parts: list[str] = []
    last = 0
    for match in _rx(_QUOTED).finditer(message):
        if _rx(_OPERATOR).match(message, match.start()):
            continue
        parts.append(_rx(_NUMBER).sub(keep_number, message[last : match.start()]))
        parts.append(keep_or_hide(match))
        last = match.end()
    parts.append(_rx(_NUMBER).sub(keep_number, message[last:]))
    return "".join(parts)


# -- text from the HTTP stack (KV2-INV-350) ---------------------------------------------------

# requests' InvalidHeader and http.client's ValueError quote the header value they refuse
# ("... in header value: 'hvs.X\nX-Evil: 1'", "Invalid header value b'...'"): whatever is
# quoted after the word "header" is a header value, and header values carry credentials.
_HEADER_QUOTE = r"""(?i)(?P<lead>header[^'"\n]{0,60}?)b?(?P<q>['"])(?:\\.|(?!(?P=q))[^\\])*(?P=q)"""
# A credential header spelled out with its value ("X-Vault-Token: abc", "Bearer abc").
_CREDENTIAL_HEADER = (
    r"""(?P<lead>(?i:x-vault-token|authorization)['"]?\s*[:=,]\s*['"]?(?:(?i:bearer)\s+)?"""
    r"""|Bearer\s+(?=[\w.~+/=-]{8}))[^\s'",)}]+"""
)
_CONTROL = r"[\x00-\x1f\x7f-\x9f\u2028\u2029]"


def scrub_http(text: str, credentials: Iterable[str] = (), *, limit: int | None = 200) -> str:
    """Exception text from requests, urllib3 or http.client, made fit for one log line or a
    status file (KV2-INV-350): every credential kv2render holds is replaced by
    ``[redacted]`` (also in its repr spelling), a quoted header value and the value of an
    ``X-Vault-Token``/``Authorization`` header become ``'…'``/``[redacted]``, line breaks
    and other control characters are escaped (one event stays one line), and the text is cut
    to ``limit`` characters. Server ``errors`` strings pass through it too."""
    for secret in sorted({c for c in credentials if c}, key=len, reverse=True):
        for spelling in {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]}:
            if len(spelling) >= _MIN_REDACT:
                text = text.replace(spelling, REDACTED)
    text = _rx(_HEADER_QUOTE).sub(lambda m: f"{m.group('lead')}{m.group('q')}…{m.group('q')}", text)
    text = _rx(_CREDENTIAL_HEADER).sub(lambda m: f"{m.group('lead')}{REDACTED}", text)
    text = _rx(_CONTROL).sub(lambda m: repr(m.group(0))[1:-1], text)
    if limit is not None and len(text) > limit:
        text = text[:limit] + "..."
    return text
