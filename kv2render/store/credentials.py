"""Credential files and values: read at login time, checked before anything is sent.

    read_credential(path, what, where)   the stripped text of a credential file, or an
                                         AuthError naming the file, never its text
    check_credential(text, ...)          a value fit to send (KV2-INV-351), or AuthError
    stamp(path)                          which file a path is now (inode, size, mtime)

A credential never appears in a log line, an exception or a repr (KV2-INV-001): errors
name the file or the variable, and say what is wrong in words that never quote the value.
"""

from __future__ import annotations

import os
from pathlib import Path

from kv2render.errors import AuthError

__all__ = ["check_credential", "read_credential", "stamp"]


def _bad_character(text: str, *, header: bool) -> str | None:
    """What makes ``text`` unfit as a credential, in words that never quote it, or None.

    KV2-INV-351. A credential sent in a header (a token, a bearer token) must be visible
    ASCII (RFC 9110 VCHAR, 0x21-0x7E): a header also allows inner spaces and Latin-1 bytes,
    but no token format of the KV2 protocol servers (Vault and OpenBao tokens, OAuth
    bearer tokens, JWTs) uses them, so one is a paste error ("Bearer " written into the
    file, two tokens, a Windows editor). A credential sent in a JSON body (role_id,
    secret_id, JWT) may be any Unicode text without control characters.
    """
    if "\n" in text or "\r" in text:
        return "a line break (the value spans more than one line)"
    if "\0" in text:
        return "a NUL character"
    if any((ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) < 0xA0 for c in text):
        return "a control character"
    if text.startswith("\ufeff"):
        return "a byte-order mark (U+FEFF; save the file without a BOM)"
    if header:
        if " " in text or "\t" in text:
            return "a space or tab (kv2render adds 'Bearer ' itself; one token per file)"
        if not text.isascii():
            return "a character outside printable ASCII"
    elif "\t" in text:
        return "a control character"
    elif any(0xD800 <= ord(c) < 0xE000 for c in text):
        return "bytes that are not UTF-8 text"
    return None


def check_credential(text: str, *, source: str, where: str, header: bool) -> str:
    """``text`` when it can be sent as a credential; else AuthError (exit 3) naming
    ``source`` (a file path, "VAULT_TOKEN from the environment") and what is wrong, never
    the value. Checked before any request, so a bad credential is never sent nor retried
    (KV2-INV-351, KV2-FC-350)."""
    problem = _bad_character(text, header=header)
    if problem is not None:
        fit = "one line of printable ASCII" if header else "one line of text"
        raise AuthError(
            f"{source} holds {problem}",
            where=where,
            hint=f"a credential must be {fit}; write it again",
        )
    return text


def read_credential(path: Path, what: str, where: str, *, header: bool = False) -> str:
    """The stripped text of a credential file, or AuthError naming the file (never its text).
    ``header``: the value is sent in an HTTP header (a token), not in a JSON body."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError as exc:
        raise AuthError(f"{what} file {path} does not exist", where=where) from exc
    except UnicodeDecodeError as exc:
        raise AuthError(f"{what} file {path} is not UTF-8 text", where=where) from exc
    except OSError as exc:
        raise AuthError(
            f"{what} file {path} cannot be read ({exc.strerror or type(exc).__name__})",
            where=where,
        ) from exc
    if not text:
        raise AuthError(f"{what} file {path} is empty", where=where)
    return check_credential(text, source=f"{what} file {path}", where=where, header=header)


def stamp(path: Path) -> tuple[int, int, int] | None:
    """Which file ``path`` is now (inode, size, mtime), or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)
