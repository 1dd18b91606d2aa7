"""Stand-ins for the connector (Elevarq Signals) and the plumbing around kv2render.

The connector is Go; what it does with kv2render's files is small enough to restate exactly
(Signals ``internal/collector/secrets.go``, read for issue 7):

* ``password_file``: ``os.ReadFile`` then ``strings.TrimRight(value, "\\n\\r")``, trailing CR/LF
  only, re-read before every new connection (pgx ``BeforeConnect``);
* ``pgpass_file``: its own parser, not libpq's. Each line is ``strings.TrimSpace``d, ``#``
  lines are skipped, ``\\`` escapes the next character, ``:`` splits fields; a field matches
  when it is ``*`` or equal to the target's host, port, dbname or user.

libpq's own reader (``PGPASSFILE``) is exercised too: the same file serves psql and pg_dump.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.cli_helpers import REPO, DaemonProcess

from .conftest import PostgresCluster

EXAMPLES = REPO / "examples" / "connector"
EXAMPLE_CONFIG = EXAMPLES / "kv2render.yaml"
EXAMPLE_POLICY = EXAMPLES / "kv2render-policy.hcl"
SECRET_PATH = "signals/pg-monitor"  # the example's secret (mount "secret")

# Go's unicode.IsSpace set, which strings.TrimSpace uses (Python's str.strip() also strips
# \x1c-\x1f, which Go does not).
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501


@dataclass(frozen=True)
class Target:
    """The part of a signals.yaml target that selects a credential."""

    host: str
    port: int
    dbname: str
    user: str


def read_password_file(path: Path) -> str:
    """Signals' readPasswordFile: the file's text with trailing CR/LF trimmed, nothing else."""
    return path.read_bytes().decode("utf-8").rstrip("\r\n")


def _parse_pgpass_line(line: str) -> list[str]:
    fields: list[str] = []
    current: list[str] = []
    escaped = False
    for ch in line:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == ":":
            fields.append("".join(current))
            current = []
        else:
            current.append(ch)
    fields.append("".join(current))
    return fields


def read_pgpass_like_signals(path: Path, target: Target) -> str:
    """Signals' readPgpass: the password of the first line matching the target."""
    wanted = (target.host, str(target.port), target.dbname, target.user)
    for raw in path.read_bytes().decode("utf-8").split("\n"):
        line = raw.strip(_GO_SPACE)
        if not line or line.startswith("#"):
            continue
        fields = _parse_pgpass_line(line)
        if len(fields) != 5:
            continue
        if all(f == "*" or f == w for f, w in zip(fields[:4], wanted, strict=True)):
            return fields[4]
    raise LookupError(f"no matching entry in {path} for {target}")


def connect(pg: PostgresCluster, target: Target, password: str | None = None, **extra: Any) -> str:
    """One new TCP connection (scram-sha-256); returns ``current_user`` as the server saw it."""
    import psycopg

    with psycopg.connect(
        host=target.host,
        port=target.port,
        dbname=target.dbname,
        user=target.user,
        password=password,
        connect_timeout=10,
        sslmode="disable",
        gssencmode="disable",
        **extra,
    ) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


def connect_with_password_file(pg: PostgresCluster, target: Target, path: Path) -> str:
    return connect(pg, target, read_password_file(path))


def connect_with_libpq_pgpass(
    pg: PostgresCluster, target: Target, path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    """libpq finds the password itself: PGPASSFILE set, no password given."""
    monkeypatch.setenv("PGPASSFILE", str(path))
    try:
        return connect(pg, target)
    finally:
        monkeypatch.delenv("PGPASSFILE")


def connect_with_signals_pgpass(pg: PostgresCluster, target: Target, path: Path) -> str:
    return connect(pg, target, read_pgpass_like_signals(path, target))


def assert_refused(pg: PostgresCluster, target: Target, password: str) -> None:
    import psycopg

    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(pg, target, password)


# -- kv2render side --------------------------------------------------------------------------


def wait_for(
    predicate: Callable[[], Any], timeout: float, what: str, log: Callable[[], str]
) -> Any:
    """Poll every 10 ms until truthy; fail naming ``what`` (and the daemon log) on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what}\n{log()[-3000:]}")
        time.sleep(0.01)


def read_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


class Daemon(DaemonProcess):
    """``python -m kv2render --config PATH`` (no --once); output to a log file, not a pipe."""

    def __init__(self, config: Path, logdir: Path, env: Mapping[str, str]) -> None:
        super().__init__(config, logdir, env)
