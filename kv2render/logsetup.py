"""Logging set-up for the CLI: levels trace..error, text or JSON lines on stderr.

Only ``cli.py`` calls :func:`configure`; every other module just uses
``logging.getLogger(__name__)`` (STYLE.md convention 10). Log records carry
metadata only (KV2-INV-001); this module adds no content of its own beyond the
record's message and the whitelisted ``extra`` fields.

One event is one line (KV2-INV-396): the text formatter escapes line breaks and other
control characters in the message, whoever wrote it (a server's error text, an OS message,
a command's output line), and the JSON formatter writes one object per line anyway.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

TRACE = 5
logging.addLevelName(TRACE, "TRACE")

LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# ``extra=`` keys that may appear in JSON lines. All are metadata by construction.
_EXTRA_FIELDS = (
    "destination",
    "template",
    "mount",
    "path",
    "version",
    "error_type",
    "event",
    "status",
    "method",
    "duration_ms",
    "stream",
)

# Control characters that would break a line or confuse a terminal, written as escapes.
# Patterns, not compiled ones: re compiles (and caches) them on first use, so a run whose
# log lines are plain ASCII never pays for them (KV2-NFR-520).
_CONTROL = r"[\x00-\x1f\x7f-\x9f\u2028\u2029]"
# What json.dumps(ensure_ascii=False) leaves raw but line-splitting readers (Python's
# str.splitlines, JavaScript) take as a line break.
_JSON_BREAKS = r"[\x85\u2028\u2029]"
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """``text`` with line breaks and control characters escaped: one event, one line.

    The real OpenBao answers ``{"errors": ["1 error occurred:\\n\\t* permission denied\\n\\n"]}``;
    that text reaches an error message and must not split a log line (KV2-INV-396).
    """
    if text.isascii() and text.isprintable():
        return text  # the common line: no pattern needed (compiling it costs ~0.3 ms)
    if not re.search(_CONTROL, text):
        return text
    return re.sub(_CONTROL, lambda m: _ESCAPES.get(m.group(0), _hex(m.group(0))), text)


def count(number: int, noun: str, plural: str | None = None) -> str:
    """``1 template``, ``2 templates``: every count in a log line agrees with its noun."""
    return f"{number} {noun if number == 1 else (plural or noun + 's')}"


def json_line(obj: dict[str, Any]) -> str:
    """``obj`` as one line of JSON, whatever its strings hold (KV2-INV-396)."""
    text = json.dumps(obj, ensure_ascii=False, default=str)
    if text.isascii():
        return text
    return re.sub(_JSON_BREAKS, lambda m: f"\\u{ord(m.group(0)):04x}", text)


def _hex(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _utc(created: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
        + f".{int(created % 1 * 1000):03d}Z"
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Tracebacks are reduced to the exception type."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in _EXTRA_FIELDS:
            if name in record.__dict__:
                entry[name] = record.__dict__[name]
        if record.exc_info and record.exc_info[0] is not None:
            entry["exc_type"] = record.exc_info[0].__name__
        return json_line(entry)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s [%(levelname)s] %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.message = record.getMessage()
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        if record.exc_info and record.exc_info[0] is not None:
            # An exception's text could quote data it was handed; its type only, on the
            # same line (logging's own format would add a traceback on new lines).
            line += f" ({record.exc_info[0].__name__})"
        # KV2-INV-396: escaped here, at the one place every text line passes through.
        return one_line(line)


class _Demote(logging.Filter):
    """watchfiles' INFO lines ("1 change detected") are DEBUG for kv2render, its DEBUG lines
    TRACE: kv2render says what a change did at INFO itself (KV2-INV-396)."""

    _TO = {logging.INFO: logging.DEBUG, logging.DEBUG: TRACE}

    def filter(self, record: logging.LogRecord) -> bool:
        lower = self._TO.get(record.levelno)
        if lower is not None:
            record.levelno = lower
            record.levelname = logging.getLevelName(lower)
        return True


_DEMOTE = _Demote()
# The loggers watchfiles writes to (watchfiles.main holds "N changes detected").
_WATCHFILES_LOGGERS = ("watchfiles", "watchfiles.main", "watchfiles.watcher", "watchfiles.run")


HANDLER_NAME = "kv2render"  # the root handler configure() installs


def configured() -> bool:
    """Whether :func:`configure` set up the root logger (the dev server, run on its own,
    configures logging itself only when it was not)."""
    return any(h.get_name() == HANDLER_NAME for h in logging.getLogger().handlers)


def unconfigure() -> None:
    """Remove the handler :func:`configure` installed."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == HANDLER_NAME:
            root.removeHandler(handler)


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # The handler filters by level too: a record demoted after its logger's level check
    # (watchfiles, below) must still stay under the chosen level.
    handler.setLevel(LEVELS[level])
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    # Third-party loggers never see a secret from us, but urllib3 at DEBUG prints
    # request lines with query strings; keep it at WARNING unless tracing.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if level == "trace" else logging.WARNING)
    # watchfiles logs every filtered-out change in a watched folder at DEBUG: noise,
    # and a log file kept beside the config would feed itself a line per event. Its INFO
    # lines become DEBUG and its DEBUG lines TRACE (_Demote).
    watch_level = logging.DEBUG if level == "trace" else logging.INFO
    for name in _WATCHFILES_LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(watch_level if name == "watchfiles" else logging.NOTSET)
        if _DEMOTE not in logger.filters:
            logger.addFilter(_DEMOTE)


def emit(obj: dict[str, Any], fmt: str, text: str, stream: TextIO | None = None) -> None:
    """Print a command's own output: JSON object per line in json format, text otherwise."""
    out = stream or sys.stdout
    if fmt == "json":
        out.write(json_line(obj) + "\n")
    else:
        out.write(one_line(text) + "\n")
    out.flush()
