"""How a secret location computed from a secret's value is shown (KV2-INV-394, KV2-INV-497).

A resolved location is metadata: logged, in error texts, the status file and metrics labels.
One whose path was built from a secret's value is read, but shown as
``MOUNT/[path computed from a secret value at NAME:LINE]``. The marks live here, keyed by the
real ``(mount, path)``, process-wide and sticky, so that every copy of a location (a set keeps
whichever twin came first; equality ignores the mark) shows the same way, and a location
marked once stays hidden even when a constant reference names it later: hiding a name costs
a log line's detail, showing a value cannot be undone. ``refs.SecretLocation`` consults them.
"""

from __future__ import annotations

import threading

__all__ = ["hide_marked", "lookup", "mark"]

_MARKED: dict[tuple[str, str], tuple[str, str]] = {}  # (mount, path) -> shown (mount, path)
_LOCK = threading.Lock()
# The real texts to hide in text kv2render does not format itself (urllib3's request lines,
# requests' errors), longest first, with what shows instead. Replaced, never mutated: a
# reader in another thread iterates a consistent tuple.
_HIDDEN: tuple[tuple[str, str], ...] = ()


def lookup(mount: str, path: str) -> tuple[str, str] | None:
    """The shown ``(mount, path)`` of a marked location; None when it is not marked."""
    return _MARKED.get((mount, path))


def mark(mount: str, path: str, where: str, *, mount_too: bool, wire: tuple[str, str]) -> None:
    """Show ``mount/path`` as computed from a secret value at ``where`` from now on.
    ``wire``: its request path (``MOUNT/data/PATH``) and path as percent-encoded on the wire."""
    global _HIDDEN
    with _LOCK:
        if (mount, path) in _MARKED:
            return  # sticky: the first mark stays
        shown_mount = "[mount computed from a secret value]" if mount_too else mount
        shown_path = f"[path computed from a secret value at {where}]"
        _MARKED[(mount, path)] = (shown_mount, shown_path)
        full = f"{shown_mount}/{shown_path}"
        pairs = {*_HIDDEN, (f"{mount}/{path}", full), (wire[0], full)}
        pairs |= {(path, shown_path), (wire[1], shown_path)}
        if mount_too:
            pairs.add((mount, shown_mount))
        _HIDDEN = tuple(sorted(pairs, key=lambda pair: -len(pair[0])))


def hide_marked(text: str) -> str:
    """``text`` with every marked location's path replaced by its shown form (KV2-INV-497)."""
    for real, shown in _HIDDEN:
        if real in text:
            text = text.replace(real, shown)
    return text
