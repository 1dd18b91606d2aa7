"""Sentinel values and leak scanners for the hygiene tests (KV2-INV-001).

Every credential and secret value a hygiene test hands to kv2render is a distinctive
random string (``SENTINEL-SECRET-<hex>``). After a run the test hands every text
kv2render produced (stdout, stderr, exception text, reprs, files it left behind, a
command's environment, the dev server's request log) to :meth:`Sentinels.leaks`,
which reports which sentinel appeared where, with a short excerpt, never a whole
output.

A sentinel is also found when it shows up transformed: its random core is searched
case-insensitively (``| upper``, a slice that keeps the core), reversed, and its base64
spelling is searched too; :meth:`Sentinels.derive` adds any other derived text. A value
derived from a secret is still the secret.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_EXCERPT = 60  # characters shown on each side of a hit
_MAX_HITS = 20  # per check, so that a failure message stays readable
_PER_SENTINEL = 4  # hits reported per sentinel per text


def _core() -> str:
    return secrets.token_hex(8)  # 16 lowercase hex characters: letters and digits


@dataclass(frozen=True)
class Sentinel:
    name: str
    value: str
    core: str  # the random part searched case-insensitively

    def patterns(self) -> list[tuple[str, re.Pattern[str]]]:
        b64 = base64.b64encode(self.value.encode()).decode().rstrip("=")
        return [
            ("value", re.compile(re.escape(self.value))),
            ("core (any case)", re.compile(re.escape(self.core), re.IGNORECASE)),
            ("base64", re.compile(re.escape(b64[: max(8, len(b64) - 4)]))),
            ("core reversed", re.compile(re.escape(self.core[::-1]), re.IGNORECASE)),
        ]


@dataclass
class Sentinels:
    """One fresh set of sentinel values per test."""

    items: dict[str, Sentinel] = field(default_factory=dict)

    def make(self, name: str, prefix: str) -> str:
        core = _core()
        sentinel = Sentinel(name, f"{prefix}-{core}", core)
        self.items[name] = sentinel
        return sentinel.value

    def add_number(self, name: str) -> int:
        """A numeric secret: 12 random digits (no timestamp or port looks like it)."""
        digits = "9" + "".join(secrets.choice("0123456789") for _ in range(11))
        self.items[name] = Sentinel(name, digits, digits)
        return int(digits)

    def derive(self, name: str, text: str) -> str:
        """Also look for ``text``, a value a template derives from a secret (a slice, the
        result of arithmetic on a secret number): it is secret material too."""
        self.items[name] = Sentinel(name, text, text)
        return text

    def __getitem__(self, name: str) -> str:
        return self.items[name].value

    def values(self) -> list[str]:
        return [s.value for s in self.items.values()]

    def leaks(self, where: str, text: str | bytes | None) -> list[str]:
        """One line per sentinel found in ``text``: which, how, where, and a short excerpt."""
        if text is None:
            return []
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        found: list[str] = []
        for sentinel in self.items.values():
            for how, pattern in sentinel.patterns():
                matches = list(pattern.finditer(text))[:_PER_SENTINEL]
                for match in matches:
                    start, end = match.span()
                    excerpt = (
                        text[max(0, start - _EXCERPT) : start]
                        + "<<<"
                        + text[start:end]
                        + ">>>"
                        + text[end : end + _EXCERPT]
                    ).replace("\n", "\\n")
                    found.append(f"{sentinel.name} ({how}) in {where}: ...{excerpt}...")
                if matches:
                    break  # the plainest spelling found is enough
            if len(found) >= _MAX_HITS:
                break
        return found


def snapshot(root: Path) -> dict[Path, bytes]:
    """Every regular file under ``root`` (hidden ones too) with its bytes."""
    out: dict[Path, bytes] = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            try:
                out[path] = path.read_bytes()
            except OSError:
                out[path] = b""
    return out


def scan_tree(
    sentinels: Sentinels,
    root: Path,
    before: Mapping[Path, bytes],
    allowed: Iterable[Path],
) -> list[str]:
    """Leaks in files under ``root`` that are new or changed since ``before``, other than
    the intended destinations (and their ``.bak``, KV2-INV-001). Files the test wrote
    itself (credential files, the config) are inputs and are not judged unless changed."""
    keep = set()
    for path in allowed:
        keep.add(Path(path))
        keep.add(Path(str(path) + ".bak"))
    found: list[str] = []
    for path, data in snapshot(root).items():
        if path in keep or before.get(path) == data:
            continue
        found.extend(sentinels.leaks(f"file {path.relative_to(root)}", data))
    return found


def exception_texts(exc: BaseException) -> list[tuple[str, str]]:
    """(label, text) for str() and repr() of ``exc`` and every exception chained to it."""
    out: list[tuple[str, str]] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    depth = 0
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        label = type(current).__name__ if depth == 0 else f"{type(current).__name__} (chained)"
        out.append((f"str({label})", str(current)))
        out.append((f"repr({label})", repr(current)))
        for attr in ("where", "hint", "message"):
            value = getattr(current, attr, None)
            if isinstance(value, str):
                out.append((f"{label}.{attr}", value))
        # Follow the chain as Python prints it: ``raise ... from None`` hides the context.
        if current.__cause__ is not None:
            current = current.__cause__
        elif current.__suppress_context__:
            current = None
        else:
            current = current.__context__
        depth += 1
    return out


def report(leaks: list[str]) -> str:
    shown = leaks[:_MAX_HITS]
    more = f"\n  ... and {len(leaks) - len(shown)} more" if len(leaks) > len(shown) else ""
    return "secret material leaked (KV2-INV-001):\n  " + "\n  ".join(shown) + more
