"""Clock, timestamps and Go-style durations for the dev server.

One injectable monotonic clock drives everything time-dependent (token expiry,
``delete_version_after``), so a test that advances a fake clock also moves the
wall-clock timestamps the server reports (STYLE.md convention 7).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]

DEFAULT_TTL = 768 * 3600  # Vault's system default and max lease TTL (2764800 s)

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")


class WallClock:
    """Wall time derived from the monotonic clock: wall0 + (clock() - mono0)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._wall0_ns = time.time_ns()
        self._mono0 = clock()

    def now_ns(self) -> int:
        return self._wall0_ns + int((self.clock() - self._mono0) * 1e9)

    def ns_at(self, mono: float) -> int:
        """The wall time (ns) matching a reading of the monotonic clock."""
        return self._wall0_ns + int((mono - self._mono0) * 1e9)


def rfc3339(ns: int | None) -> str:
    """Go's time.RFC3339Nano in UTC: trailing zeros of the fraction trimmed; '' when unset."""
    if ns is None:
        return ""
    seconds, frac = divmod(ns, 1_000_000_000)
    base = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        return f"{base}.{frac:09d}".rstrip("0") + "Z"
    return base + "Z"


def parse_duration(value: object, field_name: str) -> int:
    """Seconds from an int/float or a Go duration string ('90s', '1h30m', '3600').

    Raises ValueError naming the field, which callers turn into a 400.
    """
    if isinstance(value, bool):
        raise ValueError(f"{field_name}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"{field_name}: must not be negative")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return 0
        if re.fullmatch(r"\d+", text):
            return int(text)
        pos, total = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNITS[match.group(2)]
            pos = match.end()
        if pos == len(text):
            return int(total)
    raise ValueError(f"{field_name}: cannot parse duration {value!r}; use seconds or e.g. '1h30m'")


def format_duration(seconds: int) -> str:
    """Go's time.Duration.String() for whole seconds: 0s, 45s, 1m30s, 768h0m0s."""
    if seconds == 0:
        return "0s"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def human_duration(seconds: int) -> str:
    """Vault SDK's humanDuration: Duration.String() without zero minutes and seconds
    ("100h", "1h30m", "45s"), as in the TTL-capped warning."""
    text = format_duration(seconds)
    if text.endswith("m0s"):
        text = text[:-2]
    idx = text.find("h0m")
    if idx > 0:
        text = text[: idx + 1] + text[idx + 3 :]
    return text
