"""Who else could change what readers of a destination get: the directory checks.

sshd's ``StrictModes`` is the model: a directory is trusted when only trusted users can
change its entries. Trusted are kv2render's own (effective) user, root, and the template's
``user`` (the file is theirs anyway: they can rewrite it whatever the directory). For the
destination's directory (KV2-INV-383, KV2-FC-380, KV2-FC-090):

* owned by anyone else: refused. The owner of a directory can always chmod it writable, so
  they could delete or replace the file;
* writable by others without the sticky bit: refused (any local user could delete or replace
  the file), writable by its group without the sticky bit: a warning (its members could);
* writable by others or the group *with* the sticky bit (``/tmp``): a warning naming the risk
  that remains. The sticky bit keeps them from deleting or renaming kv2render's file once it
  is written, but they can create names: the destination's before kv2render writes it (readers
  would take their file for kv2render's; a non-root kv2render cannot rename over it, and a
  directory of that name blocks every write). Temp names are random and opened ``O_EXCL``,
  so squatting them only fails one write.

For each parent (KV2-INV-384): a parent owned by someone else, or writable by others or the
group without the sticky bit, is a warning: they could rename the entry below it away and put a
directory of their own in its place, and readers of the path would read their files. Both the
path as written and its resolved form are walked.

Every check is a ``stat()``; nothing here opens or writes a file, so ``check`` runs it offline.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

__all__ = ["Problem", "problems"]

_SHARED = stat.S_IWGRP | stat.S_IWOTH


class Problem(NamedTuple):
    """One finding: ``refuse`` ones stop the write (WriteError), the others are warnings.
    A NamedTuple: immutable, and a sixth of a frozen dataclass's import cost (KV2-NFR-520)."""

    refuse: bool
    key: tuple[str, int, int]  # (kind, st_dev, st_ino): the same finding is logged once
    message: str
    hint: str | None = None


def _user(uid: int) -> str:
    import pwd  # only a finding pays for the user database

    try:
        return f"user {pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    import grp

    try:
        return f"group {grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"


def _writers(st: os.stat_result) -> str:
    return (
        "every local user" if st.st_mode & stat.S_IWOTH else f"the members of {_group(st.st_gid)}"
    )


def _own(directory: Path, dest: Path, st: os.stat_result, trusted: set[int]) -> Iterator[Problem]:
    mode = st.st_mode
    sticky = bool(mode & stat.S_ISVTX)
    ident = (st.st_dev, st.st_ino)
    if st.st_uid not in trusted:
        yield Problem(
            True,
            ("owner", *ident),
            f"refusing to write {dest}: directory {directory} belongs to {_user(st.st_uid)}, "
            "who could delete or replace the file at any time (a directory's owner can always "
            "make it writable)",
            f"chown the directory to kv2render's user (uid {os.geteuid()}) or root, set the "
            f"template's user to {st.st_uid} if the file is theirs, or choose another destination",
        )
    if mode & stat.S_IWOTH and not sticky:
        yield Problem(
            True,
            ("world", *ident),
            f"refusing to write {dest}: directory {directory} is writable by others without "
            "the sticky bit, so any local user could delete or replace the file",
            f"chmod o-w {directory} (or chmod +t), or choose another destination",
        )
    elif mode & _SHARED and sticky:
        yield Problem(
            False,
            ("sticky", *ident),
            f"directory {directory} is writable by {_writers(st)} (sticky bit set): they cannot "
            f"delete or replace a file kv2render has written there, but they can create its "
            f"name first, e.g. {dest.name}: readers would read their file, and kv2render's "
            "write could be refused",
        )
    elif mode & stat.S_IWGRP:
        yield Problem(
            False,
            ("group", *ident),
            f"directory {directory} is group-writable: {_writers(st)} could delete or replace "
            f"the files kv2render writes there, e.g. {dest.name}",
        )


def _parents(directory: Path) -> Iterator[tuple[str, str]]:
    """(parent, entry below it) for the path as written and as resolved, each parent once.

    Plain strings and os.path: this runs before every write (Path objects cost 10x more).
    """
    seen: set[str] = set()
    literal = os.path.abspath(directory)
    resolved = os.path.realpath(literal)
    for path in (literal,) if resolved == literal else (literal, resolved):
        child = path
        parent = os.path.dirname(child)
        while parent != child:
            if parent not in seen:
                seen.add(parent)
                yield parent, os.path.basename(child)
            child, parent = parent, os.path.dirname(parent)


def _parent(parent: str, child: str, dest: Path, trusted: set[int]) -> Iterator[Problem]:
    try:
        st = os.stat(parent)
    except OSError:
        return
    ident = (st.st_dev, st.st_ino)
    if st.st_uid not in trusted:
        who, kind = _user(st.st_uid), "parent-owner"
    elif st.st_mode & _SHARED and not st.st_mode & stat.S_ISVTX:
        who, kind = _writers(st), "parent-writable"
    else:
        return
    yield Problem(
        False,
        (kind, *ident),
        f"directory {parent}, a parent of {dest}, can be changed by {who}: they could rename "
        f"{child} away and put a directory of their own in its place, and readers of "
        f"{dest} would read their file",
    )


def problems(
    directory: Path, dest: Path, *, file_uid: int = -1, st: os.stat_result | None = None
) -> list[Problem]:
    """The findings for writing ``dest`` into the existing ``directory``, refusals first.

    ``file_uid`` is the template's ``user`` (-1: none); ``st`` saves a stat the caller made.
    """
    trusted = {0, os.geteuid()}
    if file_uid != -1:
        trusted.add(file_uid)
    found = list(_own(directory, dest, os.stat(directory) if st is None else st, trusted))
    for parent, child in _parents(directory):
        found.extend(_parent(parent, child, dest, trusted))
    return found  # _own's come first, and only they refuse
