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
