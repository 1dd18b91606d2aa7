"""Logging set-up for the CLI: levels trace..error, text or JSON lines on stderr.

Only ``cli.py`` calls :func:`configure`; every other module just uses
``logging.getLogger(__name__)`` (STYLE.md convention 10). Log records carry
metadata only (KV2-INV-001); this module adds no content of its own beyond the
record's message and the whitelisted ``extra`` fields.
"""

from __future__ import annotations

import json
import logging
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
)


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
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s [%(levelname)s] %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's API
        # An exception's text could quote data it was handed; print its type only.
        return f"  ({ei[0].__name__})" if ei and ei[0] else ""


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(LEVELS[level])
    # Third-party loggers never see a secret from us, but urllib3 at DEBUG prints
    # request lines with query strings; keep it at WARNING unless tracing.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if level == "trace" else logging.WARNING)
    # watchfiles logs every filtered-out change in a watched folder at DEBUG: noise,
    # and a log file kept beside the config would feed itself a line per event.
    logging.getLogger("watchfiles").setLevel(logging.DEBUG if level == "trace" else logging.INFO)


def emit(obj: dict[str, Any], fmt: str, text: str, stream: TextIO | None = None) -> None:
    """Print a command's own output: JSON object per line in json format, text otherwise."""
    out = stream or sys.stdout
    if fmt == "json":
        out.write(json.dumps(obj, ensure_ascii=False, default=str) + "\n")
    else:
        out.write(text + "\n")
    out.flush()
