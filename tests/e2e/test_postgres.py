"""From KV2 to a password file to a real PostgreSQL connection, with rotation (issue 7).

Every test deploys the documented example (examples/connector/: its kv2render.yaml, its
pgpass.j2 and its least-privilege policy), relocated into a temp directory and pointed at the
dev server with AppRole, then connects to a throwaway PostgreSQL cluster over TCP with
scram-sha-256 the way the connector does (tests/e2e/connector.py).
"""

from __future__ import annotations

import os
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from kv2render.devserver import DevServer
from tests.integration.cli_helpers import run_cli_subprocess, write_config

from .conftest import PostgresCluster
from .connector import (
    EXAMPLE_CONFIG,
    EXAMPLE_POLICY,
    EXAMPLES,
    SECRET_PATH,
    Daemon,
    Target,
    assert_refused,
    connect_with_libpq_pgpass,
    connect_with_password_file,
    connect_with_signals_pgpass,
    read_or_none,
    wait_for,
)

SENTINEL_SECRET_ID = "S3NTINEL-approle-secret-id-e2e"
MIN_READS = 2_000  # KV2-AC-213


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def policy_rules(text: str) -> dict[str, list[str]]:
    """The HCL policy as {path: capabilities} (python-hcl2 keeps the quotes of strings)."""
    rules: dict[str, list[str]] = {}
    for block in hcl2.loads(text)["path"]:
        for path, body in block.items():
            rules[path.strip('"')] = [c.strip('"') for c in body["capabilities"]]
    return rules


@dataclass
class Deployment:
    config: Path
    password_file: Path
    pgpass_file: Path
    logs: Path


def deploy(server: DevServer, root: Path, interval: str = "1s") -> Deployment:
    """examples/connector/kv2render.yaml, relocated under ``root``: same templates, same policy."""
    server.add_policy("kv2render-signals", policy_rules(EXAMPLE_POLICY.read_text()))
    server.add_approle(
        "kv2render-signals", "role-kv2render-signals", SENTINEL_SECRET_ID,
        policies=["kv2render-signals"],
    )  # fmt: skip
    etc, run = root / "etc", root / "run"
    etc.mkdir(mode=0o700)
    run.mkdir(mode=0o700)
    (etc / "role_id").write_text("role-kv2render-signals\n")
    (etc / "secret_id").write_text(SENTINEL_SECRET_ID + "\n")
    tree: dict[str, Any] = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    tree["vault"] = {"address": server.url}
    tree["auto_auth"]["method"]["config"].update(
        role_id_file_path=str(etc / "role_id"), secret_id_file_path=str(etc / "secret_id")
    )
    tree["template_config"]["static_secret_render_interval"] = interval
    tree["status_file"] = str(run / "status.json")
    outputs: list[Path] = []
    for entry in tree["template"]:
        entry.pop("user")  # the connector's OS user does not exist here
        entry["destination"] = str(run / Path(entry["destination"]).name)
        outputs.append(Path(entry["destination"]))
        if "source" in entry:
            entry["source"] = str(EXAMPLES / entry["source"])
    config = write_config(etc, tree)
    return Deployment(config, outputs[0], outputs[1], root / "logs")


def put_secret(server: DevServer, data: dict[str, Any]) -> int:
    return server.put(SECRET_PATH, data)


def once(dep: Deployment) -> None:
    result = run_cli_subprocess(["--config", str(dep.config), "--once"])
    assert result.code == 0, result.text


@pytest.fixture
def role(postgres: PostgresCluster) -> tuple[str, str]:
    password = "old-" + secrets.token_urlsafe(18)
    return postgres.create_role(password), password


def target_for(pg: PostgresCluster, user: str) -> Target:
    return Target(pg.host, pg.port, pg.dbname, user)


# -- 1. both outputs connect -----------------------------------------------------------------


def test_both_outputs_connect(
    postgres: PostgresCluster,
    dev_server: DevServer,
    workdir: Path,
    role: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KV2-AC-211 KV2-INV-210: `--once` writes db-password (ref:) and pgpass (template); both
    connect: the file's password with CR/LF trimming only, libpq's PGPASSFILE, Signals' parser."""
    user, password = role
    put_secret(
        dev_server,
        {
            "username": user,
            "password": password,
            "host": postgres.host,
            "port": postgres.port,
            "database": postgres.dbname,
        },
    )
    dep = deploy(dev_server, workdir)
    result = run_cli_subprocess(["--config", str(dep.config), "--once"])
    assert result.code == 0, result.text
    assert password not in result.text and SENTINEL_SECRET_ID not in result.text

    # The bare value, no newline (KV2-INV-210); the pgpass line names this cluster exactly.
    assert dep.password_file.read_bytes() == password.encode()
    assert dep.pgpass_file.read_text() == (
        f"{postgres.host}:{postgres.port}:{postgres.dbname}:{user}:{password}\n"
    )
    assert mode(dep.password_file) == 0o600
    assert mode(dep.pgpass_file) == 0o600  # libpq ignores a group/other-readable pgpass

    target = target_for(postgres, user)
    assert connect_with_password_file(postgres, target, dep.password_file) == user
    assert connect_with_libpq_pgpass(postgres, target, dep.pgpass_file, monkeypatch) == user
    assert connect_with_signals_pgpass(postgres, target, dep.pgpass_file) == user
    # The cluster really checks: a wrong password is refused over the same path.
    assert_refused(postgres, target, password + "x")


# -- 2. rotation -----------------------------------------------------------------------------


class FileReader(threading.Thread):
    """Reads one file in a tight loop, as a connector reconnecting at full speed would."""

    def __init__(self, path: Path, old: bytes, new: bytes) -> None:
        super().__init__(daemon=True, name=f"reader:{path.name}")
        self.path = path
        self.allowed = {old, new}
        self.new = new
        self.stop = threading.Event()
        self.reads = 0
        self.seen: dict[bytes, int] = {}
        self.unexpected: list[int] = []  # lengths only: never a value in a failure message
        self.bad_modes: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        # Stop once told to, with MIN_READS done and the new content read at least once.
        while not (self.stop.is_set() and self.reads >= MIN_READS and self.new in self.seen):
            try:
                perms = stat.S_IMODE(os.stat(self.path).st_mode)
                data = self.path.read_bytes()
            except OSError as exc:  # a missing file is a failure too (KV2-INV-211)
                self.errors.append(type(exc).__name__)
                data, perms = b"", 0o600
            self.reads += 1
            if data in self.allowed:
                self.seen[data] = self.seen.get(data, 0) + 1
            else:
                self.unexpected.append(len(data))
            if perms != 0o600:
                self.bad_modes.append(perms)


def test_rotation_reaches_a_new_connection_within_3s(
    postgres: PostgresCluster,
    dev_server: DevServer,
    workdir: Path,
    role: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KV2-AC-212 KV2-AC-213 KV2-INV-211: the daemon (1s interval) replaces both files within 3s
    of a new KV2 version; a new connection with the re-read file succeeds, the old password is
    refused, modes stay 0600, and >=2,000 reads per file see only the old or the new bytes."""
    user, old = role
    new = "new-" + secrets.token_urlsafe(18)
    target = target_for(postgres, user)
    put_secret(dev_server, {"username": user, "password": old})
    dep = deploy(dev_server, workdir)
    line = f"*:*:*:{user}:{{}}\n"
    daemon = Daemon(dep.config, dep.logs, {})
    try:
        wait_for(
            lambda: (
                read_or_none(dep.password_file) == old.encode()
                and read_or_none(dep.pgpass_file) == line.format(old).encode()
            ),
            30,
            "the first render",
            daemon.log,
        )
        assert connect_with_password_file(postgres, target, dep.password_file) == user

        readers = [
            FileReader(dep.password_file, old.encode(), new.encode()),
            FileReader(dep.pgpass_file, line.format(old).encode(), line.format(new).encode()),
        ]
        for reader in readers:
            reader.start()
        wait_for(lambda: all(r.reads >= 200 for r in readers), 10, "reads before", daemon.log)

        # The operator's order: a new KV2 version, then the database (issue 7).
        rotated_at = time.monotonic()
        put_secret(dev_server, {"username": user, "password": new})
        postgres.set_password(user, new)
        wait_for(
            lambda: (
                read_or_none(dep.password_file) == new.encode()
                and read_or_none(dep.pgpass_file) == line.format(new).encode()
            ),
            3.0 - (time.monotonic() - rotated_at),
            "both files to hold the new password (3s budget)",
            daemon.log,
        )
        elapsed = time.monotonic() - rotated_at
        assert elapsed < 3.0

        for reader in readers:
            reader.stop.set()
        for reader in readers:
            reader.join(timeout=30)
            assert not reader.is_alive(), f"{reader.name} never read the new content"
            assert reader.reads >= MIN_READS
            assert reader.errors == [], reader.errors
            assert reader.unexpected == [], f"{reader.name}: sizes {reader.unexpected[:10]}"
            assert reader.bad_modes == []
            assert len(reader.seen) == 2, f"{reader.name} saw only one version"

        # The connector re-reads the file for each new connection; nothing is restarted.
        assert connect_with_password_file(postgres, target, dep.password_file) == user
        assert connect_with_libpq_pgpass(postgres, target, dep.pgpass_file, monkeypatch) == user
        assert connect_with_signals_pgpass(postgres, target, dep.pgpass_file) == user
        assert_refused(postgres, target, old)
        assert mode(dep.password_file) == 0o600 and mode(dep.pgpass_file) == 0o600
        assert daemon.proc.poll() is None, daemon.log()
    finally:
        code = daemon.stop()
    log = daemon.log_path.read_text()
    assert code == 0, log
    for value in (old, new, SENTINEL_SECRET_ID):
        assert value not in log


# -- 3. failed rotation ----------------------------------------------------------------------


def test_rotation_without_the_key_keeps_the_old_file(
    postgres: PostgresCluster,
    dev_server: DevServer,
    workdir: Path,
    role: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """KV2-AC-214: a version without `password` leaves both files as they were (same inode,
    same bytes); the connector keeps connecting; the error names the key, never a value."""
    user, password = role
    sentinel = "S3NTINEL-misnamed-value-7f3a"
    target = target_for(postgres, user)
    put_secret(dev_server, {"username": user, "password": password})
    dep = deploy(dev_server, workdir)
    daemon = Daemon(dep.config, dep.logs, {})
    try:
        wait_for(
            lambda: read_or_none(dep.password_file) == password.encode(),
            30,
            "the first render",
            daemon.log,
        )
        wait_for(lambda: dep.pgpass_file.exists(), 5, "the pgpass file", daemon.log)
        before = {
            p: (p.stat().st_ino, p.read_bytes()) for p in (dep.password_file, dep.pgpass_file)
        }

        put_secret(dev_server, {"username": user, "passwd": sentinel})  # the key misspelt
        wait_for(
            lambda: "'password'" in daemon.log() and "not found" in daemon.log(),
            10,
            "the missing-key error",
            daemon.log,
        )
        # One more pass fails the same way: the old files stay however often it is retried.
        count = daemon.log().count("not found")
        wait_for(lambda: daemon.log().count("not found") > count, 10, "a retry", daemon.log)

        after = {p: (p.stat().st_ino, p.read_bytes()) for p in (dep.password_file, dep.pgpass_file)}
        assert after == before
        assert mode(dep.password_file) == 0o600
        assert connect_with_password_file(postgres, target, dep.password_file) == user
        assert connect_with_libpq_pgpass(postgres, target, dep.pgpass_file, monkeypatch) == user
        assert daemon.proc.poll() is None, "the daemon keeps running through a bad version"
    finally:
        daemon.stop()
    log = daemon.log_path.read_text()
    assert sentinel not in log and password not in log

    # --once fails loudly on the same version and still leaves the files alone.
    result = run_cli_subprocess(["--config", str(dep.config), "--once"])
    assert result.code != 0
    assert "'password'" in result.text
    assert sentinel not in result.text and password not in result.text
    assert {p: (p.stat().st_ino, p.read_bytes()) for p in before} == before


# -- 4. special characters -------------------------------------------------------------------

SPECIAL = [
    pytest.param("p:a\\ss 'w\"ord é€", "kv2_e2e_special", id="brief"),
    # Every character pgpass escapes, twice and adjacent, a '*' (a wildcard only as a whole
    # field), '#' first (a comment only at the start of a line), a user name with ':' too.
    pytest.param("#\\\\::\\:*  \"' ü—中文 ", "kv2:e2e\\user", id="escapes-and-spaces"),
]


@pytest.mark.parametrize(("password", "user_name"), SPECIAL)
def test_special_characters_connect_through_both_outputs(
    postgres: PostgresCluster,
    dev_server: DevServer,
    workdir: Path,
    monkeypatch: pytest.MonkeyPatch,
    password: str,
    user_name: str,
) -> None:
    """KV2-AC-215 KV2-AC-210: `:`, `\\`, quotes, spaces and non-ASCII text in the password (and
    the user name) reach PostgreSQL intact through the password file and the pgpass line."""
    user = postgres.create_role(password, name=user_name)
    put_secret(dev_server, {"username": user, "password": password})
    dep = deploy(dev_server, workdir)
    once(dep)

    assert dep.password_file.read_bytes() == password.encode("utf-8")
    escaped = [v.replace("\\", "\\\\").replace(":", "\\:") for v in (user, password)]
    assert dep.pgpass_file.read_text(encoding="utf-8") == f"*:*:*:{escaped[0]}:{escaped[1]}\n"

    target = target_for(postgres, user)
    assert connect_with_password_file(postgres, target, dep.password_file) == user
    assert connect_with_libpq_pgpass(postgres, target, dep.pgpass_file, monkeypatch) == user
    if password == password.strip():
        # Signals' own pgpass parser TrimSpace()s each line, so a password ending in white
        # space does not survive it (libpq keeps it); docs/connector.md says to use
        # password_file for such passwords.
        assert connect_with_signals_pgpass(postgres, target, dep.pgpass_file) == user
