"""A throwaway PostgreSQL cluster for the end-to-end tests (issue 7).

One cluster per test session: ``initdb`` in a fresh temp directory, a free loopback port,
the unix socket inside that directory, stopped (``pg_ctl stop -m immediate``) and removed at
teardown. Authentication is split on purpose:

* ``local`` (the unix socket, in a 0700 directory only the cluster's OS user and root can
  reach): ``trust``, for the test's superuser session that creates roles and rotates passwords;
* ``host 127.0.0.1/32``: ``scram-sha-256`` only, which is where the stand-in connector
  connects, so a wrong or stale password is really refused.

PostgreSQL refuses to run as root, so when the tests run as root the directory is chowned to
the ``postgres`` OS user and ``initdb``/``pg_ctl`` run as that user (subprocess ``user=``).

Without the binaries the tests skip with the reason; with ``KV2RENDER_REQUIRE_POSTGRES=1``
(set by ``.ci/run``) the same condition is a failure (KV2-AC-216).
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import psycopg

REQUIRE_ENV = "KV2RENDER_REQUIRE_POSTGRES"
BINDIR_ENV = "KV2RENDER_PG_BINDIR"  # optional override, e.g. a PostgreSQL built from source
PG_BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "postgres"
APP_DB = "app"

# libpq reads these by itself; a developer's shell must not change what a test connects with.
_LIBPQ_ENV = (
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSSLMODE",
    "PGOPTIONS",
    "PGCONNECT_TIMEOUT",
)


@pytest.fixture(autouse=True)
def _clean_libpq_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _LIBPQ_ENV:
        monkeypatch.delenv(name, raising=False)


# -- finding PostgreSQL ----------------------------------------------------------------------


def _version_key(path: Path) -> tuple[int, ...]:
    # /usr/lib/postgresql/15/bin -> (15,): prefer the newest installed major version.
    try:
        return (int(path.parent.name),)
    except ValueError:
        return (0,)


def candidate_bindirs(env: Mapping[str, str]) -> list[Path]:
    """Where ``initdb`` may live: the override, Debian's layout, then ``$PATH``."""
    found: list[Path] = []
    if env.get(BINDIR_ENV):
        found.append(Path(env[BINDIR_ENV]))
    found.extend(sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_version_key, reverse=True))
    on_path = shutil.which("initdb", path=env.get("PATH"))
    if on_path:
        found.append(Path(on_path).parent)
    return found


def missing_postgres_reason(
    env: Mapping[str, str], candidates: list[Path] | None = None
) -> tuple[Path | None, str]:
    """(bindir, "") when PostgreSQL and psycopg are usable, else (None, the reason)."""
    try:
        import psycopg  # noqa: F401
    except ImportError as exc:
        return None, f"psycopg is not importable ({exc}); pip install 'psycopg[binary]'"
    if candidates is None:
        candidates = candidate_bindirs(env)
    for bindir in candidates:
        if all(os.access(bindir / name, os.X_OK) for name in PG_BINARIES):
            return bindir, ""
    looked = ", ".join(str(c) for c in candidates) or "/usr/lib/postgresql/*/bin, $PATH"
    return None, (
        f"PostgreSQL server binaries ({', '.join(PG_BINARIES)}) not found in {looked}; "
        f"install Debian's 'postgresql' package or set {BINDIR_ENV}"
    )


def require_postgres(env: Mapping[str, str], candidates: list[Path] | None = None) -> Path:
    """The bindir, or skip with the reason; with KV2RENDER_REQUIRE_POSTGRES=1, fail (KV2-AC-216)."""
    bindir, reason = missing_postgres_reason(env, candidates)
    if bindir is not None:
        return bindir
    if env.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# -- the cluster -----------------------------------------------------------------------------


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresCluster:
    """A running cluster: TCP on 127.0.0.1:port (scram-sha-256), socket in ``socket_dir``."""

    bindir: Path
    root: Path
    port: int
    run_as: str | None  # OS user the server runs as (None: the current user)
    host: str = "127.0.0.1"
    dbname: str = APP_DB
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1), repr=False)

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "sock"

    @property
    def logfile(self) -> Path:
        return self.root / "postgres.log"

    def admin(self) -> psycopg.Connection[Any]:
        """The superuser over the unix socket (trust: reachable by root and the owner only)."""
        import psycopg

        return psycopg.connect(
            host=str(self.socket_dir),
            port=self.port,
            user=SUPERUSER,
            dbname="postgres",
            autocommit=True,
            connect_timeout=10,
        )

    def create_role(self, password: str, name: str | None = None) -> str:
        """A new LOGIN role (unique name unless given) with ``password``; returns its name."""
        from psycopg import sql

        role = name or f"kv2_e2e_{next(self._names)}"
        with self.admin() as conn:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        return role

    def set_password(self, role: str, password: str) -> None:
        """``ALTER ROLE ... PASSWORD``: the server stores the SCRAM verifier of ``password``."""
        from psycopg import sql

        with self.admin() as conn:
            conn.execute(
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )

    def log_tail(self, size: int = 4000) -> str:
        try:
            return self.logfile.read_text(encoding="utf-8", errors="replace")[-size:]
        except OSError:
            return "(no server log)"


def _run_as(
    cluster_user: str | None, argv: list[str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    # Drop to the postgres OS user only when we are root: PostgreSQL refuses to run as root.
    extra: dict[str, Any] = {}
    if cluster_user is not None:
        entry = pwd.getpwnam(cluster_user)
        extra = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
    env = {k: v for k, v in os.environ.items() if k not in _LIBPQ_ENV}
    env["LC_ALL"] = "C.UTF-8"  # initdb refuses a locale it cannot find; C.UTF-8 always exists
    return subprocess.run(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **extra,
    )


def _cluster_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root, and there is no 'postgres' OS user to run the cluster as")
    return "postgres"


_HBA = """\
# kv2render e2e: trust on the private socket (test superuser only), SCRAM on loopback TCP.
local   all   all                  trust
host    all   all   127.0.0.1/32   scram-sha-256
"""


def _initdb(bindir: Path, root: Path, user: str | None) -> None:
    data = root / "data"
    proc = _run_as(
        user,
        [
            str(bindir / "initdb"),
            "--pgdata",
            str(data),
            "--username",
            SUPERUSER,
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--encoding=UTF8",
            "--no-instructions",
            "--no-sync",  # throwaway cluster: durability is not under test
        ],
        root,
        timeout=120,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"initdb failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    (data / "pg_hba.conf").write_text(_HBA, encoding="utf-8")


def _start(bindir: Path, root: Path, port: int, user: str | None) -> bool:
    with (root / "data" / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(
            "\n# kv2render e2e\n"
            f"port = {port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{root / 'sock'}'\n"
            "password_encryption = 'scram-sha-256'\n"
            "fsync = off\n"
            "max_connections = 50\n"
        )
    proc = _run_as(
        user,
        [
            str(bindir / "pg_ctl"),
            "--pgdata",
            str(root / "data"),
            "--log",
            str(root / "postgres.log"),
            "--wait",
            "--timeout=60",
            "start",
        ],
        root,
        timeout=90,
    )
    return proc.returncode == 0


def _stop(cluster: PostgresCluster) -> None:
    _run_as(
        cluster.run_as,
        [
            str(cluster.bindir / "pg_ctl"),
            "--pgdata",
            str(cluster.datadir),
            "-m",
            "immediate",
            "stop",
        ],
        cluster.root,
    )


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A running throwaway cluster with database ``app``; skipped/failed per KV2-AC-216."""
    bindir = require_postgres(os.environ)
    user = _cluster_user()
    # Not under pytest's tmp_path: its base directory is 0700 root, and the postgres user
    # must be able to reach its own data directory.
    root = Path(tempfile.mkdtemp(prefix="kv2render-pg-"))
    cluster: PostgresCluster | None = None
    try:
        (root / "sock").mkdir(mode=0o700)
        if user is not None:
            entry = pwd.getpwnam(user)
            for path in (root, root / "sock"):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        _initdb(bindir, root, user)
        # A port picked free can be taken before the server binds it: try a few.
        for _attempt in range(3):
            port = free_loopback_port()
            if _start(bindir, root, port, user):
                cluster = PostgresCluster(bindir, root, port, user)
                break
        if cluster is None:
            log = (root / "postgres.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"pg_ctl start failed three times; server log:\n{log}")
        with cluster.admin() as conn:
            conn.execute(f"CREATE DATABASE {APP_DB}")
        yield cluster
    finally:
        if cluster is not None:
            _stop(cluster)
        shutil.rmtree(root, ignore_errors=True)
