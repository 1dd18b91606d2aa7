"""KV v2 conformance (kv2-wire.md §2, §11 items 1-5, 8), raw http.client and hvac, all flavours."""

from __future__ import annotations

import json
import re

import hvac
import hvac.exceptions
import pytest

from kv2render.devserver import DevServer
from tests.devserver.helpers import client, raw, read

RFC3339_FRAC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}Z$")
ENVELOPE_KEYS = [
    "request_id",
    "lease_id",
    "renewable",
    "lease_duration",
    "data",
    "wrap_info",
    "warnings",
    "auth",
]


def test_hvac_write_read_exact_envelope(srv: DevServer) -> None:
    """KV2-AC-131, KV2-INV-131: write + read back via hvac; envelope keys in Go struct order,
    mount_type only for vault, the bare {request_id, data} envelope for ovh."""
    c = client(srv)
    written = c.secrets.kv.v2.create_or_update_secret("app/db", {"user": "u", "password": "p"})
    assert written["data"]["version"] == 1
    r = raw(srv, "GET", "/v1/secret/data/app/db")
    assert r.status == 200
    assert r.body.endswith(b"}\n")
    body = r.json
    if srv.flavor == "ovh":
        assert list(body) == ["request_id", "data"]
    else:
        expected = ENVELOPE_KEYS + (["mount_type"] if srv.flavor == "vault" else [])
        assert list(body) == expected
        assert body["lease_id"] == "" and body["renewable"] is False
        assert body["lease_duration"] == 0 and body["wrap_info"] is None
        assert body["warnings"] is None and body["auth"] is None
        if srv.flavor == "vault":
            assert body["mount_type"] == "kv"
    assert body["data"]["data"] == {"password": "p", "user": "u"}
    assert list(body["data"]["data"]) == ["password", "user"]  # Go sorts map keys
    meta = body["data"]["metadata"]
    assert list(meta) == [
        "created_time",
        "custom_metadata",
        "deletion_time",
        "destroyed",
        "version",
    ]
    assert meta["version"] == 1 and meta["deletion_time"] == "" and meta["destroyed"] is False
    assert RFC3339_FRAC.match(meta["created_time"]), meta["created_time"]
    assert read(c, "app/db")["data"]["data"]["user"] == "u"


def test_version_param_and_missing_404(srv: DevServer) -> None:
    """KV2-AC-132: ?version=N reads that version; missing path/version -> 404 {"errors":[]}."""
    srv.put("app/db", {"v": 1})
    srv.put("app/db", {"v": 2})
    assert raw(srv, "GET", "/v1/secret/data/app/db?version=1").json["data"]["data"] == {"v": 1}
    assert raw(srv, "GET", "/v1/secret/data/app/db?version=0").json["data"]["data"] == {"v": 2}
    assert raw(srv, "GET", "/v1/secret/data/app/db").json["data"]["metadata"]["version"] == 2
    for path in ("/v1/secret/data/app/db?version=7", "/v1/secret/data/nope"):
        r = raw(srv, "GET", path)
        assert r.status == 404
        assert r.headers["Content-Type"] == "application/json"
        if srv.flavor == "ovh":
            assert set(r.json) == {"error_id", "error_code", "errors", "request_id"}
        else:
            assert r.body == b'{"errors":[]}\n'
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(client(srv), "nope")
    assert read(client(srv), "app/db", version=1)["data"]["data"] == {"v": 1}


def test_version_not_integer_is_400(srv: DevServer) -> None:
    """KV2-AC-150: a non-integer version is a 400 error body, not a traceback."""
    srv.put("a", {"k": "v"})
    r = raw(srv, "GET", "/v1/secret/data/a?version=abc")
    assert r.status == 400 and r.json["errors"]


def test_cas(srv: DevServer) -> None:
    """KV2-AC-133: options.cas honoured; exact reference messages (§2.5)."""
    c = client(srv)
    c.secrets.kv.v2.create_or_update_secret("k", {"a": 1}, cas=0)
    r = raw(srv, "POST", "/v1/secret/data/k", {"options": {"cas": 0}, "data": {"a": 2}})
    assert r.status == 400
    assert r.json["errors"] == ["check-and-set parameter did not match the current version"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="did not match"):
        c.secrets.kv.v2.create_or_update_secret("k", {"a": 3}, cas=5)
    assert (
        raw(srv, "POST", "/v1/secret/data/k", {"options": {"cas": 1}, "data": {"a": 2}}).status
        == 200
    )
    r = raw(srv, "PUT", "/v1/secret/data/k", {"options": {"cas": "x"}, "data": {"a": 2}})
    assert r.json["errors"] == ["error parsing check-and-set parameter"]
    assert srv.put("k", {"a": 9}, cas=2) == 3
    raw(srv, "POST", "/v1/secret/metadata/k", {"cas_required": True})
    r = raw(srv, "POST", "/v1/secret/data/k", {"data": {"a": 4}})
    assert r.status == 400
    assert r.json["errors"] == ["check-and-set parameter required for this call"]


def test_write_errors(srv: DevServer) -> None:
    """KV2-AC-150: no data, trailing slash, malformed JSON -> 400 error shapes."""
    r = raw(srv, "POST", "/v1/secret/data/k", {"options": {}})
    assert r.status == 400 and r.json["errors"] == ["no data provided"]
    r = raw(srv, "POST", "/v1/secret/data/k/", {"data": {"a": 1}})
    assert r.status == 400 and r.json["errors"] == ["cannot write to a path ending in '/'"]
    for bad in (b"{not json", b"[1,2]", b"\xff\xfe"):
        r = raw(srv, "POST", "/v1/secret/data/k", bad)
        assert r.status == 400
        assert r.headers["Content-Type"] == "application/json"
        # OpenBao words it "failed to decode JSON input" (measured, KV2-AC-342).
        word = "decode" if srv.flavor == "openbao" else "parse"
        assert r.json["errors"][0].startswith(f"failed to {word} JSON input")


def test_write_response_shape(srv: DevServer) -> None:
    """KV2-AC-131: write returns the version metadata in data (§2.5)."""
    r = raw(srv, "PUT", "/v1/secret/data/k", {"data": {"a": 1}})
    assert r.status == 200
    data = r.json["data"]
    assert list(data) == [
        "created_time",
        "custom_metadata",
        "deletion_time",
        "destroyed",
        "version",
    ]
    assert data["version"] == 1


def test_metadata_read_write_delete(srv: DevServer) -> None:
    """KV2-AC-134: metadata write (204, no new version), read fields, delete (204 -> 404)."""
    srv.put("app/db", {"a": 1})
    srv.put("app/db", {"a": 2})
    r = raw(
        srv,
        "POST",
        "/v1/secret/metadata/app/db",
        {"max_versions": 5, "custom_metadata": {"owner": "team-a"}, "delete_version_after": "1h"},
    )
    assert r.status == 204 and r.body == b""
    assert r.headers["Content-Type"] == "application/json"
    md = raw(srv, "GET", "/v1/secret/metadata/app/db").json["data"]
    assert md["current_version"] == 2 and md["oldest_version"] == 0 and md["max_versions"] == 5
    assert md["custom_metadata"] == {"owner": "team-a"}
    assert md["delete_version_after"] == "1h0m0s"
    assert set(md["versions"]) == {"1", "2"}
    assert set(md["versions"]["1"]) >= {"created_time", "deletion_time", "destroyed"}
    if srv.flavor == "vault":
        assert "last_updated_by" in md and "created_by" in md["versions"]["1"]
    if srv.flavor == "openbao":
        assert "current_metadata_version" in md and "last_updated_by" not in md
    if srv.flavor == "ovh":
        assert md["urn"].endswith(":secret/app/db")
    # custom_metadata shows up on data reads (§2.1)
    assert read(client(srv), "app/db")["data"]["metadata"]["custom_metadata"] == {"owner": "team-a"}
    c = client(srv)
    assert c.secrets.kv.v2.read_secret_metadata("app/db")["data"]["current_version"] == 2
    r = raw(srv, "DELETE", "/v1/secret/metadata/app/db")
    assert r.status == 204
    assert raw(srv, "GET", "/v1/secret/metadata/app/db").status == 404
    assert raw(srv, "GET", "/v1/secret/data/app/db").status == 404


def test_custom_metadata_validation(srv: DevServer) -> None:
    """KV2-AC-134: custom_metadata limits are enforced with a 400."""
    r = raw(srv, "POST", "/v1/secret/metadata/k", {"custom_metadata": {"k": ""}})
    assert r.status == 400
    # OpenBao wraps the text in a multierror (measured, KV2-AC-342).
    assert "custom_metadata validation failed" in r.json["errors"][0]


def test_list_verb_and_query(srv: DevServer) -> None:
    """KV2-AC-134: LIST verb and GET ?list=true; folders end in '/'; empty -> 404 []."""
    for path in ("app/db", "app/api", "app/sub/x", "top"):
        srv.put(path, {"a": 1})
    r = raw(srv, "GET", "/v1/secret/metadata/app?list=true")
    assert r.status == 200 and r.json["data"]["keys"] == ["api", "db", "sub/"]
    assert raw(srv, "GET", "/v1/secret/metadata/?list=true").json["data"]["keys"] == ["app/", "top"]
    if srv.flavor != "ovh":
        r = raw(srv, "LIST", "/v1/secret/metadata/app/")
        assert r.json["data"]["keys"] == ["api", "db", "sub/"]
        keys = client(srv).secrets.kv.v2.list_secrets("app")["data"]["keys"]
        assert keys == ["api", "db", "sub/"]
    else:
        # OKMS has no LIST verb (§8); hvac with strict_http=True sends GET ?list=true.
        assert raw(srv, "LIST", "/v1/secret/metadata/app/").status == 405
        assert client(srv).secrets.kv.v2.list_secrets("app")["data"]["keys"] == [
            "api",
            "db",
            "sub/",
        ]
    r = raw(srv, "GET", "/v1/secret/metadata/nothing/?list=true")
    assert r.status == 404
    if srv.flavor != "ovh":
        assert r.body == b'{"errors":[]}\n'


def test_delete_undelete_destroy(srv: DevServer) -> None:
    """KV2-AC-135: 204s; soft-deleted and destroyed reads give the 404 bodies with metadata."""
    for v in range(3):
        srv.put("k", {"v": v})
    c = client(srv)
    resp = c.secrets.kv.v2.delete_latest_version_of_secret("k")
    assert resp.status_code == 204
    r = raw(srv, "GET", "/v1/secret/data/k")
    assert r.status == 404
    assert r.headers["Content-Type"] == "application/json"
    if srv.flavor == "ovh":
        assert r.json["data"]["data"] is None and r.json["error_code"]
    else:
        assert not r.body.endswith(b"\n")  # pre-marshalled raw body (§1.2)
        body = r.json
        assert "errors" not in body
        assert body["data"]["data"] is None
        assert body["data"]["metadata"]["version"] == 3
        assert RFC3339_FRAC.match(body["data"]["metadata"]["deletion_time"])
        if srv.flavor == "vault":
            assert body["mount_type"] == ""
        else:
            assert "mount_type" not in body
    # hvac with raise_on_deleted_version=False returns the body for soft-deleted (§6.4)
    got = c.secrets.kv.v2.read_secret_version("k", raise_on_deleted_version=False)
    assert got["data"]["data"] is None
    assert c.secrets.kv.v2.undelete_secret_versions("k", [3]).status_code == 204
    assert read(c, "k")["data"]["data"] == {"v": 2}
    assert c.secrets.kv.v2.delete_secret_versions("k", [1]).status_code == 204
    assert raw(srv, "GET", "/v1/secret/data/k?version=1").status == 404
    assert c.secrets.kv.v2.destroy_secret_versions("k", [2]).status_code == 204
    r = raw(srv, "GET", "/v1/secret/data/k?version=2")
    assert r.status == 404
    meta = r.json["data"]["metadata"]
    assert meta["destroyed"] is True and meta["deletion_time"] == ""
    # destroyed-but-never-deleted still raises with raise_on_deleted_version=False (§6.4)
    with pytest.raises(hvac.exceptions.InvalidPath):
        c.secrets.kv.v2.read_secret_version("k", version=2, raise_on_deleted_version=False)
    # destroy cannot be undone
    raw(srv, "POST", "/v1/secret/undelete/k", {"versions": [2]})
    assert raw(srv, "GET", "/v1/secret/data/k?version=2").status == 404
    assert raw(srv, "PUT", "/v1/secret/destroy/k", {"versions": [3]}).status == 204


def test_version_list_required(srv: DevServer) -> None:
    """KV2-AC-135: empty version lists -> 400 with the plugin's (inconsistent) capitalisation."""
    srv.put("k", {"a": 1})
    assert raw(srv, "POST", "/v1/secret/delete/k", {"versions": []}).json["errors"] == [
        "No version number provided"
    ]
    assert raw(srv, "POST", "/v1/secret/destroy/k", {}).json["errors"] == [
        "no version number provided"
    ]


def test_pruning_max_versions(srv: DevServer) -> None:
    """KV2-AC-134: max_versions prunes old versions and moves oldest_version (§2.5)."""
    raw(srv, "POST", "/v1/secret/metadata/k", {"max_versions": 2})
    for v in range(4):
        srv.put("k", {"v": v})
    md = raw(srv, "GET", "/v1/secret/metadata/k").json["data"]
    assert sorted(md["versions"]) == ["3", "4"] and md["oldest_version"] == 3
    assert raw(srv, "GET", "/v1/secret/data/k?version=1").status == 404


def test_delete_version_after_future_deletion_time(srv: DevServer) -> None:
    """KV2-AC-151: with delete_version_after, a 200 carries a future deletion_time (§2.1)."""
    raw(srv, "POST", "/v1/secret/metadata/k", {"delete_version_after": "1h"})
    srv.put("k", {"a": 1})
    r = raw(srv, "GET", "/v1/secret/data/k")
    assert r.status == 200
    assert RFC3339_FRAC.match(r.json["data"]["metadata"]["deletion_time"])


def test_delete_version_after_expires_on_injected_clock() -> None:
    """KV2-AC-135: a version whose deletion_time passes on the server clock reads as deleted."""
    now = [1000.0]
    with DevServer(clock=lambda: now[0]) as srv:
        raw(srv, "POST", "/v1/secret/metadata/k", {"delete_version_after": "10s"})
        srv.put("k", {"a": 1})
        assert raw(srv, "GET", "/v1/secret/data/k").status == 200
        now[0] += 11
        r = raw(srv, "GET", "/v1/secret/data/k")
        assert r.status == 404 and r.json["data"]["data"] is None


def test_config_endpoint(srv: DevServer) -> None:
    """KV2-AC-134: mount config read/write (204)."""
    assert raw(srv, "POST", "/v1/secret/config", {"max_versions": 3}).status == 204
    cfg = raw(srv, "GET", "/v1/secret/config").json["data"]
    expected = {"cas_required": False, "delete_version_after": "0s", "max_versions": 3}
    if srv.flavor == "openbao":  # OpenBao's extra key (measured, KV2-AC-342)
        expected["metadata_cas_required"] = False
    assert cfg == expected


def test_patch_merge(srv: DevServer) -> None:
    """KV2-AC-151: PATCH needs application/merge-patch+json and writes a merged version."""
    srv.put("k", {"a": 1, "b": 2})
    body = json.dumps({"data": {"b": None, "c": 3}}).encode()
    r = raw(
        srv,
        "PATCH",
        "/v1/secret/data/k",
        body,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status == 200 and r.json["data"]["version"] == 2
    assert srv.read("k") == {"a": 1, "c": 3}
    assert raw(srv, "PATCH", "/v1/secret/data/k", body).status == 415
    r = raw(
        srv,
        "PATCH",
        "/v1/secret/data/none",
        body,
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status == 404
    # hvac's patch() is read + write-with-cas (§6.4); it calls read_secret_version without
    # raise_on_deleted_version, hence hvac's own DeprecationWarning.
    with pytest.warns(DeprecationWarning):
        client(srv).secrets.kv.v2.patch("k", {"d": 4})
    assert srv.read("k") == {"a": 1, "c": 3, "d": 4}


def test_subkeys(srv: DevServer) -> None:
    """KV2-AC-134: subkeys returns the structure with null leaves."""
    srv.put("k", {"a": {"b": 1}, "c": 2})
    r = raw(srv, "GET", "/v1/secret/subkeys/k")
    assert r.json["data"]["subkeys"] == {"a": {"b": None}, "c": None}


def test_mount_root_and_v1_style_paths(vsrv: DevServer) -> None:
    """KV2-AC-150: mount-root and v1-style paths give the raw 404 with the plugin warning."""
    r = raw(vsrv, "GET", "/v1/secret/data")
    assert r.status == 404
    assert r.json["warnings"] == [
        "Non-listing operations on the root of a K/V v2 mount are not supported."
    ]
    r = raw(vsrv, "GET", "/v1/secret/foo")
    assert r.status == 404 and r.json["data"] is None
    cli = "bao" if vsrv.flavor == "openbao" else "vault"
    assert f"use '{cli} kv get'" in r.json["warnings"][0]


def test_no_mount(vsrv: DevServer) -> None:
    """KV2-AC-150: an unknown mount is 404 "no handler for route" for root, 403 otherwise."""
    r = raw(vsrv, "GET", "/v1/nomount/data/x")
    assert r.status == 404
    assert r.json["errors"] == ['no handler for route "nomount/data/x". route entry not found.']
    tok = vsrv.create_token(["default"])
    assert raw(vsrv, "GET", "/v1/nomount/data/x", token=tok).status == 403


def test_kv1_mount(vsrv: DevServer) -> None:
    """KV2-AC-147: a KV v1 mount reads unversioned data with the 768h lease (§2.8)."""
    vsrv.add_mount("kv1", version=1)
    assert raw(vsrv, "POST", "/v1/kv1/app", {"a": "b"}).status == 204
    r = raw(vsrv, "GET", "/v1/kv1/app")
    assert r.json["data"] == {"a": "b"} and r.json["lease_duration"] == 2764800
    assert raw(vsrv, "GET", "/v1/kv1/data/app").status == 404
    assert raw(vsrv, "LIST", "/v1/kv1/").json["data"]["keys"] == ["app"]
    c = client(vsrv)
    assert c.secrets.kv.v1.read_secret("app", mount_point="kv1")["data"] == {"a": "b"}


def test_other_mounts_and_nested_mount_paths(vsrv: DevServer) -> None:
    """KV2-AC-147: extra KV v2 mounts, including ones whose path contains '/'."""
    vsrv.add_mount("team/kv")
    vsrv.put("x", {"a": 1}, mount="team/kv")
    c = client(vsrv)
    assert read(c, "x", mount_point="team/kv")["data"]["data"] == {"a": 1}
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(c, "x")


def test_unicode_and_html_escaping(srv: DevServer) -> None:
    """KV2-AC-131: values round-trip; Go escapes <, >, & in JSON strings."""
    value = {"pw": "<a&b>é✓", "n": 1.5, "nested": {"l": [1, None, True]}}
    srv.put("k", value)
    r = raw(srv, "GET", "/v1/secret/data/k")
    assert b"\\u003ca\\u0026b\\u003e" in r.body
    assert r.json["data"]["data"] == value
    assert read(client(srv), "k")["data"]["data"] == value
