"""Lexer for Go ``text/template`` (a port of Go 1.19 ``text/template/parse/lex.go``).

Go scans bytes; this scans code points. Positions are code-point offsets; the
executor converts them to Go's byte columns when it reports an error.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Callable
from typing import Any


class T(enum.IntEnum):
    ERROR = 0
    BOOL = 1
    CHAR = 2
    CHAR_CONSTANT = 3
    COMMENT = 4
    COMPLEX = 5
    ASSIGN = 6
    DECLARE = 7
    EOF = 8
    FIELD = 9
    IDENTIFIER = 10
    LEFT_DELIM = 11
    LEFT_PAREN = 12
    NUMBER = 13
    PIPE = 14
    RAW_STRING = 15
    RIGHT_DELIM = 16
    RIGHT_PAREN = 17
    SPACE = 18
    STRING = 19
    TEXT = 20
    VARIABLE = 21
    KEYWORD = 22  # keywords below
    BLOCK = 23
    BREAK = 24
    CONTINUE = 25
    DOT = 26
    DEFINE = 27
    ELSE = 28
    END = 29
    IF = 30
    NIL = 31
    RANGE = 32
    TEMPLATE = 33
    WITH = 34


KEYWORDS = {
    ".": T.DOT,
    "block": T.BLOCK,
    "break": T.BREAK,
    "continue": T.CONTINUE,
    "define": T.DEFINE,
    "else": T.ELSE,
    "end": T.END,
    "if": T.IF,
    "range": T.RANGE,
    "nil": T.NIL,
    "template": T.TEMPLATE,
    "with": T.WITH,
}

SPACE_CHARS = " \t\r\n"
_SIMPLE = {"=": T.ASSIGN, "|": T.PIPE}
# Runs of characters the per-character states would only step over: taken in one match
# (prepare of a hundred templates spent most of its time in next(), KV2-NFR-520). What
# ends a run (a quote, a backslash, a newline, a non-ASCII letter) goes back to the
# per-character code, so the tokens and errors are Go's as before.
_QUOTED_RUN = {
    '"': re.compile(r'[^"\\\n]*'),
    "'": re.compile(r"[^'\\\n]*"),
}
_ASCII_WORD = re.compile(r"[A-Za-z0-9_]*")
_State = Callable[[], Any] | None  # a state function returns the next state (Go's stateFn)


class Item:
    """One token. A plain slotted class, not a frozen dataclass: a template of a hundred
    actions makes thousands of these, and the class itself costs ~0.5 ms to create at
    import as a dataclass (KV2-NFR-520). Nothing mutates or compares tokens."""

    __slots__ = ("typ", "pos", "val", "line")

    def __init__(self, typ: T, pos: int, val: str, line: int) -> None:
        self.typ = typ
        self.pos = pos
        self.val = val
        self.line = line

    def __repr__(self) -> str:
        return f"Item({self.typ!r}, {self.pos}, {self.val!r}, {self.line})"

    def __str__(self) -> str:
        if self.typ == T.EOF:
            return "EOF"
        if self.typ == T.ERROR:
            return self.val
        if self.typ > T.KEYWORD:
            return f"<{self.val}>"
        from kv2render.render.ctmpl.gofmt import go_quote

        if len(self.val) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


def is_space(c: str) -> bool:
    return c in (" ", "\t", "\r", "\n") and c != ""


def is_alnum(c: str) -> bool:
    if c == "" or len(c) != 1:
        return False
    return c == "_" or c.isalpha() or unicodedata.category(c) == "Nd"


def _has_left_trim(s: str) -> bool:
    return len(s) >= 2 and s[0] == "-" and is_space(s[1])


def _has_right_trim(s: str) -> bool:
    return len(s) >= 2 and is_space(s[0]) and s[1] == "-"


class Lexer:
    """Produces the full token list eagerly (Go streams it through a channel)."""

    def __init__(self, text: str, left: str = "{{", right: str = "}}") -> None:
        self.input = text
        self.left = left or "{{"
        self.right = right or "}}"
        self.pos = 0
        self.start = 0
        self.line = 1
        self.start_line = 1
        self.paren_depth = 0
        self.items: list[Item] = []
        self.at_eof = False

    def run(self) -> list[Item]:
        state: _State = self.lex_text
        while state is not None:
            state = state()
        return self.items

    # -- primitives -------------------------------------------------------
    def next(self) -> str:
        if self.pos >= len(self.input):
            self.at_eof = True
            return ""
        c = self.input[self.pos]
        self.pos += 1
        if c == "\n":
            self.line += 1
        return c

    def peek(self) -> str:
        c = self.next()
        self.backup()
        return c

    def backup(self) -> None:
        if not self.at_eof and self.pos > 0:
            self.pos -= 1
            if self.input[self.pos] == "\n":
                self.line -= 1

    def emit(self, typ: T) -> None:
        self.items.append(Item(typ, self.start, self.input[self.start : self.pos], self.start_line))
        self.start = self.pos
        self.start_line = self.line

    def ignore(self) -> None:
        self.line += self.input.count("\n", self.start, self.pos)
        self.start = self.pos
        self.start_line = self.line

    def accept(self, valid: str) -> bool:
        c = self.next()
        if c != "" and c in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while True:
            c = self.next()
            if c == "" or c not in valid:
                break
        self.backup()

    def errorf(self, msg: str) -> _State:
        """Emit an error item and stop lexing (the next state is None)."""
        self.items.append(Item(T.ERROR, self.start, msg, self.start_line))
        return None

    # -- states -------------------------------------------------------------
    def lex_text(self) -> _State:
        x = self.input.find(self.left, self.pos)
        if x >= 0:
            ldn = len(self.left)
            self.pos = x
            trim = 0
            if _has_left_trim(self.input[self.pos + ldn : self.pos + ldn + 2]):
                seg = self.input[self.start : self.pos]
                trim = len(seg) - len(seg.rstrip(SPACE_CHARS))
            self.pos -= trim
            if self.pos > self.start:
                self.line += self.input.count("\n", self.start, self.pos)
                self.emit(T.TEXT)
            self.pos += trim
            self.ignore()
            return self.lex_left_delim
        self.pos = len(self.input)
        if self.pos > self.start:
            self.line += self.input.count("\n", self.start, self.pos)
            self.emit(T.TEXT)
        self.emit(T.EOF)
        return None

    def at_right_delim(self) -> tuple[bool, bool]:
        # Bounded slices and startswith at an offset: copying the rest of the input at each
        # token made lexing quadratic in the template's size (KV2-NFR-242).
        text, pos = self.input, self.pos
        if _has_right_trim(text[pos : pos + 2]) and text.startswith(self.right, pos + 2):
            return True, True
        if text.startswith(self.right, pos):
            return True, False
        return False, False

    def skip_spaces(self) -> None:
        """Move past the space characters at ``pos`` (a trim marker's ``-``)."""
        text, pos, end = self.input, self.pos, len(self.input)
        while pos < end and text[pos] in SPACE_CHARS:
            pos += 1
        self.pos = pos

    def lex_left_delim(self) -> _State:
        self.pos += len(self.left)
        trim = _has_left_trim(self.input[self.pos : self.pos + 2])
        after = 2 if trim else 0
        if self.input.startswith("/*", self.pos + after):
            self.pos += after
            self.ignore()
            return self.lex_comment
        self.emit(T.LEFT_DELIM)
        self.pos += after
        self.ignore()
        self.paren_depth = 0
        return self.lex_inside_action

    def lex_comment(self) -> _State:
        self.pos += 2
        i = self.input.find("*/", self.pos)
        if i < 0:
            return self.errorf("unclosed comment")
        self.pos = i + 2
        delim, trim = self.at_right_delim()
        if not delim:
            return self.errorf("comment ends before closing delimiter")
        if trim:
            self.pos += 2
        self.pos += len(self.right)
        if trim:
            self.skip_spaces()
        self.ignore()
        return self.lex_text

    def lex_right_delim(self) -> _State:
        trim = _has_right_trim(self.input[self.pos : self.pos + 2])
        if trim:
            self.pos += 2
            self.ignore()
        self.pos += len(self.right)
        self.emit(T.RIGHT_DELIM)
        if trim:
            self.skip_spaces()
            self.ignore()
        return self.lex_text

    def lex_inside_action(self) -> _State:  # noqa: C901
        delim, _ = self.at_right_delim()
        if delim:
            if self.paren_depth == 0:
                return self.lex_right_delim
            return self.errorf("unclosed left paren")
        r = self.next()
        simple = _SIMPLE
        if r == "":
            return self.errorf("unclosed action")
        if is_space(r):
            self.backup()
            return self.lex_space
        if r in simple:
            self.emit(simple[r])
        elif r == ":":
            if self.next() != "=":
                return self.errorf("expected :=")
            self.emit(T.DECLARE)
        elif r == '"':
            return self.lex_quote
        elif r == "`":
            return self.lex_raw_quote
        elif r == "$":
            return self.lex_variable
        elif r == "'":
            return self.lex_char
        elif r == "." and self.pos < len(self.input) and not ("0" <= self.input[self.pos] <= "9"):
            return self.lex_field
        elif r in ".+-" or "0" <= r <= "9":
            self.backup()
            return self.lex_number
        elif is_alnum(r):
            self.backup()
            return self.lex_identifier
        elif r == "(":
            self.emit(T.LEFT_PAREN)
            self.paren_depth += 1
        elif r == ")":
            self.emit(T.RIGHT_PAREN)
            self.paren_depth -= 1
            if self.paren_depth < 0:
                return self.errorf(f"unexpected right paren U+{ord(r):04X} ')'")
        elif ord(r) <= 127 and r.isprintable():
            self.emit(T.CHAR)
        else:
            return self.errorf(f"unrecognized character in action: {_rune_desc(r)}")
        return self.lex_inside_action

    def lex_space(self) -> _State:
        num = 0
        while is_space(self.peek()):
            self.next()
            num += 1
        at = self.pos - 1
        if _has_right_trim(self.input[at : at + 2]) and self.input.startswith(self.right, at + 2):
            self.backup()
            if num == 1:
                return self.lex_right_delim
        self.emit(T.SPACE)
        return self.lex_inside_action

    def lex_identifier(self) -> _State:
        self.pos = _ASCII_WORD.match(self.input, self.pos).end()  # type: ignore[union-attr]
        while True:
            r = self.next()
            if is_alnum(r):
                continue
            self.backup()
            word = self.input[self.start : self.pos]
            if not self.at_terminator():
                return self.errorf(f"bad character {_rune_desc(r)}")
            kw = KEYWORDS.get(word)
            if kw is not None and kw > T.KEYWORD:
                self.emit(kw)
            elif word[0] == ".":
                self.emit(T.FIELD)
            elif word in ("true", "false"):
                self.emit(T.BOOL)
            else:
                self.emit(T.IDENTIFIER)
            return self.lex_inside_action

    def lex_field(self) -> _State:
        return self.lex_field_or_variable(T.FIELD)

    def lex_variable(self) -> _State:
        if self.at_terminator():
            self.emit(T.VARIABLE)
            return self.lex_inside_action
        return self.lex_field_or_variable(T.VARIABLE)

    def lex_field_or_variable(self, typ: T) -> _State:
        if self.at_terminator():
            self.emit(T.VARIABLE if typ == T.VARIABLE else T.DOT)
            return self.lex_inside_action
        self.pos = _ASCII_WORD.match(self.input, self.pos).end()  # type: ignore[union-attr]
        while True:
            r = self.next()
            if not is_alnum(r):
                self.backup()
                break
        if not self.at_terminator():
            return self.errorf(f"bad character {_rune_desc(r)}")
        self.emit(typ)
        return self.lex_inside_action

    def at_terminator(self) -> bool:
        r = self.peek()
        if is_space(r) or r in ("", ".", ",", "|", ":", ")", "("):
            return True
        return self.input.startswith(self.right, self.pos)

    def _lex_quoted(self, close: str, typ: T, what: str) -> _State:
        run = _QUOTED_RUN[close]
        while True:
            self.pos = run.match(self.input, self.pos).end()  # type: ignore[union-attr]
            c = self.next()
            if c == "\\":
                c2 = self.next()
                if c2 not in ("", "\n"):
                    continue
                return self.errorf(f"unterminated {what}")
            if c in ("", "\n"):
                return self.errorf(f"unterminated {what}")
            if c == close:
                break
        self.emit(typ)
        return self.lex_inside_action

    def lex_char(self) -> _State:
        return self._lex_quoted("'", T.CHAR_CONSTANT, "character constant")

    def lex_quote(self) -> _State:
        return self._lex_quoted('"', T.STRING, "quoted string")

    def lex_raw_quote(self) -> _State:
        while True:
            c = self.next()
            if c == "":
                return self.errorf("unterminated raw quoted string")
            if c == "`":
                break
        self.emit(T.RAW_STRING)
        return self.lex_inside_action

    def lex_number(self) -> _State:
        if not self.scan_number():
            return self._bad_number()
        sign = self.peek()
        if sign in ("+", "-") and sign != "":
            if not self.scan_number() or self.input[self.pos - 1] != "i":
                return self._bad_number()
            self.emit(T.COMPLEX)
        else:
            self.emit(T.NUMBER)
        return self.lex_inside_action

    def _bad_number(self) -> _State:
        from kv2render.render.ctmpl.gofmt import go_quote

        return self.errorf(f"bad number syntax: {go_quote(self.input[self.start : self.pos])}")

    def scan_number(self) -> bool:
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if is_alnum(self.peek()):
            self.next()
            return False
        return True


def _rune_desc(r: str) -> str:
    """Go's ``%#U``: ``U+0021 '!'``."""
    if r == "":
        return "U+FFFFFFFFFFFFFFFF"
    return f"U+{ord(r):04X} '{r}'" if r.isprintable() else f"U+{ord(r):04X}"


def lex(text: str, left: str = "{{", right: str = "}}") -> list[Item]:
    return Lexer(text, left, right).run()
