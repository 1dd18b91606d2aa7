"""Output files: the only code that creates, chmods, chowns or replaces a destination.

:func:`write_atomic` follows consul-template's ``AtomicWrite`` (temp file in the destination
directory, fsync, rename) and tightens it where kv2render's spec differs (KV2-INV/FC-090..109):

* the temp file is created 0600 with ``O_EXCL|O_NOFOLLOW`` and only then chowned and chmodded,
  so it is never wider than 0600 for an instant, and the rename publishes a file that already has
  its final owner and mode (consul-template chowns after the rename);
* the directory is fsynced after the rename, so the new name survives a crash;
* identical bytes with the wanted mode and owner: nothing is touched (same inode and mtime) and
  the caller runs no command. Unlike consul-template, a mode or owner that differs from the
  config counts as a change, so fixing ``perms`` in config fixes the file at the next pass;
* an existing symlink at the destination is replaced by the rename, never followed: not to
  write, and not to read the old content (a symlink is always "changed");
* a destination directory that someone other than kv2render's user, root or the file's owner
  could change is refused or logged, naming the real risk (``dirchecks``): owned by another
  user, or writable by others without the sticky bit, is refused; group-writable, sticky
  world-writable (``/tmp``) and untrusted parents are logged;
* on any failure the temp file is removed and the destination is exactly as it was; the
  WriteError names the destination and the cause in words, never the content.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kv2render.errors import WriteError
from kv2render.output import dirchecks

__all__ = [
    "any_stale_temp_files",
    "FolderSyncBatch",
    "cleanup_stale_temp_files",
    "fsync_directory",
    "resolve_uid",
    "temp_file_name",
    "write_atomic",
]

logger = logging.getLogger(__name__)

_TEMP_MARK = ".kv2render-"
_NAME_ROOM = 200  # NAME_MAX is 255: leave room for '.', the marker, 16 hex digits and '.tmp'
_OPEN_TEMP = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

_CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or directory",
    errno.ENOTDIR: "a parent is not a directory",
    errno.EISDIR: "is a directory",
    errno.ENAMETOOLONG: "file name too long",
    errno.ELOOP: "too many levels of symbolic links",
    errno.EFBIG: "file too large",
    errno.EIO: "input/output error",
    errno.EXDEV: "cross-device rename",
    errno.EBUSY: "device or resource busy",
}


def _cause(exc: OSError) -> str:
    """The cause of an OS error in words, without the file name or anything else from it."""
    if exc.errno is None:
        return type(exc).__name__
    return _CAUSES.get(exc.errno) or os.strerror(exc.errno).lower()


def temp_file_name(name: str) -> str:
    """A fresh temp name for destination ``name``: ``.<name>.kv2render-<16 hex>.tmp``."""
    return f".{name[:_NAME_ROOM]}{_TEMP_MARK}{secrets.token_hex(8)}.tmp"


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(re.escape(f".{name[:_NAME_ROOM]}{_TEMP_MARK}") + r"[0-9a-f]{16}\.tmp")


def resolve_uid(user: str | int | None, dest: Path) -> int:
    if user is None:
        return -1
    if isinstance(user, int) or (user.isascii() and user.isdigit()):
        return int(user)
    import pwd  # only outputs with a named owner pay for the user database

    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        raise WriteError(f"cannot write {dest}: unknown user {user!r}") from None


def _gid(group: str | int | None, dest: Path) -> int:
    if group is None:
        return -1
    if isinstance(group, int) or (group.isascii() and group.isdigit()):
        return int(group)
    import grp

    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise WriteError(f"cannot write {dest}: unknown group {group!r}") from None


def create_dirs(directory: Path, dest: Path) -> None:
    """Create ``directory`` and its missing parents, each 0700 whatever the umask."""
    missing: list[Path] = []
    probe = directory
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for new in reversed(missing):
        try:
            os.mkdir(new, 0o700)
        except FileExistsError:
            continue  # created concurrently: not ours to chmod
        except OSError as exc:
            raise WriteError(
                f"cannot write {dest}: cannot create directory {new}: {_cause(exc)}"
            ) from None
        os.chmod(new, 0o700)  # mkdir's mode is narrowed by the umask; 0700 is the contract


_warned: set[tuple[str, int, int]] = set()  # findings already logged by this process


def _check_directory(directory: Path, dest: Path, create: bool, file_uid: int) -> None:
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        if not create:
            raise WriteError(
                f"cannot write {dest}: directory {directory} does not exist",
                hint="create it, or set create_dest_dirs: true",
            ) from None
        create_dirs(directory, dest)
        st = os.stat(directory)
    except OSError as exc:
        raise WriteError(f"cannot write {dest}: directory {directory}: {_cause(exc)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise WriteError(f"cannot write {dest}: {directory} is not a directory")
    # KV2-INV-383, KV2-INV-384, KV2-FC-090, KV2-FC-380: who else could change what readers get.
    for problem in dirchecks.problems(directory, dest, file_uid=file_uid, st=st):
        if problem.refuse:
            raise WriteError(problem.message, hint=problem.hint)
        if problem.key not in _warned:  # once per process: a thousand templates, one line
            _warned.add(problem.key)
            logger.warning("%s", problem.message)


def _unchanged(dest: Path, data: bytes, perms: int, uid: int, gid: int) -> bool:
    """True when ``dest`` is a regular file with exactly ``data``, ``perms`` and owner."""
    try:
        st = os.lstat(dest)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or stat.S_IMODE(st.st_mode) != perms:
        return False
    if st.st_size != len(data) or uid not in (-1, st.st_uid) or gid not in (-1, st.st_gid):
        return False
    try:
        fd = os.open(dest, _OPEN_READ)  # O_NOFOLLOW: a symlink swapped in since lstat fails
    except OSError:
        return False
    try:
        with os.fdopen(fd, "rb") as old:
            return old.read(len(data) + 1) == data
    except OSError:
        return False


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _new_file(directory: Path, name: str, data: bytes, perms: int, uid: int, gid: int) -> Path:
    """A complete, fsynced temp file with its final owner and mode; removed on failure."""
    tmp = directory / temp_file_name(name)
    fd = os.open(tmp, _OPEN_TEMP, 0o600)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
            # Mode first, while we still own the file: then handing it to another user
            # needs only CAP_CHOWN, not CAP_FOWNER too. perms never carries set-id bits
            # (config refuses them), so the chown cannot clear anything we set.
            os.fchmod(fd, perms)
            if uid != -1 or gid != -1:
                os.fchown(fd, uid, gid)
        finally:
            os.close(fd)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return tmp


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # leave a trace: start-up cleanup will try again
        logger.warning("could not remove temp file %s: %s", path, _cause(exc))


def _backup(dest: Path, directory: Path) -> None:
    """Keep the current regular file as ``<dest>.bak`` (0600), like consul-template's backup.

    A copy rather than consul-template's hard link: a link would share the old file's mode,
    and chmodding it would change the live file too. A symlink is not backed up (its target
    is not our previous output).
    """
    try:
        fd = os.open(dest, _OPEN_READ)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ELOOP):
            return  # nothing to back up, or a symlink
        raise
    with os.fdopen(fd, "rb") as old:
        if not stat.S_ISREG(os.fstat(old.fileno()).st_mode):
            return
        previous = old.read()
    bak = dest.with_name(dest.name + ".bak")
    tmp = _new_file(directory, bak.name, previous, 0o600, -1, -1)
    try:
        os.replace(tmp, bak)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def fsync_directory(directory: Path) -> None:
    """Make the renames done in ``directory`` durable; a failure is logged, not raised."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as exc:
        # The rename already happened: the file is in place, only its durability is unsure.
        logger.warning("could not fsync directory %s: %s", directory, _cause(exc))


def write_atomic(
    path: Path,
    data: bytes,
    *,
    perms: int = 0o600,
    user: str | int | None = None,
    group: str | int | None = None,
    create_dest_dirs: bool = False,
    backup: bool = False,
    sync_dir: bool = True,
) -> bool:
    """Atomically make ``path`` hold ``data`` with mode ``perms`` and the given owner.

    Returns False, touching nothing, when the file already is exactly that; True after a
    write. Raises WriteError (destination and cause, never content) with the destination
    left as it was. ``sync_dir`` False: the caller calls :func:`fsync_directory` on the
    destination's folder itself, once for a batch of writes (KV2-INV-520).
    """
    dest = Path(path)
    if dest.name in ("", ".", ".."):
        raise WriteError(f"cannot write {dest}: the destination must name a file")
    perms &= 0o7777
    uid, gid = resolve_uid(user, dest), _gid(group, dest)
    directory = dest.parent
    _check_directory(directory, dest, create_dest_dirs, uid)
    try:
        if stat.S_ISDIR(os.lstat(dest).st_mode):
            raise WriteError(f"cannot write {dest}: it is a directory")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise WriteError(f"cannot write {dest}: {_cause(exc)}") from None
    if _unchanged(dest, data, perms, uid, gid):
        return False
    try:
        tmp = _new_file(directory, dest.name, data, perms, uid, gid)
        try:
            if backup:
                _backup(dest, directory)
            os.replace(tmp, dest)  # never follows a symlink at dest: the link itself goes
        except BaseException:
            _unlink_quietly(tmp)
            raise
    except OSError as exc:
        raise WriteError(f"cannot write {dest}: {_cause(exc)}") from None
    if sync_dir:
        fsync_directory(directory)
    return True


def stale_temp_files(directory: Path, name: str, entries: Iterable[str] | None = None) -> list[str]:
    """Names of temp files a crashed run may have left for destination ``name`` (or its
    ``.bak``): only names matching :func:`temp_file_name`. ``entries``: the folder's
    listing when the caller already has it (one listing for many outputs)."""
    if entries is None:
        try:
            entries = os.listdir(directory)
        except OSError:
            return []
    # Most folders hold no temp file: no pattern is compiled for them (--once start-up).
    candidates = [e for e in entries if _TEMP_MARK in e and e.endswith(".tmp")]
    if not candidates:
        return []
    patterns = (_temp_pattern(name), _temp_pattern(name + ".bak"))
    return [entry for entry in candidates if any(p.fullmatch(entry) for p in patterns)]


def any_stale_temp_files(destinations: Iterable[Path]) -> bool:
    """Whether a crashed run left a temp file next to any of ``destinations``; each folder
    is listed once, however many outputs it holds."""
    listings: dict[Path, list[str]] = {}
    for dest in destinations:
        folder = dest.parent
        if folder not in listings:
            try:
                listings[folder] = os.listdir(folder)
            except OSError:
                listings[folder] = []
        if stale_temp_files(folder, dest.name, listings[folder]):
            return True
    return False


def cleanup_stale_temp_files(directory: Path, name: str) -> int:
    """Remove temp files a crashed run left for destination ``name``; return how many.

    Best effort: a file that cannot be removed is logged and skipped. The caller makes sure
    no other kv2render is writing there (the instance lock), or it could remove a live one.
    """
    removed = 0
    for entry in stale_temp_files(directory, name):
        try:
            os.unlink(Path(directory) / entry)
        except FileNotFoundError:
            continue
        except OSError as exc:
            logger.warning("could not remove stale temp file %s: %s", entry, _cause(exc))
            continue
        removed += 1
    return removed


class FolderSyncBatch:
    """:func:`write_atomic` for a batch of writes (a pass's renders): each folder is fsynced
    once, by :meth:`sync` after the batch's last write and before any result is reported
    (KV2-INV-520), instead of once per file. The journal serialises fsyncs, so a hundred
    fsyncs of one folder cost ~20 ms that threads cannot overlap; the content fsync and the
    rename stay per file (KV2-INV-091). :meth:`write` may run in several threads at once."""

    def __init__(self) -> None:
        self._folders: dict[Path, None] = {}  # insertion-ordered; one item set is atomic

    def write(self, path: Path, data: bytes, **options: Any) -> bool:
        did_write = write_atomic(path, data, sync_dir=False, **options)
        if did_write:
            self._folders[Path(path).parent] = None
        return did_write

    def sync(self) -> None:
        for folder in list(self._folders):
            fsync_directory(folder)
