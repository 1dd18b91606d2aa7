"""The daemon's report: a JSON status file, a lock file and a pid file.

The status file is rewritten atomically after each pass through
:func:`writer.write_atomic` (the only code that writes files kv2render serves).
It holds metadata only (KV2-INV-001): per template the destination, the secret
paths and versions used, the last render and write times and the last error's
text, which by construction names places, never values. ``kv2render status``
prints it (``app.print_status``).

When it cannot be written the daemon logs an error on each pass and keeps
rendering: the files it serves matter more than its report (issue 5).

The instance lock is held with ``flock`` for the life of the process, so that a
second instance pointed at the same place warns about the first (issue 10,
item 7). Writes stay atomic either way; the warning is about two writers racing.
It is a lock file next to the status file, or, with no status file, the first
destination's directory itself (KV2-INV-382): a destination directory holds only
the outputs, since apps read some (a secrets mount, a conf.d) whole.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kv2render._version import __version__
from kv2render.errors import Kv2RenderError
from kv2render.refs import SecretLocation

log = logging.getLogger(__name__)


def utc(seconds: float | None) -> str | None:
    """An epoch time as ``2024-05-01T12:00:00.123Z`` (None stays None)."""
    if seconds is None:
        return None
    millis = int(seconds % 1 * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


@dataclass(frozen=True)
class TemplateStatus:
    """One template's line in the status file (metadata only)."""

    where: str
    destination: Path
    source: Path | None
    versions: Mapping[SecretLocation, int | None] = field(default_factory=dict)
    last_render: float | None = None  # epoch: last successful render (written or unchanged)
    last_write: float | None = None  # epoch: last time the bytes changed on disk
    last_error: str | None = None  # str(Kv2RenderError): place + message, no values

    def as_json(self) -> dict[str, Any]:
        return {
            "template": self.where,
            "destination": str(self.destination),
            "source": None if self.source is None else str(self.source),
            "secrets": [
                {
                    # KV2-INV-497: a path computed from a secret value shows redacted.
                    "mount": loc.shown_mount,
                    "path": loc.shown_path,
                    "pinned_version": loc.version,
                    "version": version,
                }
                for loc, version in sorted(self.versions.items())
            ],
            "last_render": utc(self.last_render),
            "last_write": utc(self.last_write),
            "last_error": self.last_error,
            "ok": self.last_error is None and self.last_render is not None,
        }


def document(
    templates: Sequence[TemplateStatus],
    *,
    started: float,
    now: float,
    ready: bool,
    state: str,
    token: Mapping[str, Any] | None = None,
    pid: int | None = None,
    last_successful_poll: float | None = None,
) -> dict[str, Any]:
    """The status document; ``state`` is a short word such as running/retrying/auth-failed.

    ``last_successful_poll``: when a poll last read every secret it needed without error
    (``kv2render status --max-age``, KV2-INV-423)."""
    return {
        "kv2render": __version__,
        "pid": os.getpid() if pid is None else pid,
        "started": utc(started),
        "updated": utc(now),
        "state": state,
        "ready": ready,
        "last_successful_poll": utc(last_successful_poll),
        "token": dict(token) if token is not None else None,
        "templates": [t.as_json() for t in templates],
    }


def encode(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=False) + "\n").encode("utf-8")


Writer = Callable[..., bool]


class StatusFile:
    """Rewrites the status file; never raises (an error is logged on each failed pass)."""

    def __init__(self, path: Path | None, *, write: Writer | None = None) -> None:
        self.path = path
        self._write = write

    def write(self, doc: Mapping[str, Any]) -> bool:
        if self.path is None:
            return False
        write = self._write
        if write is None:
            from kv2render.output.writer import write_atomic

            write = write_atomic
        try:
            # Its folder is created 0700 like an output's (create_dest_dirs): a shared volume
            # root such as a Kubernetes emptyDir (0777) is no place for it (KV2-AC-415).
            write(self.path, encode(doc), perms=0o600, create_dest_dirs=True)
        except Kv2RenderError as exc:
            log.error("status file not written (rendering continues): %s", exc)
            return False
        except OSError as exc:
            log.error(
                "status file %s not written (rendering continues): %s",
                self.path,
                exc.strerror or type(exc).__name__,
            )
            return False
        return True


def instance_lock_for(status_file: Path | None, destinations: Iterable[Path]) -> InstanceLock:
    """The instance lock of a config (issue 10 item 7; KV2-INV-167, KV2-INV-382).

    ``<status_file>.lock`` when there is a status file; else the first destination's
    directory, locked itself, so that no file appears among the outputs. Every instance
    serving that directory finds the same lock whatever its environment (a systemd unit and
    a ``--once`` run from a shell alike), which the temp-file clean-up relies on (KV2-AC-295).
    """
    if status_file is not None:
        return InstanceLock(status_file.with_name(status_file.name + ".lock"))
    for dest in destinations:
        return InstanceLock(dest.parent, directory=True)
    return InstanceLock(None)


class InstanceLock:
    """An advisory ``flock`` held for the process's life; warns when another instance holds it.

    On a lock file (``directory=False``) the holder writes its pid into it; on a directory
    nothing is written and the holder's pid comes from ``/proc/locks`` when it is listed there.
    """

    def __init__(self, path: Path | None, *, directory: bool = False) -> None:
        self.path = path
        self.directory = directory
        self._fd: int | None = None
        self.held_by_other: int | None = None  # the holder's pid, when known (else -1)

    def _open(self, path: Path) -> int:
        if self.directory:
            return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if not path.parent.exists():
            # The status file's folder, made 0700 as the status file write would make it:
            # the lock is taken before the first pass writes anything (KV2-AC-415).
            from kv2render.output.writer import create_dirs

            create_dirs(path.parent, path)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)

    def acquire(self) -> bool:
        """True when this process holds the lock; a held lock is a warning, not a failure."""
        if self.path is None:
            return False
        import fcntl

        what = "lock directory" if self.directory else "lock file"
        try:
            fd = self._open(self.path)
        except (OSError, Kv2RenderError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else str(exc)
            log.warning(
                "%s %s cannot be opened (%s); a second instance would not be noticed",
                what,
                self.path,
                reason or type(exc).__name__,
            )
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _flock_holder(fd) if self.directory else _read_pid(fd)
            os.close(fd)
            self.held_by_other = other or -1
            log.warning(
                "another kv2render%s holds %s: two instances rendering the same templates race "
                "each other (each write stays atomic); stop one of them",
                f" (pid {other})" if other else "",
                f"the lock on {self.path}" if self.directory else self.path,
            )
            return False
        except OSError as exc:  # a file system without flock (some network ones)
            os.close(fd)
            log.warning(
                "%s %s cannot be locked (%s); a second instance would not be noticed",
                what,
                self.path,
                exc.strerror or type(exc).__name__,
            )
            return False
        if not self.directory:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays for the next start
            self._fd = None


def _flock_holder(fd: int) -> int | None:
    """The pid holding a ``flock`` on ``fd``'s inode, from ``/proc/locks`` (Linux); else None.

    A line reads ``1: FLOCK  ADVISORY  WRITE 4242 00:2f:1234 0 EOF`` (device in hex, inode in
    decimal); a waiter's line has ``->`` in second place.
    """
    st = os.fstat(fd)
    exact = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return None
    by_inode: set[str] = set()
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or not fields[4].isdigit():
            continue
        if fields[5] == exact:
            return int(fields[4]) or None
        if fields[5].rsplit(":", 1)[-1] == str(st.st_ino):
            by_inode.add(fields[4])
    # Some file systems report another device number to stat() than to /proc/locks; one
    # holder of that inode number is taken as ours, two are too many to name one.
    if len(by_inode) != 1:
        return None
    return int(by_inode.pop()) or None


def _read_pid(fd: int) -> int | None:
    try:
        raw = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(raw) if raw.isdigit() else None


class PidFile:
    """``pid_file``: this process's id, as Vault Agent writes it (no newline, mode 0600),
    written at start through the writer and removed at exit while it is still ours
    (another instance may have taken it over). KV2-AC-270."""

    def __init__(self, path: Path | None, *, write: Writer | None = None) -> None:
        self.path = path
        self._write = write

    def write(self) -> None:
        """Raise WriteError when it cannot be written: like Vault Agent, refuse to start
        rather than run unsupervisable."""
        if self.path is None:
            return
        write = self._write
        if write is None:
            from kv2render.output.writer import write_atomic

            write = write_atomic
        write(self.path, str(os.getpid()).encode("ascii"), perms=0o600)
        log.debug("pid file %s written", self.path)

    def remove(self) -> None:
        if self.path is None:
            return
        try:
            if self.path.read_text(encoding="ascii").strip() == str(os.getpid()):
                self.path.unlink()
        except (OSError, UnicodeDecodeError):
            pass


# -- the probe: ``kv2render status``'s exit code (issue 17, KV2-INV-422) ----------------------

# Distinct from the error exit codes 1..7 (errors.py), 2 for a usage error, and 130: a probe
# that fails says *which* way the files cannot be trusted (docs/operations.md has the table).
PROBE_OK = 0
PROBE_DEGRADED = 10  # running, but a template (or the login) is failing: files may be old
PROBE_NOT_READY = 11  # running, but not every template has rendered yet
PROBE_STALE = 12  # --max-age: no successful poll for that long
PROBE_STOPPED = 13  # stopped, exited, or crashed (stale pid, no lock)
PROBE_NO_STATUS = 14  # no status file: the daemon never ran, or runs elsewhere

# Words a running daemon's status file never says (loop.Daemon.run writes them last).
_STOPPED_STATES = ("stopped", "exited")


@dataclass(frozen=True)
class Verdict:
    code: int
    word: str
    reason: str


def parse_utc(text: Any) -> float | None:
    """The epoch of a :func:`utc` string, None when absent or not one."""
    if not isinstance(text, str):
        return None
    import calendar

    head, _, frac = text.rstrip("Z").partition(".")
    try:
        seconds = calendar.timegm(time.strptime(head, "%Y-%m-%dT%H:%M:%S"))
    except ValueError:
        return None
    return seconds + (int(frac) / 1000 if frac.isdigit() else 0.0)


def assess(doc: Mapping[str, Any], *, now: float, max_age: float | None = None) -> Verdict:
    """Whether the files a daemon serves can be trusted, from its status document alone.

    Shared by ``kv2render status`` (which also checks the process is alive) and
    ``/readyz`` (KV2-INV-424), so both always agree. Names templates and error classes,
    never an error's text or a value.
    """
    state = str(doc.get("state", ""))
    if state in _STOPPED_STATES:
        return Verdict(PROBE_STOPPED, "stopped", f"the daemon's last state is {state!r}")
    templates = [t for t in doc.get("templates", ()) if isinstance(t, Mapping)]
    never = [str(t.get("template")) for t in templates if t.get("last_render") is None]
    failing = [str(t.get("template")) for t in templates if t.get("last_error") is not None]
    # A failure outranks "not ready": the operator needs to know something is refused.
    if failing:
        return Verdict(PROBE_DEGRADED, "degraded", f"failing: {', '.join(failing)}")
    if state not in ("running", "starting"):
        return Verdict(PROBE_DEGRADED, "degraded", f"the daemon's state is {state!r}")
    if not doc.get("ready") or never or state != "running":
        pending = f": {', '.join(never)} not rendered yet" if never else ""
        return Verdict(PROBE_NOT_READY, "not-ready", f"not every template has rendered{pending}")
    # Only pinned versions: nothing is polled, so nothing can go stale.
    follows = any(
        isinstance(sec, Mapping) and sec.get("pinned_version") is None
        for t in templates
        for sec in t.get("secrets", ())
    )
    if max_age is not None and follows:
        last = parse_utc(doc.get("last_successful_poll"))
        if last is None or now - last > max_age:
            since = "never" if last is None else f"{now - last:.0f}s ago"
            return Verdict(
                PROBE_STALE, "stale", f"no successful poll within {max_age:g}s (last: {since})"
            )
    return Verdict(PROBE_OK, "running", f"{len(templates)} template(s) fresh")


def process_alive(doc: Mapping[str, Any], lock: Path | None) -> str | None:
    """Why the daemon the document describes is not running, or None when it is.

    Alive means: the pid exists, is a kv2render process (``/proc/PID/cmdline``, where
    there is one), and the instance lock is held. A SIGKILLed daemon leaves a status file
    saying "running" with a pid that is gone or reused (KV2-INV-422).
    """
    pid = doc.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return "the status file names no pid"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"pid {pid} is not running (the daemon crashed or was killed)"
    except PermissionError:
        pass  # exists, owned by another user
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return f"pid {pid} is not running (the daemon crashed or was killed)"
    except OSError:
        cmdline = None  # no /proc here, or not readable: the lock still tells
    if cmdline is not None and b"kv2render" not in cmdline:
        return f"pid {pid} is another program now (the daemon crashed or was killed)"
    if lock is not None and not lock_held(lock):
        return f"no process holds the instance lock {lock} (the daemon is gone)"
    return None


def lock_held(path: Path) -> bool:
    """Whether some process holds ``path``'s flock. Tries a shared lock for an instant
    and drops it; never creates the file."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock if it was taken
    return False
