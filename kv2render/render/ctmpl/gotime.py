"""Go ``time.Time.Format`` with reference layouts (``2006-01-02T15:04:05Z07:00``).

consul-template's ``timestamp`` formats ``time.Now().UTC()`` with a Go layout.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
]  # fmt: skip

# Go's nextStdChunk, in the order it tries the alternatives at each position.
_TOKENS = re.compile(
    r"January|Jan|Monday|Mon|MST|01|02|03|04|05|06|002|__2|_2|2006|15|1|2|3|4|5"
    r"|PM|pm|Z070000|Z07:00:00|Z0700|Z07:00|Z07|-070000|-07:00:00|-0700|-07:00|-07"
    r"|[.,](?:0+|9+)(?![0-9])"
)


def _zone(dt: datetime, token: str) -> str:
    offset = dt.utcoffset()
    seconds = 0 if offset is None else int(offset.total_seconds())
    if token.startswith("Z") and seconds == 0:
        return "Z"
    sign = "-" if seconds < 0 else "+"
    seconds = abs(seconds)
    hh, mm, ss = seconds // 3600, seconds // 60 % 60, seconds % 60
    body = token.lstrip("Z-")
    if body == "07":
        return f"{sign}{hh:02d}"
    if body == "0700":
        return f"{sign}{hh:02d}{mm:02d}"
    if body == "07:00":
        return f"{sign}{hh:02d}:{mm:02d}"
    if body == "070000":
        return f"{sign}{hh:02d}{mm:02d}{ss:02d}"
    return f"{sign}{hh:02d}:{mm:02d}:{ss:02d}"


def _fraction(dt: datetime, token: str) -> str:
    digits = f"{dt.microsecond:06d}000"
    n = len(token) - 1
    if token[1] == "0":
        return token[0] + digits[:n]
    trimmed = digits[:n].rstrip("0")
    return token[0] + trimmed if trimmed else ""


def _chunk(dt: datetime, tok: str) -> str:  # noqa: C901
    hour12 = dt.hour % 12 or 12
    simple = {
        "January": _MONTHS[dt.month - 1],
        "Jan": _MONTHS[dt.month - 1][:3],
        "Monday": _DAYS[dt.weekday()],
        "Mon": _DAYS[dt.weekday()][:3],
        "MST": dt.tzname() or "UTC",
        "01": f"{dt.month:02d}",
        "02": f"{dt.day:02d}",
        "03": f"{hour12:02d}",
        "04": f"{dt.minute:02d}",
        "05": f"{dt.second:02d}",
        "06": f"{dt.year % 100:02d}",
        "002": f"{dt.timetuple().tm_yday:03d}",
        "__2": f"{dt.timetuple().tm_yday:>3d}",
        "_2": f"{dt.day:>2d}",
        "2006": f"{dt.year:04d}",
        "15": f"{dt.hour:02d}",
        "1": str(dt.month),
        "2": str(dt.day),
        "3": str(hour12),
        "4": str(dt.minute),
        "5": str(dt.second),
        "PM": "PM" if dt.hour >= 12 else "AM",
        "pm": "pm" if dt.hour >= 12 else "am",
    }
    if tok in simple:
        return simple[tok]
    if tok[0] in ".,":
        return _fraction(dt, tok)
    return _zone(dt, tok)


def go_time_format(dt: datetime, layout: str) -> str:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    out: list[str] = []
    pos = 0
    for m in _TOKENS.finditer(layout):
        tok = m.group(0)
        # Go refuses "Jan"/"Mon" prefixes of lower-case words ("Monday" vs "Mondays" ok).
        if tok in ("Jan", "Mon") and layout[m.end() : m.end() + 1].islower():
            continue
        out.append(layout[pos : m.start()])
        out.append(_chunk(dt, tok))
        pos = m.end()
    out.append(layout[pos:])
    return "".join(out)
