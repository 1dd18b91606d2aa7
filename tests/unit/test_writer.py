"""write_atomic: exact bytes and mode, no-op when unchanged, symlinks, unsafe dirs, failures."""

from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import kv2render
from kv2render.errors import WriteError
from kv2render.output.writer import cleanup_stale_temp_files, temp_file_name, write_atomic

SECRET = b"S3NTINEL-secret-value\n"
REPO = Path(kv2render.__file__).resolve().parents[1]


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "out"
    directory.mkdir(mode=0o700)
    directory.chmod(0o700)
    return directory


@pytest.fixture
def umask_000() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if ".kv2render-" in p.name)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- the normal path ------------------------------------------------------------------------


def test_new_file_has_exact_bytes_and_mode_0600(out_dir: Path) -> None:
    """KV2-AC-090, KV2-INV-092: a new output holds exactly the bytes, mode 0600, no temp."""
    dest = out_dir / "db-password"
    assert write_atomic(dest, SECRET) is True
    assert dest.read_bytes() == SECRET
    assert mode(dest) == 0o600
    assert leftovers(out_dir) == []


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077, 0o277])
def test_umask_does_not_change_the_mode(out_dir: Path, umask: int) -> None:
    """KV2-AC-091, KV2-INV-097: the mode is exactly `perms` (dirs 0700), whatever the umask."""
    old = os.umask(umask)
    try:
        write_atomic(out_dir / "a", b"x")
        write_atomic(out_dir / "b", b"x", perms=0o640)
        write_atomic(out_dir / "sub" / "dir" / "c", b"x", create_dest_dirs=True)
    finally:
        os.umask(old)
    assert mode(out_dir / "a") == 0o600
    assert mode(out_dir / "b") == 0o640
    assert mode(out_dir / "sub") == 0o700
    assert mode(out_dir / "sub" / "dir") == 0o700
    assert mode(out_dir / "sub" / "dir" / "c") == 0o600


def test_temp_file_is_never_wider_than_0600(
    out_dir: Path, umask_000: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-INV-091: before its final chmod the temp file is 0600, even with umask 000."""
    seen: list[tuple[str, int]] = []
    real_fchmod = os.fchmod

    def spying_fchmod(fd: int, wanted: int) -> None:
        st = os.fstat(fd)
        seen.append((oct(stat.S_IMODE(st.st_mode)), st.st_nlink))
        real_fchmod(fd, wanted)

    monkeypatch.setattr(os, "fchmod", spying_fchmod)
    write_atomic(out_dir / "wide", b"x", perms=0o644)
    assert seen == [("0o600", 1)]
    assert mode(out_dir / "wide") == 0o644


def test_os_calls_happen_in_the_safe_order(out_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """KV2-AC-107, KV2-INV-091: O_EXCL|O_NOFOLLOW 0600 open, write, fsync, chown, chmod, rename,
    directory fsync (recorded at the os boundary)."""
    calls: list[str] = []

    def record(name: str) -> None:
        real = getattr(os, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if name == "open":
                flags, open_mode = args[1], args[2] if len(args) > 2 else None
                if flags & os.O_CREAT:
                    assert flags & os.O_EXCL and flags & os.O_NOFOLLOW and open_mode == 0o600
                    calls.append("open-temp")
                elif flags & os.O_DIRECTORY:
                    calls.append("open-dir")
            else:
                calls.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(os, name, wrapper)

    for name in ("open", "write", "fsync", "fchown", "fchmod", "replace"):
        record(name)
    uid, gid = os.getuid(), os.getgid()
    write_atomic(out_dir / "f", SECRET, user=uid, group=gid)
    monkeypatch.undo()
    assert calls == [
        "open-temp",
        "write",
        "fsync",
        "fchmod",
        "fchown",
        "replace",
        "open-dir",
        "fsync",
    ]


def test_unchanged_bytes_touch_nothing(out_dir: Path) -> None:
    """KV2-AC-092, KV2-INV-093: unchanged bytes, mode, owner: no write, same inode and mtime."""
    dest = out_dir / "f"
    write_atomic(dest, SECRET)
    before = os.stat(dest)
    assert write_atomic(dest, SECRET) is False
    after = os.stat(dest)
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == (
        before.st_ino,
        before.st_mtime_ns,
        before.st_ctime_ns,
    )
    assert leftovers(out_dir) == []


def test_changed_bytes_replace_the_file(out_dir: Path) -> None:
    """KV2-AC-093: changed bytes go to a new inode; an open fd still reads the old bytes."""
    dest = out_dir / "f"
    write_atomic(dest, b"old")
    old_inode = os.stat(dest).st_ino
    with dest.open("rb") as reader:
        assert write_atomic(dest, b"new") is True
        assert reader.read() == b"old"
    assert dest.read_bytes() == b"new"
    assert os.stat(dest).st_ino != old_inode
    # a same-length change and a prefix change are both changes
    assert write_atomic(dest, b"NEW") is True
    assert write_atomic(dest, b"NEW+") is True
    assert write_atomic(dest, b"NEW") is True
    assert dest.read_bytes() == b"NEW"


def test_same_bytes_with_another_mode_is_a_change(out_dir: Path) -> None:
    """KV2-INV-093: a mode differing from `perms` is a change, fixed by an atomic rewrite."""
    dest = out_dir / "f"
    write_atomic(dest, SECRET)
    dest.chmod(0o644)
    assert write_atomic(dest, SECRET) is True
    assert mode(dest) == 0o600
    assert write_atomic(dest, SECRET, perms=0o640) is True
    assert mode(dest) == 0o640
    assert write_atomic(dest, SECRET, perms=0o640) is False


def test_empty_content_is_written(out_dir: Path) -> None:
    """Zero bytes is valid content (the runner decides whether empty is allowed)."""
    dest = out_dir / "empty"
    assert write_atomic(dest, b"") is True
    assert dest.read_bytes() == b""
    assert write_atomic(dest, b"") is False


def test_long_file_name(out_dir: Path) -> None:
    """A 255-byte destination name still gets a temp name within NAME_MAX."""
    dest = out_dir / ("n" * 255)
    assert write_atomic(dest, b"x") is True
    assert dest.read_bytes() == b"x"
    assert len(temp_file_name("n" * 255)) <= 255


# -- symlinks -------------------------------------------------------------------------------


def test_symlink_at_destination_is_replaced_not_followed(tmp_path: Path, out_dir: Path) -> None:
    """KV2-AC-095, KV2-INV-095: the link itself is replaced by a file; its target untouched."""
    target = tmp_path / "target"
    target.write_bytes(b"target content")
    target.chmod(0o644)
    dest = out_dir / "link"
    dest.symlink_to(target)
    assert write_atomic(dest, SECRET) is True
    assert not dest.is_symlink()
    assert dest.read_bytes() == SECRET
    assert mode(dest) == 0o600
    assert target.read_bytes() == b"target content"
    assert mode(target) == 0o644


def test_symlink_to_identical_bytes_counts_as_changed(tmp_path: Path, out_dir: Path) -> None:
    """KV2-INV-095: the unchanged check never reads through a link."""
    target = tmp_path / "target"
    target.write_bytes(SECRET)
    target.chmod(0o600)
    dest = out_dir / "link"
    dest.symlink_to(target)
    assert write_atomic(dest, SECRET) is True
    assert not dest.is_symlink()


def test_dangling_symlink_target_is_not_created(tmp_path: Path, out_dir: Path) -> None:
    """KV2-INV-095: writing never creates the file a link points to."""
    target = tmp_path / "elsewhere" / "created-by-link"
    (tmp_path / "elsewhere").mkdir()
    dest = out_dir / "link"
    dest.symlink_to(target)
    write_atomic(dest, SECRET)
    assert not target.exists()
    assert dest.read_bytes() == SECRET


def test_backup_does_not_follow_a_symlink(tmp_path: Path, out_dir: Path) -> None:
    """A symlink is not our previous output: no .bak copy of its target."""
    target = tmp_path / "target"
    target.write_bytes(b"not ours")
    dest = out_dir / "link"
    dest.symlink_to(target)
    write_atomic(dest, SECRET, backup=True)
    assert not (out_dir / "link.bak").exists()


# -- directories ----------------------------------------------------------------------------


def test_world_writable_directory_without_sticky_bit_is_refused(out_dir: Path) -> None:
    """KV2-AC-096, KV2-FC-090: an o+w directory without +t is refused, saying why."""
    out_dir.chmod(0o777)
    with pytest.raises(WriteError) as info:
        write_atomic(out_dir / "f", SECRET)
    message = str(info.value)
    assert "writable by others without the sticky bit" in message
    assert "chmod o-w" in message
    assert list(out_dir.iterdir()) == []


def test_world_writable_directory_with_sticky_bit_is_accepted(out_dir: Path) -> None:
    """KV2-AC-096: /tmp-style directories (o+w with +t) are fine."""
    out_dir.chmod(0o1777)
    assert write_atomic(out_dir / "f", SECRET) is True


def test_group_writable_directory_is_logged_without_content(
    out_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-INV-001: a g+w directory is written to, with a warning carrying metadata only."""
    out_dir.chmod(0o770)
    with caplog.at_level(logging.WARNING, logger="kv2render.output.writer"):
        assert write_atomic(out_dir / "f", SECRET) is True
    assert "group-writable" in caplog.text
    assert "S3NTINEL" not in caplog.text


def test_missing_directory_names_the_fix(out_dir: Path) -> None:
    """KV2-AC-097, KV2-FC-091: a missing parent: create it or set create_dest_dirs."""
    dest = out_dir / "missing" / "f"
    with pytest.raises(WriteError) as info:
        write_atomic(dest, SECRET)
    assert "does not exist" in str(info.value)
    assert "create_dest_dirs" in str(info.value)
    assert str(dest) in str(info.value)
    assert not (out_dir / "missing").exists()


def test_create_dest_dirs_makes_0700_directories(out_dir: Path, umask_000: None) -> None:
    """KV2-AC-097, KV2-INV-097: create_dest_dirs creates each missing directory 0700."""
    dest = out_dir / "a" / "b" / "c" / "f"
    assert write_atomic(dest, SECRET, create_dest_dirs=True) is True
    for directory in (out_dir / "a", out_dir / "a" / "b", out_dir / "a" / "b" / "c"):
        assert mode(directory) == 0o700
    assert mode(out_dir) == 0o700  # an existing directory is left alone
    assert dest.read_bytes() == SECRET


# -- failures leave the last good file ------------------------------------------------------


def test_destination_that_is_a_directory(out_dir: Path) -> None:
    """KV2-FC-091, KV2-AC-094: a directory at the destination is an error; it stays as is."""
    dest = out_dir / "d"
    dest.mkdir()
    (dest / "inside").write_bytes(b"keep")
    with pytest.raises(WriteError, match="is a directory"):
        write_atomic(dest, SECRET)
    assert (dest / "inside").read_bytes() == b"keep"
    assert leftovers(out_dir) == []


def test_parent_that_is_a_regular_file(out_dir: Path) -> None:
    """KV2-FC-091: a parent that is a file fails cleanly, for root too."""
    blocker = out_dir / "file"
    blocker.write_bytes(b"keep")
    for create in (False, True):
        with pytest.raises(WriteError, match="not a directory"):
            write_atomic(blocker / "f", SECRET, create_dest_dirs=create)
        with pytest.raises(WriteError):
            write_atomic(blocker / "sub" / "f", SECRET, create_dest_dirs=create)
    assert blocker.read_bytes() == b"keep"


@pytest.mark.parametrize(
    ("function", "code", "words"),
    [
        ("fsync", errno.ENOSPC, "no space left on device"),
        ("fchmod", errno.EPERM, "operation not permitted"),
        ("replace", errno.EROFS, "read-only file system"),
        ("replace", errno.EACCES, "permission denied"),
        ("write", errno.EDQUOT, "disk quota exceeded"),
    ],
)
def test_failure_keeps_the_old_file_and_no_temp(
    out_dir: Path, monkeypatch: pytest.MonkeyPatch, function: str, code: int, words: str
) -> None:
    """KV2-AC-094, KV2-FC-091, KV2-INV-094: a failure keeps the old file exactly, no temp.

    The OS calls are made to fail the way a full, read-only or foreign file system fails.
    """
    dest = out_dir / "f"
    write_atomic(dest, b"last good")
    before = os.stat(dest)

    def failing(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), "/some/path")

    monkeypatch.setattr(os, function, failing)
    with pytest.raises(WriteError) as info:
        write_atomic(dest, SECRET)
    monkeypatch.undo()
    message = str(info.value)
    assert words in message
    assert str(dest) in message
    assert "S3NTINEL" not in message
    assert dest.read_bytes() == b"last good"
    assert os.stat(dest).st_ino == before.st_ino
    assert os.stat(dest).st_mtime_ns == before.st_mtime_ns
    assert leftovers(out_dir) == []


def run_child(code: str, *, as_nobody: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter (resource limits and uid changes stay there)."""
    # Everything is imported before a privilege drop: the interpreter's own files may not be
    # readable by 'nobody' (e.g. a pyenv under /root).
    prologue = (
        "import os, sys, resource, signal\n"
        "from pathlib import Path\n"
        "from kv2render.errors import WriteError\n"
        "from kv2render.output.writer import write_atomic\n"
    )
    if as_nobody:
        prologue += "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", prologue + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_real_write_failure_file_too_large(out_dir: Path) -> None:
    """KV2-INV-094, KV2-AC-094: a write really failing mid-way (RLIMIT_FSIZE) changes nothing."""
    dest = out_dir / "f"
    write_atomic(dest, b"last good")
    inode = os.stat(dest).st_ino
    child = run_child(
        f"""
        import resource, signal
        from pathlib import Path
        from kv2render.errors import WriteError
        from kv2render.output.writer import write_atomic
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        try:
            write_atomic(Path({str(dest)!r}), b"S3NTINEL" * 10000)
        except WriteError as exc:
            print(exc)
        """
    )
    assert child.returncode == 0, child.stderr
    assert "file too large" in child.stdout
    assert "S3NTINEL" not in child.stdout + child.stderr
    assert dest.read_bytes() == b"last good"
    assert os.stat(dest).st_ino == inode
    assert leftovers(out_dir) == []


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A 0755 root-owned directory reachable by an unprivileged child."""
    base = Path(tempfile.mkdtemp(prefix="kv2render-writer-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


@pytest.mark.skipif(os.geteuid() != 0, reason="drops privileges to nobody; needs root")
def test_real_permission_denied(shared_dir: Path) -> None:
    """KV2-AC-098, KV2-FC-091: a directory the process cannot write: 'permission denied'."""
    dest = shared_dir / "f"
    write_atomic(dest, b"last good")
    dest.chmod(0o644)
    child = run_child(
        f"""
        from pathlib import Path
        from kv2render.errors import WriteError
        from kv2render.output.writer import write_atomic
        try:
            write_atomic(Path({str(dest)!r}), b"S3NTINEL", perms=0o644)
        except WriteError as exc:
            print(exc)
        """,
        as_nobody=True,
    )
    assert child.returncode == 0, child.stderr
    assert "permission denied" in child.stdout
    assert dest.read_bytes() == b"last good"
    assert leftovers(shared_dir) == []


# -- backup ---------------------------------------------------------------------------------


def test_backup_keeps_the_previous_file_0600(out_dir: Path) -> None:
    """KV2-AC-105: backup keeps exactly one previous version as <dest>.bak, mode 0600."""
    dest = out_dir / "f"
    bak = out_dir / "f.bak"
    write_atomic(dest, b"one", perms=0o644, backup=True)
    assert not bak.exists()  # nothing to back up yet
    write_atomic(dest, b"two", perms=0o644, backup=True)
    assert bak.read_bytes() == b"one"
    assert mode(bak) == 0o600
    assert mode(dest) == 0o644
    bak_inode = os.stat(bak).st_ino
    assert write_atomic(dest, b"two", perms=0o644, backup=True) is False
    assert os.stat(bak).st_ino == bak_inode  # unchanged: no new backup
    write_atomic(dest, b"three", perms=0o644, backup=True)
    assert bak.read_bytes() == b"two"
    assert dest.read_bytes() == b"three"
    assert leftovers(out_dir) == []


def test_no_backup_without_the_option(out_dir: Path) -> None:
    """Backups hold secrets too: none unless asked for."""
    dest = out_dir / "f"
    write_atomic(dest, b"one")
    write_atomic(dest, b"two")
    assert sorted(p.name for p in out_dir.iterdir()) == ["f"]


# -- ownership ------------------------------------------------------------------------------


def test_chown_to_current_user_and_group_by_name_and_id(out_dir: Path) -> None:
    """KV2-AC-091: user/group by name or numeric id set the owner."""
    uid, gid = os.getuid(), os.getgid()
    user, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
    dest = out_dir / "f"
    assert write_atomic(dest, SECRET, user=user, group=group) is True
    st = os.stat(dest)
    assert (st.st_uid, st.st_gid) == (uid, gid)
    assert write_atomic(dest, SECRET, user=uid, group=gid) is False
    assert write_atomic(dest, SECRET, user=str(uid), group=str(gid)) is False


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_chown_to_another_user(out_dir: Path) -> None:
    """KV2-AC-091, KV2-INV-093: an owner differing from user/group is a change, fixed."""
    dest = out_dir / "f"
    write_atomic(dest, SECRET)
    assert write_atomic(dest, SECRET, user="nobody", group=65534) is True
    st = os.stat(dest)
    assert (st.st_uid, st.st_gid, mode(dest)) == (65534, 65534, 0o600)
    assert write_atomic(dest, SECRET, user=65534, group=65534) is False
    assert write_atomic(dest, SECRET, user=0) is True
    assert os.stat(dest).st_uid == 0


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"user": "no-such-user-kv2render"}, "unknown user 'no-such-user-kv2render'"),
        ({"group": "no-such-group-kv2render"}, "unknown group 'no-such-group-kv2render'"),
    ],
)
def test_unknown_user_or_group(out_dir: Path, kwargs: dict[str, str], words: str) -> None:
    """An unknown user or group is a write error naming it; nothing is created."""
    dest = out_dir / "f"
    with pytest.raises(WriteError, match=words):
        write_atomic(dest, SECRET, **kwargs)  # type: ignore[arg-type]
    assert list(out_dir.iterdir()) == []


# -- stale temp files -----------------------------------------------------------------------


def test_cleanup_removes_only_our_leftovers_for_that_destination(out_dir: Path) -> None:
    """Start-up removes the temp files a crash left for a destination, and nothing else."""
    ours = [out_dir / temp_file_name("db"), out_dir / temp_file_name("db.bak")]
    theirs = [
        out_dir / "db",
        out_dir / temp_file_name("other"),
        out_dir / ".db.kv2render-XYZ.tmp",
        out_dir / ".db.kv2render-0123456789abcdef.tmp.keep",
        out_dir / "db.kv2render-0123456789abcdef.tmp",
    ]
    for path in ours + theirs:
        path.write_bytes(SECRET)
    assert cleanup_stale_temp_files(out_dir, "db") == 2
    assert not any(p.exists() for p in ours)
    assert all(p.exists() for p in theirs)
    assert cleanup_stale_temp_files(out_dir, "db") == 0
    assert cleanup_stale_temp_files(out_dir / "missing", "db") == 0


def test_temp_names_follow_the_pattern() -> None:
    """Temp names are hidden, name the destination, and are unique."""
    names = {temp_file_name("db-password") for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert name.startswith(".db-password.kv2render-") and name.endswith(".tmp")


def test_destination_must_name_a_file(out_dir: Path) -> None:
    """A destination ending in '/' or '..' names no file."""
    with pytest.raises(WriteError, match="must name a file"):
        write_atomic(Path("/"), SECRET)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_handing_a_file_to_another_user_needs_only_cap_chown() -> None:
    """KV2-AC-091 KV2-AC-108 KV2-INV-098:
    a non-root writer holding only CAP_CHOWN can give a 0600 file to another
    user, because the mode is set while the file is still its own (then chown)."""
    base = Path(tempfile.mkdtemp(prefix="kv2render-capchown-"))  # pytest's tmp is root-only
    base.chmod(0o755)
    out = base / "out"
    out.mkdir()
    os.chown(out, 65534, 65534)  # nobody's folder, as /run/kv2render is kv2render's
    script = (
        "import sys; from pathlib import Path; from kv2render.output.writer import write_atomic; "
        f"write_atomic(Path({str(out / 'pw')!r}), b'x', perms=0o600, user=1, group=1)"
    )
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [
            "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
            "--inh-caps=+chown", "--ambient-caps=+chown", "--bounding-set=-all,+chown",
            sys.executable, "-c", script,
        ],
        env={"PYTHONPATH": str(repo), "PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    try:
        assert proc.returncode == 0, proc.stderr[-2000:]
        st = (out / "pw").stat()
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1, 1, 0o600)
    finally:
        shutil.rmtree(base)
