"""The openbao flavour's measured answers, checked without the real server (fast, every run).

test_conformance_real.py is the measurement itself; these pin the same facts for machines that
skip the real-server tier."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from kv2render.devserver import DevServer
from tests.devserver.helpers import raw

DENIED = ["1 error occurred:\n\t* permission denied\n\n"]


@pytest.fixture
def bao() -> Iterator[DevServer]:
    with DevServer(flavor="openbao", root_token="root") as srv:
        yield srv


def test_bad_tokens_get_the_bare_text_and_acl_denials_the_multierror(bao: DevServer) -> None:
    """KV2-INV-341: no token, an unknown one or a revoked one: bare text; a valid token the
    ACL refuses: the multierror."""
    bao.put("app", {"a": "b"})
    tok = bao.create_token(["nothing"])
    for token in (None, "s.unknownunknownunknown12"):
        r = raw(bao, "GET", "/v1/secret/data/app", token=token)
        assert (r.status, r.json["errors"]) == (403, ["permission denied"])
    r = raw(bao, "GET", "/v1/secret/data/app", token=tok)
    assert (r.status, r.json["errors"]) == (403, DENIED)
    bao.revoke_token(tok)
    r = raw(bao, "GET", "/v1/secret/data/app", token=tok)
    assert (r.status, r.json["errors"]) == (403, ["permission denied"])


def test_self_endpoints_pass_the_default_policy(bao: DevServer) -> None:
    """KV2-INV-341: the default policy grants GET lookup-self and POST renew-self/revoke-self,
    nothing else; a token without the default policy gets none of them; root gets all."""
    tok = bao.create_token(["app"], ttl=600)
    assert raw(bao, "GET", "/v1/auth/token/lookup-self", token=tok).status == 200
    assert raw(bao, "POST", "/v1/auth/token/lookup-self", {}, token=tok).json["errors"] == DENIED
    assert raw(bao, "GET", "/v1/auth/token/renew-self", token=tok).json["errors"] == DENIED
    assert raw(bao, "POST", "/v1/auth/token/renew-self", {}, token=tok).status == 200
    assert raw(bao, "POST", "/v1/auth/token/lookup-self", {}).status == 200  # root
    r = raw(bao, "POST", "/v1/auth/token/create", {"no_default_policy": True, "policies": ["x"]})
    bare = r.json["auth"]["client_token"]
    assert raw(bao, "GET", "/v1/auth/token/lookup-self", token=bare).status == 403
    assert raw(bao, "POST", "/v1/auth/token/revoke-self", {}, token=tok).status == 204
    assert raw(bao, "GET", "/v1/auth/token/lookup-self", token=tok).status == 403


def test_token_shapes(bao: DevServer) -> None:
    """KV2-AC-342: s. tokens, issue_time and renewable for every token, the fixed-id root token
    shaped like bao's -dev-root-token-id one, num_uses -1 on the last use."""
    root = raw(bao, "GET", "/v1/auth/token/lookup-self").json["data"]
    assert (root["display_name"], root["path"], root["orphan"]) == (
        "token",
        "auth/token/create",
        True,
    )
    assert root["renewable"] is False and root["issue_time"].endswith("Z")
    created = raw(bao, "POST", "/v1/auth/token/create", {"ttl": "5m", "num_uses": 1}).json
    token = created["auth"]["client_token"]
    assert re.fullmatch(r"s\.[A-Za-z0-9]{24}", token)
    assert re.fullmatch(r"[A-Za-z0-9]{24}", created["auth"]["accessor"])
    last = raw(bao, "GET", "/v1/auth/token/lookup-self", token=token).json["data"]
    assert last["num_uses"] == -1
    assert raw(bao, "GET", "/v1/auth/token/lookup-self", token=token).status == 403


def test_kv2_field_conversions(bao: DevServer) -> None:
    """KV2-AC-342: data null is stored, arrays of objects merge, cas "1" counts and 1.0 does not,
    custom_metadata values become text, Go-worded errors, data/ with the slash."""
    assert raw(bao, "POST", "/v1/secret/data/n", {"data": None}).status == 200
    assert raw(bao, "GET", "/v1/secret/data/n").json["data"]["data"] is None
    assert raw(bao, "POST", "/v1/secret/data/m", {"data": [{"a": 1}, [{"b": "x"}]]}).status == 200
    assert raw(bao, "GET", "/v1/secret/data/m").json["data"]["data"] == {"a": 1, "b": "x"}
    r = raw(bao, "POST", "/v1/secret/data/m", {"data": [[1]]})
    assert r.json["errors"] == [
        "error converting input for field \"data\": '[0][0]' expected type "
        "'map[string]interface {}', got unconvertible type 'json.Number'"
    ]
    assert raw(bao, "POST", "/v1/secret/data/m", b'{"data":{},"options":{"cas":"1"}}').status == 200
    r = raw(bao, "POST", "/v1/secret/data/m", b'{"data":{},"options":{"cas":2.0}}')
    assert r.json["errors"] == ["error parsing check-and-set parameter"]
    body = b'{"custom_metadata":{"b":true,"f":1.50}}'
    assert raw(bao, "POST", "/v1/secret/metadata/m", body).status == 204
    meta = raw(bao, "GET", "/v1/secret/metadata/m").json["data"]
    assert meta["custom_metadata"] == {"b": "1", "f": "1.50"}
    assert raw(bao, "GET", "/v1/secret/data/").body == b'{"errors":[]}\n'
    assert raw(bao, "DELETE", "/v1/secret/data/").status == 204
    r = raw(
        bao,
        "PATCH",
        "/v1/secret/data/missing",
        {"data": {}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert (r.status, r.body) == (404, b"")
