"""Numbers in KV v2 data: the openbao flavour stores them as OpenBao does, the vault flavour keeps
the literal (no real server needed here; test_conformance_real.py checks the same against it)."""

from __future__ import annotations

import json

import pytest

from kv2render.devserver import DevServer
from kv2render.devserver.numbers import float64_text
from tests.devserver.helpers import raw

# Literal written -> literal read back, measured on `bao server -dev` (OpenBao 2.7.2) on
# 2026-12-07 with curl: one KV v2 write and one read per row.
MEASURED = {
    "1.50": "1.5",
    "1e3": "1000",
    "1E3": "1000",
    "1.5e3": "1500",
    "1e+3": "1000",
    "0.1": "0.1",
    "-0": "-0",
    "-0.0": "-0",
    "0": "0",
    "1.0": "1",
    "100": "100",
    "12345678901234567890": "12345678901234567000",
    "9007199254740993": "9007199254740992",
    "9223372036854775807": "9223372036854776000",
    "-9223372036854775809": "-9223372036854776000",
    "1e21": "1e+21",
    "1e20": "100000000000000000000",
    "1e-7": "1e-7",
    "1e-6": "0.000001",
    "123456789012345678901234567890": "1.2345678901234568e+29",
    "1.7976931348623157e308": "1.7976931348623157e+308",
    "1.7976931348623158e308": "1.7976931348623157e+308",
    "5e-324": "5e-324",
    "1e-400": "0",
    "-1e-400": "-0",
    "1e-320": "1e-320",
    "3.14159265358979323846": "3.141592653589793",
    "2.50e-3": "0.0025",
    "0.30000000000000004": "0.30000000000000004",
    "1e22": "1e+22",
    "123e-2": "1.23",
    "-1.5e3": "-1500",
    "12345678.9": "12345678.9",
    "1e100": "1e+100",
    "0e5": "0",
    "-0e-5": "-0",
}
# Refused with 400 by the real server: beyond float64.
TOO_BIG = ("1e400", "-1e400", "1e309", "1.7976931348623159e308")


def _write_read(srv: DevServer, literal: str) -> tuple[int, bytes]:
    body = f'{{"data":{{"v":{literal}}}}}'.encode()
    written = raw(srv, "POST", "/v1/secret/data/n", body)
    if written.status != 200:
        return written.status, written.body
    got = raw(srv, "GET", "/v1/secret/data/n").body
    start = got.index(b'"data":{"data":') + len(b'"data":{"data":')
    return 200, got[start : got.index(b"}", start) + 1]


@pytest.mark.parametrize(("literal", "stored"), sorted(MEASURED.items()))
def test_go_float64_text(literal: str, stored: str) -> None:
    """KV2-INV-340: Go's encoding/json text of the float64 a literal becomes."""
    assert float64_text(float(literal)) == stored


def test_openbao_flavour_stores_numbers_as_openbao_does() -> None:
    """KV2-INV-340 KV2-AC-343: every measured literal reads back from the openbao flavour as it
    did from OpenBao; numbers beyond float64 get OpenBao's 400."""
    with DevServer(flavor="openbao") as srv:
        for literal, stored in MEASURED.items():
            assert _write_read(srv, literal) == (200, f'{{"v":{stored}}}'.encode()), literal
        for literal in TOO_BIG:
            status, body = _write_read(srv, literal)
            assert status == 400
            assert json.loads(body)["errors"] == [
                "failed to decode JSON input: json: cannot unmarshal number "
                f"{literal} into Go value of type float64"
            ]
        # KV v1 and custom_metadata keep the literal on OpenBao too (measured).
        srv.add_mount("kv1", version=1)
        assert raw(srv, "POST", "/v1/kv1/n", b'{"v":1.50,"w":1e3}').status == 204
        assert b'"data":{"v":1.50,"w":1e3}' in raw(srv, "GET", "/v1/kv1/n").body
        r = raw(srv, "POST", "/v1/secret/metadata/n", b'{"custom_metadata":{"f":1.50}}')
        assert r.status == 204
        meta = raw(srv, "GET", "/v1/secret/metadata/n").json["data"]
        assert meta["custom_metadata"] == {"f": "1.50"}
        # The Python API goes through the same engine.
        srv.put("py", {"price": 1.5, "big": 10**21})
        assert srv.read("py") == {"big": 1e21, "price": 1.5}
        assert b'"big":1e+21' in raw(srv, "GET", "/v1/secret/data/py").body


def test_vault_flavour_keeps_number_literals() -> None:
    """KV2-AC-344: the vault flavour keeps each literal as written (Vault's jsonutil decodes
    with UseNumber), so a consul-template render prints 1.50 as 1.50 (KV2-AC-258)."""
    with DevServer(flavor="vault") as srv:
        for literal in ("1.50", "1e3", "1E3", "-0.0", "12345678901234567890", "1e400"):
            assert _write_read(srv, literal) == (200, f'{{"v":{literal}}}'.encode()), literal
