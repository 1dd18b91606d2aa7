"""KV2-NFR-302: the real OpenBao fixtures themselves: a dev server, a TLS one, a persistent one."""

from __future__ import annotations

import pytest

from tests.realbao import BaoServer, unique

pytestmark = pytest.mark.openbao


def test_dev_server_round_trip(bao_server: BaoServer) -> None:
    path = unique("smoke")
    assert bao_server.kv_put(path, {"password": "p1"}) == 1
    assert bao_server.kv_get(path)["data"]["data"] == {"password": "p1"}


def test_tls_server_round_trip(bao_tls_server: BaoServer) -> None:
    assert bao_tls_server.address.startswith("https://127.0.0.1:")
    assert bao_tls_server.ca_cert.is_file()
    path = unique("smoke")
    bao_tls_server.kv_put(path, {"password": "p1"})
    assert bao_tls_server.kv_get(path)["data"]["data"]["password"] == "p1"


def test_persistent_server_survives_restart_and_seal(bao_persistent_server: BaoServer) -> None:
    server = bao_persistent_server
    server.kv_put("keep", {"password": "p1"})
    server.restart()
    assert server.kv_get("keep")["data"]["data"]["password"] == "p1"
    server.seal()
    assert server.api("GET", "sys/seal-status", token="")["sealed"] is True
    server.unseal()
    server.wait_ready()
    assert server.kv_get("keep")["data"]["data"]["password"] == "p1"
