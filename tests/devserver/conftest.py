"""Fixtures for the dev-server conformance tests (helpers live in helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from kv2render.devserver import DevServer
from tests.devserver.helpers import FLAVORS


@pytest.fixture(params=FLAVORS)
def srv(request: pytest.FixtureRequest) -> Iterator[DevServer]:
    """A started dev server, once per flavour."""
    server = DevServer(flavor=request.param).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=("vault", "openbao"))
def vsrv(request: pytest.FixtureRequest) -> Iterator[DevServer]:
    """Flavours that have auth/ and sys/ endpoints."""
    server = DevServer(flavor=request.param).start()
    try:
        yield server
    finally:
        server.stop()
