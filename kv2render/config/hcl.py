"""Vault Agent HCL, read by a small strict parser into the tree of the agent's JSON form.

Why a parser of our own (KV2-NFR-237): python-hcl2 builds or unpickles a lark LALR grammar on
every run (0.1-0.25 s with its cache file, 3-4 s without one, e.g. when site-packages is
read-only to the service user), the largest share of an HCL ``--once``, and then parses at
~7 ms per KB. Agent configs use a small part of HCL; this module reads it in well under a
millisecond for a typical file, with nothing to build, cache or unpickle:

- a body is attributes ``name = value`` and blocks ``type "label" ... { body }``;
- a value is a quoted string, a heredoc (``<<EOT`` / ``<<-EOT``), a number, ``true``,
  ``false``, ``null``, a list ``[v, ...]`` or an object ``{ key = v, ... }`` (``key: v`` too);
- comments are ``#``, ``//`` and ``/* */``;
- a name's ``=`` and the start of its value, and a block's labels, are on the name's line (a
  block's ``{`` may open the next line); elsewhere line breaks are white space.

The tree is the one python-hcl2 gave kv2render before (KV2-AC-236, a differential test):
blocks are lists (``{"template": [{...}, {...}]}``), labels nest (``method "approle" {}`` is
``{"method": [{"approle": {}}]}``), and heredocs keep their final newline (KV2-INV-256).

Numbers are read as the agent's HCL 1 reads them (KV2-INV-495): an integer follows Go's base-0
rules, ``0640`` octal (416), ``0x1A4`` hexadecimal, ``420`` decimal; an octal literal with an 8
or 9 is an error, as it is to the agent. python-hcl2 read every integer in decimal.

Where python-hcl2 and Vault Agent's own parser disagree, this parser follows the agent or
refuses (KV2-AC-237): ``${...}`` and ``%{...}`` in a string are kept verbatim (Vault Agent does
not evaluate them; ``{{ }}`` is consul-template's and plain text here), and duplicate keys,
unknown escapes, expressions, line breaks inside quotes, NULs and carriage returns in heredocs
are errors. An error is an :class:`HclError` carrying the line and column, never the text (it
may be a secret). Recursion is bounded by MAX_DEPTH and the work is linear (KV2-NFR-239).
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MAX_DEPTH", "MAX_VALUES", "HclError", "loads"]

MAX_DEPTH = 100  # blocks, lists and objects inside each other; a real agent config nests 4
MAX_VALUES = 1_000_000  # as config_sources._MAX_VALUES: a real config has a few thousand

_INLINE = re.compile(r"[ \t\r]*")  # white space that does not end the line
_BLANK = re.compile(r"[ \t\r\n]*")  # white space, no comments
_SPACE = re.compile(r"(?:[ \t\r\n]+|#[^\n]*|//[^\n]*|/\*.*?\*/)*", re.DOTALL)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"-?(?:0[xX][0-9A-Fa-f]+|[0-9]+(?:\.[0-9]+)?)")
_INT64 = 1 << 63  # Go's strconv.ParseInt(text, 0, 64) range
_NUMBER_TAIL = re.compile(r"[A-Za-z0-9_.]")
_STRING_RUN = re.compile(r'[^"\\\n$]+')
_MARKER = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")
_HEX8 = re.compile(r"[0-9A-Fa-f]{8}")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\"}
_ESCAPE_HINT = 'HCL knows \\n \\r \\t \\" \\\\ \\uNNNN and \\UNNNNNNNN; write \\\\ for a backslash'
_LINES = "text over several lines is a heredoc (<<EOT)"
_VALUE_HINT = (
    "a value is a quoted string, a heredoc, a number, true, false, null, a list or an object; "
    "HCL expressions (names, arithmetic, functions) are not read in agent configs"
)


class HclError(Exception):
    """The text is not the HCL kv2render reads. Carries positions, never the input's text."""

    def __init__(self, message: str, line: int, column: int, hint: str | None = None) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column
        self.hint = hint


def loads(text: str) -> dict[str, Any]:
    """The HCL document ``text`` as Vault Agent's JSON-form tree; HclError when it is not."""
    nul = text.find("\x00")
    if nul >= 0:
        raise _Parser(text).error("a NUL character", nul, hint="the file is not a text file")
    return _Parser(text).document()


class _Parser:
    """Recursive descent over ``text``: every method takes a position and returns the next."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.values = 0

    # ---------------------------------------------------------------------------------------
    # Positions and errors

    def error(self, message: str, pos: int, hint: str | None = None) -> HclError:
        line = self.text.count("\n", 0, pos) + 1
        column = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return HclError(message, line, column, hint)

    def skip(self, pos: int) -> int:
        """Past white space and comments; an unclosed ``/*`` is an error where it opens."""
        pos = _SPACE.match(self.text, pos).end()  # type: ignore[union-attr]  # matches empty
        if self.text.startswith("/*", pos):
            raise self.error("a /* comment is never closed", pos)
        return pos

    def inline(self, pos: int, message: str, hint: str | None = None) -> int:
        """Past spaces and tabs to something on this line, else ``message`` (HCL is line-based:
        a lost ``#`` must not turn a comment into labels that swallow the next block)."""
        pos = _INLINE.match(self.text, pos).end()  # type: ignore[union-attr]  # matches empty
        if pos >= len(self.text) or self.text[pos] in "\n#" or self.text.startswith("//", pos):
            raise self.error(message, pos, hint=hint)
        return pos

    def count(self, pos: int) -> None:
        self.values += 1
        if self.values > MAX_VALUES:
            raise self.error(
                f"the config has more than {MAX_VALUES:,} values", pos, hint="write fewer values"
            )

    def check_depth(self, depth: int, pos: int) -> None:
        if depth > MAX_DEPTH:
            raise self.error(
                f"blocks, lists and objects are nested more than {MAX_DEPTH} deep",
                pos,
                hint="flatten it",
            )

    # ---------------------------------------------------------------------------------------
    # Bodies: the file, and the inside of a block

    def document(self) -> dict[str, Any]:
        body, pos = self.body(self.skip(0), 0)
        if pos < len(self.text):
            raise self.error("a '}' closes nothing", pos)
        return body

    def body(self, pos: int, depth: int) -> tuple[dict[str, Any], int]:
        """Items up to a '}' or the end of the text (the caller says which it needed)."""
        out: dict[str, Any] = {}
        kinds: dict[str, str] = {}  # name -> "attribute" or "block", for duplicate checks
        text = self.text
        while pos < len(text) and text[pos] != "}":
            match = _IDENT.match(text, pos)
            if match is None:
                raise self.error(
                    "expected an attribute name or a block type",
                    pos,
                    hint='attributes are `name = value`, blocks `type "label" { ... }`',
                )
            name, start = match.group(), pos
            brace = _BLANK.match(text, match.end()).end()  # type: ignore[union-attr]
            if text.startswith("{", brace):
                pos = brace  # `vault` then `{` on the next line: a block, as Vault reads it
            else:
                pos = self.inline(
                    match.end(), "a name must be followed on its line by '=' or a block's '{'"
                )
            if text.startswith("=", pos):
                if name in kinds:
                    raise self._duplicate(name, kinds[name], "an attribute", start)
                kinds[name] = "an attribute"
                pos = self.inline(pos + 1, "a value must start on the line of its name", _LINES)
                out[name], pos = self.value(pos, depth)
            else:
                block, pos = self.block(pos, depth)
                if kinds.get(name, "a block") != "a block":
                    raise self._duplicate(name, kinds[name], "a block", start)
                kinds[name] = "a block"
                out.setdefault(name, []).append(block)
            pos = self.skip(pos)
        return out, pos

    def _duplicate(self, name: str, first: str, second: str, pos: int) -> HclError:
        if first == second:
            what = f"'{name}' is set twice"
            hint = "keep one: kv2render does not guess which one was meant"
        else:
            what = f"'{name}' is both {first} and {second}"
            hint = "rename or remove one"
        return self.error(what, pos, hint=hint)

    def block(self, pos: int, depth: int) -> tuple[Any, int]:
        """``"label" ... { body }`` after the block type: labels nest as one-key mappings.
        The labels are on the type's line; the ``{`` may open the next one (C style)."""
        text = self.text
        labels: list[str] = []
        while True:
            if text[pos] == "{":
                break
            if text[pos] == '"':
                label, pos = self.string(pos)
            elif match := _IDENT.match(text, pos):
                label, pos = match.group(), match.end()
            else:
                raise self.error("expected '=' after a name, or a block's labels and '{'", pos)
            labels.append(label)
            pos = _INLINE.match(text, pos).end()  # type: ignore[union-attr]  # matches empty
            brace = _BLANK.match(text, pos).end()  # type: ignore[union-attr]  # matches empty
            if text.startswith("{", brace):
                pos = brace
            elif pos >= len(text) or text[pos] == "\n" or text.startswith(("#", "//"), pos):
                raise self.error("a block's labels and '{' must be on the line of its type", pos)
        depth += 1 + len(labels)  # each label nests one more mapping
        self.check_depth(depth, pos)
        self.count(pos)
        body, end = self.body(self.skip(pos + 1), depth)
        if end >= len(text):
            raise self.error("this block's '{' is never closed", pos, hint="add the '}'")
        tree: Any = body
        for label in reversed(labels):
            tree = {label: tree}
        return tree, end + 1

    # ---------------------------------------------------------------------------------------
    # Values

    def value(self, pos: int, depth: int) -> tuple[Any, int]:
        text = self.text
        self.count(pos)
        char = text[pos] if pos < len(text) else ""
        if char == '"':
            return self.string(pos)
        if char == "[":
            return self.list(pos, depth + 1)
        if char == "{":
            return self.object(pos, depth + 1)
        if text.startswith("<<", pos):
            return self.heredoc(pos)
        if char == "-" or char.isdigit():
            return self.number(pos)
        match = _IDENT.match(text, pos)
        if match is not None:
            word = match.group()
            if word in ("true", "false", "null"):
                return {"true": True, "false": False, "null": None}[word], match.end()
            raise self.error("a name where a value belongs", pos, hint=_VALUE_HINT)
        if not char:
            raise self.error("the file ends where a value belongs", pos)
        raise self.error("expected a value", pos, hint=_VALUE_HINT)

    def number(self, pos: int) -> tuple[int | float, int]:
        match = _NUMBER.match(self.text, pos)
        if match is None or _NUMBER_TAIL.match(self.text, match.end()):
            raise self.error(
                "not a number kv2render reads",
                pos,
                hint="write digits, optionally with a leading - and one decimal point, or "
                "0x and hexadecimal digits (no exponent or underscores)",
            )
        digits = match.group()
        if len(digits) > 100:
            raise self.error("a number longer than 100 digits", pos)
        if "." in digits:
            return float(digits), match.end()
        # KV2-INV-495: Go's base 0, as the agent's HCL 1 (strconv.ParseInt(text, 0, 64)):
        # `perms = 0640` is 0o640, `0x1A4` and `420` are 420 (= 0o644).
        unsigned = digits.removeprefix("-")
        if unsigned[:2] in ("0x", "0X"):
            value = int(unsigned[2:], 16)
        elif unsigned.startswith("0") and len(unsigned) > 1:
            if not set(unsigned) <= set("01234567"):
                raise self.error(
                    "an illegal octal number (a leading 0 makes an integer octal)",
                    pos,
                    hint="drop the leading zeros for a decimal number, or use digits 0-7",
                )
            value = int(unsigned, 8)
        else:
            value = int(unsigned)
        value = -value if digits.startswith("-") else value
        if not -_INT64 <= value < _INT64:
            raise self.error("an integer out of the 64-bit range", pos)
        return value, match.end()

    def list(self, pos: int, depth: int) -> tuple[list[Any], int]:
        self.check_depth(depth, pos)
        text, opened = self.text, pos
        items: list[Any] = []
        pos = self.skip(pos + 1)
        while not text.startswith("]", pos):
            if pos >= len(text):
                raise self.error("this list's '[' is never closed", opened, hint="add the ']'")
            item, pos = self.value(pos, depth)
            items.append(item)
            pos = self.skip(pos)
            if text.startswith(",", pos):
                pos = self.skip(pos + 1)
            elif not text.startswith("]", pos):
                if pos >= len(text):
                    raise self.error("this list's '[' is never closed", opened, hint="add ']'")
                raise self.error("expected ',' or ']' after a list item", pos)
        return items, pos + 1

    def object(self, pos: int, depth: int) -> tuple[dict[str, Any], int]:
        self.check_depth(depth, pos)
        text, opened = self.text, pos
        out: dict[str, Any] = {}
        pos = self.skip(pos + 1)
        while not text.startswith("}", pos):
            if pos >= len(text):
                raise self.error("this object's '{' is never closed", opened, hint="add the '}'")
            start = pos
            if text[pos] == '"':
                key, pos = self.string(pos)
            else:
                match = _IDENT.match(text, pos)
                if match is None:
                    raise self.error(
                        "expected an object key (a name or a quoted string)",
                        pos,
                        hint="objects are { key = value, ... }",
                    )
                key, pos = match.group(), match.end()
            pos = self.inline(pos, "an object key must be followed on its line by '='")
            if text[pos] not in "=:":
                raise self.error("expected '=' or ':' after an object key", pos)
            if key in out:
                raise self.error(f"the object key '{key}' is set twice", start, hint="keep one")
            pos = self.inline(pos + 1, "a value must start on the line of its key", _LINES)
            out[key], pos = self.value(pos, depth)
            pos = self.skip(pos)
            if text.startswith(",", pos):
                pos = self.skip(pos + 1)
        return out, pos + 1

    # ---------------------------------------------------------------------------------------
    # Strings

    def string(self, pos: int) -> tuple[str, int]:
        """A quoted string from its opening quote; escapes decoded, templates kept verbatim."""
        text, opened = self.text, pos
        parts: list[str] = []
        pos += 1
        while True:
            run = _STRING_RUN.match(text, pos)
            if run is not None:
                parts.append(run.group())
                pos = run.end()
            char = text[pos] if pos < len(text) else ""
            if char == '"':
                return "".join(parts), pos + 1
            if char == "\\":
                decoded, pos = self.escape(pos)
                parts.append(decoded)
            elif char == "$":
                if text.startswith("${", pos):
                    # Vault Agent reads ${...} as text (its HCL 1 does not interpolate);
                    # kept verbatim, as python-hcl2 kept the ones it did not reformat.
                    end = self.template(pos + 1, opened)
                    parts.append(text[pos:end])
                    pos = end
                elif text.startswith("$${", pos):
                    # HCL's escaped ${: verbatim up to the first }, as python-hcl2 read it.
                    end = text.find("}", pos)
                    if end < 0 or "\n" in text[pos:end]:
                        raise self._unclosed_template(opened)
                    parts.append(text[pos : end + 1])
                    pos = end + 1
                else:
                    parts.append("$")
                    pos += 1
            else:
                raise self.error(
                    "this quoted string is not closed on its line",
                    opened,
                    hint="close the quote; write a line break as \\n, or use a heredoc (<<EOT)",
                )

    def escape(self, pos: int) -> tuple[str, int]:
        text = self.text
        char = text[pos + 1 : pos + 2]
        if char in _ESCAPES:
            return _ESCAPES[char], pos + 2
        if char in ("u", "U"):
            pattern = _HEX4 if char == "u" else _HEX8
            match = pattern.match(text, pos + 2)
            if match is not None:
                code = int(match.group(), 16)
                if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                    return chr(code), match.end()
            raise self.error(
                "a \\u or \\U escape that is not a Unicode character",
                pos,
                hint="write \\u and 4 hex digits or \\U and 8, not a UTF-16 surrogate; or "
                "write the character itself",
            )
        raise self.error("an unknown escape sequence", pos, hint=_ESCAPE_HINT)

    def template(self, pos: int, opened: int) -> int:
        """End of the ``{...}`` at ``pos`` (after a ``$``): braces nest, and a quoted string
        inside (``${"}"}``) is skipped whole; a loop, not recursion, whatever the input."""
        text, depth, quoted = self.text, 0, False
        while pos < len(text):
            char = text[pos]
            if char == "\n":
                break
            if char == "\\":
                pos += 1  # the escaped character neither quotes nor closes
            elif char == '"':
                quoted = not quoted
            elif quoted:
                pass
            elif char == "{":
                depth += 1
            elif char == "}":
                depth -= 1
                if depth == 0:
                    return pos + 1
            pos += 1
        raise self._unclosed_template(opened)

    def _unclosed_template(self, opened: int) -> HclError:
        return self.error(
            "a ${ in this quoted string is not closed on its line",
            opened,
            hint="close it with }, or write the $ as \\u0024",
        )

    def heredoc(self, pos: int) -> tuple[str, int]:
        """``<<EOT`` / ``<<-EOT`` up to the line holding only the marker (indent allowed)."""
        text, opened = self.text, pos
        indented = text.startswith("<<-", pos)
        match = _MARKER.match(text, pos + (3 if indented else 2))
        if match is None:
            raise self.error(
                "a heredoc needs a marker name after << or <<-", pos, hint="write <<EOT"
            )
        marker, pos = match.group(), match.end()
        if text.startswith("\r\n", pos):
            raise self._crlf(opened)
        if not text.startswith("\n", pos):
            raise self.error(
                "a heredoc's marker must end its line", pos, hint="start the text on the next line"
            )
        start = pos = pos + 1
        while pos <= len(text):
            end = text.find("\n", pos)
            end = len(text) if end < 0 else end
            line = text[pos:end]
            if "\r" in line:
                raise self._crlf(opened)
            if line.lstrip(" \t") == marker:
                body = text[start:pos]
                return (_dedent(body) if indented else body), end
            pos = end + 1
        raise self.error(
            "this heredoc is never closed",
            opened,
            hint="end it with a line holding only its marker",
        )

    def _crlf(self, pos: int) -> HclError:
        return self.error(
            "a carriage return in a heredoc (CRLF line endings?)",
            pos,
            hint="save the file with LF line endings (dos2unix)",
        )


def _dedent(body: str) -> str:
    """``<<-``: the lines' common leading white space removed, as kv2render always did."""
    lines = body.splitlines(keepends=True)
    widths = [len(line) - len(line.lstrip(" \t")) for line in lines if line.strip()]
    cut = min(widths, default=0)
    return "".join(line[cut:] if line.strip() else line.lstrip(" \t") for line in lines)
