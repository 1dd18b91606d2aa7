"""The ovh flavour: OVHcloud Secret Manager's KV2-compatible API (kv2-wire.md §8)."""

from __future__ import annotations

import http.client
import json
import re
import urllib.parse
from collections.abc import Iterator

import hvac
import hvac.exceptions
import pytest
import requests

from kv2render.devserver import DevServer
from tests.devserver.helpers import client, raw, read

OVH_ERROR_FIELDS = {"error_id", "error_code", "errors", "request_id"}


@pytest.fixture
def ovh() -> Iterator[DevServer]:
    with DevServer(flavor="ovh") as srv:
        yield srv


def test_base_path_has_uuid(ovh: DevServer) -> None:
    """KV2-AC-143: the URL carries /api/<uuid>; requests outside it are 404."""
    path = urllib.parse.urlsplit(ovh.url).path
    assert re.fullmatch(r"/api/[0-9a-f-]{36}", path)
    ovh.put("k", {"a": 1})
    conn = http.client.HTTPConnection("127.0.0.1", ovh.port, timeout=5)
    conn.request("GET", "/v1/secret/data/k", headers={"Authorization": f"Bearer {ovh.root_token}"})
    resp = conn.getresponse()
    body = json.loads(resp.read())
    conn.close()
    assert resp.status == 404 and OVH_ERROR_FIELDS <= set(body)
    assert raw(ovh, "GET", "/v1/secret/data/k").status == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/sys/internal/ui/mounts/secret",
        "/v1/auth/token/lookup-self",
        "/v1/auth/approle/login",
        "/v1/other/data/x",
        "/v1/sys/health",
    ],
)
def test_no_auth_or_sys_endpoints(ovh: DevServer, path: str) -> None:
    """KV2-AC-143: auth and sys paths (and other mounts) are 404 with OVH's error fields."""
    r = raw(ovh, "GET", path)
    assert r.status == 404
    assert r.headers["Content-Type"] == "application/json"
    assert set(r.json) >= OVH_ERROR_FIELDS and isinstance(r.json["error_code"], int)


def test_unauthenticated_401(ovh: DevServer) -> None:
    """KV2-AC-143: no credentials -> 401 with OVH fields; X-Vault-Token is not a credential."""
    ovh.put("k", {"a": 1})
    r = raw(ovh, "GET", "/v1/secret/data/k", token=None)
    assert r.status == 401 and set(r.json) == OVH_ERROR_FIELDS
    r = raw(ovh, "GET", "/v1/secret/data/k", token=None, headers={"X-Vault-Token": ovh.root_token})
    assert r.status == 401
    with pytest.raises(hvac.exceptions.Unauthorized):
        read(hvac.Client(url=ovh.url, token=ovh.root_token), "k")
    with pytest.raises(hvac.exceptions.Unauthorized):
        read(client(ovh, "not-a-token"), "k")


def test_bearer_with_hvac_session(ovh: DevServer) -> None:
    """KV2-AC-143: Bearer via a requests session + token="" (§6.5) reads the secret."""
    ovh.put("prod/db", {"password": "pw"})
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {ovh.root_token}"
    c = hvac.Client(url=ovh.url, token="", session=session, strict_http=True)
    got = c.secrets.kv.v2.read_secret_version(
        "prod/db", mount_point="secret", raise_on_deleted_version=True
    )
    assert got["data"]["data"] == {"password": "pw"}
    assert set(got) == {"request_id", "data"}


def test_write_has_warnings_array(ovh: DevServer) -> None:
    """KV2-AC-143: OVH write responses carry a warnings array, no lease fields."""
    r = raw(ovh, "POST", "/v1/secret/data/k", {"data": {"a": 1}})
    assert set(r.json) == {"request_id", "data", "warnings"}


def test_list_all_via_get_metadata(ovh: DevServer) -> None:
    """KV2-AC-134: GET /secret/metadata lists everything (OKMS swagger)."""
    ovh.put("a/b", {"x": 1})
    ovh.put("c", {"x": 1})
    assert raw(ovh, "GET", "/v1/secret/metadata").json["data"]["keys"] == ["a/", "c"]


def test_policy_forbidden_403(ovh: DevServer) -> None:
    """KV2-AC-136: a bearer token without rights gets 403 in OVH's shape."""
    ovh.put("k", {"a": 1})
    ovh.add_policy("none", {"secret/data/other": ["read"]})
    tok = ovh.create_token(["none"])
    r = raw(ovh, "GET", "/v1/secret/data/k", token=tok)
    assert r.status == 403 and set(r.json) == OVH_ERROR_FIELDS


def test_no_logins_or_namespaces_in_api(ovh: DevServer) -> None:
    """KV2-AC-143: the Python API refuses what OVH does not offer."""
    with pytest.raises(ValueError, match="ovh"):
        ovh.add_approle("r", "id", "sid")
    with pytest.raises(ValueError, match="ovh"):
        ovh.add_namespace("ns")
    with pytest.raises(ValueError, match="ovh"):
        ovh.add_mount("other")
