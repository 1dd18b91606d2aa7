"""Credential files and values: read at login time, checked before anything is sent.

    read_credential(path, what, where)   the stripped text of a credential file, or an
                                         AuthError naming the file, never its text
    check_credential(text, ...)          a value fit to send (KV2-INV-351), or AuthError
    stamp(path)                          which file a path is now (inode, size, mtime)
    SecretIdFile                         an AppRole secret_id file: read, kept, removed
    JwtFile                              a jwt method's JWT file: the same life

A credential never appears in a log line, an exception or a repr (KV2-INV-001): errors
name the file or the variable, and say what is wrong in words that never quote the value.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from kv2render.errors import AuthError

__all__ = ["JwtFile", "SecretIdFile", "check_credential", "read_credential", "stamp"]

log = logging.getLogger(__name__)

Stamp = tuple[int, int, int]


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


def stamp(path: Path) -> Stamp | None:
    """Which file ``path`` is now (inode, size, mtime), or None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


class SecretIdFile:
    """An AppRole secret_id file (Vault Agent's ``secret_id_file_path``).

    With ``remove`` (``remove_secret_id_file_after_reading``, default true as in Vault
    Agent) the file is removed once a login with it succeeded, not when it is read as Vault
    Agent does (KV2-INV-352): a login that fails (an unreachable server, a refusal) leaves
    the file for the next try. With ``defer_removal`` (--once) the file is kept until
    :meth:`release`, called when the whole run succeeded, so that a run that logged in and
    then failed to write can simply be run again. The value is kept in memory for later
    re-logins; a new file dropped there later is preferred.
    """

    _WHERE = "auto_auth.method.config.secret_id_file_path"
    _WHAT = "secret_id"
    _SETTING = "remove_secret_id_file_after_reading"
    _METHOD = "approle"

    def __init__(
        self, path: Path, *, remove: bool, defer_removal: bool, follow_symlinks: bool = False
    ) -> None:
        self.path = path
        self._remove = remove
        self._defer_removal = defer_removal
        self._follow_symlinks = follow_symlinks
        self._cached = ""
        self._used: Stamp | None = None  # the file a login succeeded with
        self._removal_warned = False

    def __repr__(self) -> str:  # the path only, never the cached value
        return f"<{type(self).__name__} {self.path}>"

    def read(self) -> tuple[str, Stamp | None]:
        """(secret_id, the stamp of the file it came from; None for the cached value)."""
        path = self.path
        found = stamp(path)
        if self._cached and found is None:
            return self._cached, None
        try:
            secret_id = read_credential(path, self._WHAT, self._WHERE)
        except AuthError as exc:
            if self._remove and not path.exists():
                # KV2-FC-351: the usual reason is our own removal after an earlier login.
                what, setting = self._WHAT, self._SETTING
                raise AuthError(
                    exc.message,
                    where=self._WHERE,
                    hint=f"{setting} (default true) removes it after a successful login, so "
                    f"an earlier run may have removed it; provide a new {what} (or set "
                    f"{setting}: false for a {what} meant to be reused)",
                ) from exc
            raise
        return secret_id, found

    def logged_in(self, secret_id: str, used: Stamp | None) -> None:
        """A login with ``secret_id`` succeeded; ``used``: the file it came from (None when
        it was the cached value)."""
        self._cached = secret_id
        if used is not None:
            self._used = used
            if self._remove and not self._defer_removal:
                self._remove_used_file()

    def release(self) -> None:
        """The run is done and succeeded (--once): remove the file now if asked to."""
        if self._remove and self._defer_removal:
            self._remove_used_file()

    def _remove_used_file(self) -> None:
        """Remove the secret_id file a login succeeded with, unless it was replaced since
        (a new secret_id dropped there is kept for the next login)."""
        path = self.path
        if self._used is None:
            return
        used, self._used = self._used, None
        what, method = self._WHAT, self._METHOD
        if stamp(path) != used:
            log.debug("%s: %s file %s changed since the login; kept", method, what, path)
            return
        if self._follow_symlinks:
            # remove_jwt_follows_symlinks: the link's target goes, as in Vault Agent.
            path = Path(os.path.realpath(path))
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            # KV2-INV-353: a read-only or protected folder (ProtectSystem=strict, EROFS,
            # EACCES, EPERM) refuses every time: say it once per process, not per login.
            level = logging.DEBUG if self._removal_warned else logging.WARNING
            self._removal_warned = True
            log.log(
                level,
                "%s: could not remove %s file %s after the login (%s); it stays until "
                "removed by hand (or set %s: false)",
                method,
                what,
                path,
                exc.strerror or type(exc).__name__,
                self._SETTING,
            )
            return
        log.info("%s: removed %s file %s after the login", method, what, path)


class JwtFile(SecretIdFile):
    """The jwt method's JWT file (``path``), removed after a successful login when
    ``remove_jwt_after_reading`` (default true, as in Vault Agent), with the secret_id
    file's safety (KV2-INV-494): never before a login succeeded, with --once only when the
    whole run succeeded, a refused removal warned once. ``remove_jwt_follows_symlinks``
    removes a symlink's target instead of the link."""

    _WHERE = "auto_auth.method.config.path"
    _WHAT = "JWT"
    _SETTING = "remove_jwt_after_reading"
    _METHOD = "jwt"
