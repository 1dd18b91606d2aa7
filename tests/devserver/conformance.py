"""One request script, run against the real OpenBao server and the dev server, and compared.

The script (``SCRIPT``) is data: each ``Step`` is a method, a path under ``/v1/``, a body, the
token to send and an optional namespace. ``run_script`` plays it against one server and keeps
each answer; ``compare`` reports, per step, every difference in:

* the status code and the Content-Type header;
* the JSON shape: the key SET of every object, recursively, and the JSON type of every value
  (object, array, string, number, bool, null); arrays compare element by element;
* the ``errors`` and ``warnings`` texts, exactly;
* the values a step names in ``values`` (dotted paths), exactly, with numbers compared by the
  literal text the server wrote (``1.50`` is not ``1.5``).

Values that differ by nature (request ids, timestamps, accessors, token ids) are compared by
type only. ``KNOWN`` lists the differences we accept, each with its reason; docs/dev-server.md
("Measured against the real OpenBao server") lists the same ones. Tokens and ids that differ
per server are captured into per-server variables (``save``) and used as ``$name``.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from kv2render import jsonnum
from tests.realbao import BaoServer

ROOT = "root"
BAD_TOKEN = "hvs.CAESIconformance-not-a-token"
ROLE_ID = "conf-role-id-1"
SECRET_ID = "conf-secret-id-1"
USER, PASSWORD = "alice", "conf-password-1"
JWT_AUDIENCE = "kv2render-conformance"
APP_POLICY_HCL = (
    'path "secret/data/conf/*" { capabilities = ["read"] }\n'
    'path "secret/metadata/conf/*" { capabilities = ["list", "read"] }\n'
)
APP_POLICY_RULES = {"secret/data/conf/*": ["read"], "secret/metadata/conf/*": ["list", "read"]}

# Number literals as a client may write them; the real server's answer decides what a read
# gives back (normalised by the KV v2 engine, see docs/dev-server.md).
NUMBERS_BODY = (
    '{"data":{"a":1.50,"b":1e3,"c":1.5e3,"d":1E3,"e":0.1,"f":-0,"g":-0.0,'
    '"h":12345678901234567890,"i":9007199254740993,"j":1e21,"k":1e20,"l":1e-7,"m":0.000001,'
    '"n":100,"o":1.0,"p":3.14159265358979323846,"q":2.50e-3,"r":-1.5e3,"s":1e-400,'
    '"t":123456789012345678901234567890,"u":[2.50,{"x":3e0}],"v":"1.50","w":true,"x":null}}'
)


@dataclass(frozen=True)
class Step:
    """One request. ``token``: "root", "none", "bad" or "$var"; body: dict (JSON) or raw text."""

    name: str
    method: str
    path: str
    body: Any = None
    token: str = ROOT
    namespace: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    values: tuple[str, ...] = ()
    save: tuple[tuple[str, str], ...] = ()
    # (regex, replacement) applied to errors/warnings texts of both answers before comparing:
    # only for parts that depend on timing, and narrow enough to still check the format.
    mask: tuple[tuple[str, str], ...] = ()


def _kv(name: str, method: str, path: str, body: Any = None, **kw: Any) -> Step:
    return Step(name, method, path, body, **kw)


SCRIPT: tuple[Step, ...] = (
    # ---- KV v2 writes, cas and versions
    _kv(
        "write v1",
        "POST",
        "secret/data/conf/app",
        {"data": {"password": "p1", "port": 5432, "nested": {"a": [1, "x"]}}},
        values=("data.version", "data.destroyed", "data.deletion_time", "data.custom_metadata"),
    ),
    _kv(
        "write v2 with cas=1",
        "PUT",
        "secret/data/conf/app",
        {"data": {"password": "p2"}, "options": {"cas": 1}},
        values=("data.version",),
    ),
    _kv(
        "write with a wrong cas",
        "POST",
        "secret/data/conf/app",
        {"data": {"password": "p3"}, "options": {"cas": 1}},
    ),
    _kv(
        "write with cas=0 on an existing key",
        "POST",
        "secret/data/conf/app",
        {"data": {"password": "p3"}, "options": {"cas": 0}},
    ),
    _kv(
        "write with a fractional cas",
        "POST",
        "secret/data/conf/app",
        {"data": {"password": "p3"}, "options": {"cas": 1.5}},
    ),
    _kv(
        "write with cas on a new key",
        "POST",
        "secret/data/conf/cas-new",
        {"data": {"k": "v"}, "options": {"cas": 0}},
        values=("data.version",),
    ),
    _kv(
        "read latest", "GET", "secret/data/conf/app", values=("data.data", "data.metadata.version")
    ),
    _kv(
        "read version 1",
        "GET",
        "secret/data/conf/app?version=1",
        values=("data.data", "data.metadata.version", "data.metadata.destroyed"),
    ),
    _kv("read version 0 (latest)", "GET", "secret/data/conf/app?version=0", values=("data.data",)),
    _kv("read a version never written", "GET", "secret/data/conf/app?version=99"),
    _kv("read a non-numeric version", "GET", "secret/data/conf/app?version=abc"),
    _kv("read a missing key", "GET", "secret/data/conf/missing"),
    _kv("subkeys", "GET", "secret/subkeys/conf/app", values=("data.subkeys",)),
    _kv("mount config", "GET", "secret/config", values=("data",)),
    # ---- numbers
    _kv("write number literals", "POST", "secret/data/conf/numbers", NUMBERS_BODY),
    _kv("read number literals", "GET", "secret/data/conf/numbers", values=("data.data",)),
    _kv(
        "write a number beyond float64",
        "POST",
        "secret/data/conf/numbers",
        '{"data":{"big":1e400}}',
    ),
    _kv(
        "patch with number literals",
        "PATCH",
        "secret/data/conf/numbers",
        '{"data":{"a":7.50,"y":2e2}}',
        headers=(("Content-Type", "application/merge-patch+json"),),
        values=("data.version",),
    ),
    _kv("read patched numbers", "GET", "secret/data/conf/numbers", values=("data.data",)),
    _kv(
        "patch without the merge-patch content type",
        "PATCH",
        "secret/data/conf/numbers",
        {"data": {"a": 1}},
        headers=(("Content-Type", "application/json"),),
    ),
    _kv(
        "patch a missing key",
        "PATCH",
        "secret/data/conf/missing",
        {"data": {"a": 1}},
        headers=(("Content-Type", "application/merge-patch+json"),),
    ),
    # ---- soft delete, undelete, destroy
    _kv("soft delete latest", "DELETE", "secret/data/conf/app"),
    _kv(
        "read the soft-deleted latest",
        "GET",
        "secret/data/conf/app",
        values=("data.data", "data.metadata.version", "data.metadata.destroyed"),
    ),
    _kv("soft delete version 1", "POST", "secret/delete/conf/app", {"versions": [1]}),
    _kv(
        "read soft-deleted version 1",
        "GET",
        "secret/data/conf/app?version=1",
        values=("data.data", "data.metadata.version"),
    ),
    _kv("delete versions without versions", "POST", "secret/delete/conf/app", {}),
    _kv("undelete versions 1 and 2", "POST", "secret/undelete/conf/app", {"versions": [1, 2]}),
    _kv(
        "read undeleted version 1",
        "GET",
        "secret/data/conf/app?version=1",
        values=("data.data", "data.metadata.deletion_time"),
    ),
    _kv("undelete without versions", "POST", "secret/undelete/conf/app", {}),
    _kv("destroy version 1", "POST", "secret/destroy/conf/app", {"versions": [1]}),
    _kv(
        "read destroyed version 1",
        "GET",
        "secret/data/conf/app?version=1",
        values=("data.data", "data.metadata.destroyed", "data.metadata.version"),
    ),
    _kv("destroy without versions", "POST", "secret/destroy/conf/app", {}),
    _kv("GET on destroy/", "GET", "secret/destroy/conf/app"),
    _kv("DELETE on a key never written", "DELETE", "secret/data/conf/never"),
    # ---- metadata
    _kv(
        "metadata read",
        "GET",
        "secret/metadata/conf/app",
        values=(
            "data.current_version",
            "data.oldest_version",
            "data.max_versions",
            "data.cas_required",
            "data.delete_version_after",
            "data.custom_metadata",
            "data.versions.1.destroyed",
            "data.versions.2.destroyed",
        ),
    ),
    _kv(
        "metadata write",
        "POST",
        "secret/metadata/conf/app",
        {"max_versions": 5, "cas_required": True, "custom_metadata": {"owner": "team-a"}},
    ),
    _kv(
        "metadata read after write",
        "GET",
        "secret/metadata/conf/app",
        values=(
            "data.max_versions",
            "data.cas_required",
            "data.custom_metadata",
            "data.current_version",
        ),
    ),
    _kv(
        "write without cas when cas is required",
        "POST",
        "secret/data/conf/app",
        {"data": {"password": "p4"}},
    ),
    _kv(
        "write with cas when cas is required",
        "POST",
        "secret/data/conf/app",
        {"data": {"password": "p4"}, "options": {"cas": 2}},
        values=("data.version", "data.custom_metadata"),
    ),
    _kv(
        "metadata write with a bad max_versions",
        "POST",
        "secret/metadata/conf/app",
        {"max_versions": "many"},
    ),
    _kv(
        "metadata write with a bad delete_version_after",
        "POST",
        "secret/metadata/conf/app",
        {"delete_version_after": "soon"},
    ),
    _kv(
        "metadata write with non-string custom_metadata",
        "POST",
        "secret/metadata/conf/app",
        {"custom_metadata": {"n": 1}},
    ),
    _kv("metadata read of a missing key", "GET", "secret/metadata/conf/missing"),
    # ---- LIST
    _kv("LIST verb", "LIST", "secret/metadata/conf", values=("data.keys",)),
    _kv("LIST verb with a trailing slash", "LIST", "secret/metadata/conf/", values=("data.keys",)),
    _kv("GET ?list=true", "GET", "secret/metadata/conf?list=true", values=("data.keys",)),
    _kv("LIST the mount root", "LIST", "secret/metadata/", values=("data.keys",)),
    _kv("LIST an empty prefix", "LIST", "secret/metadata/conf-nothing-here"),
    _kv("LIST on data/", "LIST", "secret/data/conf"),
    # ---- detailed-metadata listing (issue 18, KV2-AC-504): keys + each key's metadata
    _kv(
        "detailed-metadata GET ?list=true",
        "GET",
        "secret/detailed-metadata/conf/?list=true",
        values=("data.keys",),
    ),
    _kv(
        "detailed-metadata LIST verb",
        "LIST",
        "secret/detailed-metadata/conf",
        values=("data.keys",),
    ),
    _kv(
        "detailed-metadata one page",
        "GET",
        "secret/detailed-metadata/conf/?list=true&limit=1",
        values=("data.keys",),
    ),
    _kv(
        "detailed-metadata after a key",
        "GET",
        "secret/detailed-metadata/conf/?list=true&limit=2&after=app",
        values=("data.keys",),
    ),
    _kv(
        "detailed-metadata after the last key",
        "GET",
        "secret/detailed-metadata/conf/?list=true&after=zzz",
    ),
    _kv(
        "detailed-metadata of an empty folder",
        "GET",
        "secret/detailed-metadata/conf-nothing-here/?list=true",
    ),
    _kv("detailed-metadata read", "GET", "secret/detailed-metadata/conf/app"),
    _kv(
        "detailed-metadata with a bad limit",
        "GET",
        "secret/detailed-metadata/conf/?list=true&limit=abc",
    ),
    # ---- metadata delete
    _kv("metadata delete", "DELETE", "secret/metadata/conf/cas-new"),
    _kv("read after metadata delete", "GET", "secret/data/conf/cas-new"),
    _kv("metadata delete of a missing key", "DELETE", "secret/metadata/conf/never"),
    # ---- bad requests
    _kv("write without data", "POST", "secret/data/conf/nodata", {"foo": "bar"}),
    _kv("write data that is not an object", "POST", "secret/data/conf/nodata", {"data": "x"}),
    _kv("write a body that is not JSON", "POST", "secret/data/conf/bad", "{not json"),
    _kv("write a JSON array body", "POST", "secret/data/conf/bad", "[1,2]"),
    _kv("write an empty body", "POST", "secret/data/conf/bad", ""),
    _kv("write to a path ending in /", "POST", "secret/data/conf/dir/", {"data": {"a": "b"}}),
    _kv("GET the data/ root", "GET", "secret/data/"),
    _kv("GET an invalid KV v2 path", "GET", "secret/conf/app"),
    _kv("GET an unknown mount", "GET", "nomount/data/x"),
    _kv("unknown HTTP method", "FROB", "secret/data/conf/app"),
    # ---- ACL
    _kv("read without a token", "GET", "secret/data/conf/app", token="none"),
    _kv("write without a token", "POST", "secret/data/conf/x", {"data": {"a": "b"}}, token="none"),
    _kv("LIST without a token", "LIST", "secret/metadata/conf", token="none"),
    _kv("read with a bad token", "GET", "secret/data/conf/app", token="bad"),
    _kv("lookup-self with a bad token", "GET", "auth/token/lookup-self", token="bad"),
    _kv("unknown mount without a token", "GET", "nomount/data/x", token="none"),
    # ---- logins
    _kv(
        "approle login",
        "POST",
        "auth/approle/login",
        {"role_id": ROLE_ID, "secret_id": SECRET_ID},
        token="none",
        values=(
            "auth.policies",
            "auth.token_policies",
            "auth.metadata",
            "auth.lease_duration",
            "auth.renewable",
            "auth.token_type",
            "auth.orphan",
            "auth.num_uses",
            "data",
        ),
        save=(("approle", "auth.client_token"),),
    ),
    _kv(
        "approle login with a wrong secret_id",
        "POST",
        "auth/approle/login",
        {"role_id": ROLE_ID, "secret_id": "wrong"},
        token="none",
    ),
    _kv(
        "approle login with an unknown role_id",
        "POST",
        "auth/approle/login",
        {"role_id": "nobody", "secret_id": SECRET_ID},
        token="none",
    ),
    _kv(
        "approle login without role_id",
        "POST",
        "auth/approle/login",
        {"secret_id": SECRET_ID},
        token="none",
    ),
    _kv("approle login with GET", "GET", "auth/approle/login", token="none"),
    _kv(
        "userpass login",
        "POST",
        f"auth/userpass/login/{USER}",
        {"password": PASSWORD},
        token="none",
        values=(
            "auth.policies",
            "auth.token_policies",
            "auth.metadata",
            "auth.renewable",
            "auth.token_type",
            "auth.orphan",
        ),
        save=(("userpass", "auth.client_token"),),
    ),
    _kv(
        "userpass login with a wrong password",
        "POST",
        f"auth/userpass/login/{USER}",
        {"password": "wrong"},
        token="none",
    ),
    _kv(
        "userpass login of an unknown user",
        "POST",
        "auth/userpass/login/nobody",
        {"password": PASSWORD},
        token="none",
    ),
    _kv(
        "jwt login",
        "POST",
        "auth/jwt/login",
        {"role": "conf", "jwt": "$jwt"},
        token="none",
        values=(
            "auth.policies",
            "auth.token_policies",
            "auth.metadata",
            "auth.renewable",
            "auth.token_type",
            "auth.orphan",
        ),
        save=(("jwt_token", "auth.client_token"),),
    ),
    _kv(
        "jwt login with an unknown role",
        "POST",
        "auth/jwt/login",
        {"role": "nobody", "jwt": "$jwt"},
        token="none",
    ),
    _kv(
        "jwt login with a JWT that is not in the seed or signed",
        "POST",
        "auth/jwt/login",
        {"role": "conf", "jwt": "$bad_jwt"},
        token="none",
    ),
    # ---- tokens from logins, policies
    _kv(
        "read allowed by policy",
        "GET",
        "secret/data/conf/app",
        token="$approle",
        values=("data.data",),
    ),
    _kv("read denied by policy", "GET", "secret/data/other/app", token="$approle"),
    _kv(
        "write denied by policy",
        "POST",
        "secret/data/conf/app",
        {"data": {"a": "b"}},
        token="$approle",
    ),
    _kv("LIST allowed by policy", "LIST", "secret/metadata/conf/", token="$approle"),
    _kv(
        "detailed-metadata without list in the policy",
        "GET",
        "secret/detailed-metadata/conf/?list=true",
        token="$approle",
    ),
    _kv("read allowed for userpass", "GET", "secret/data/conf/app", token="$userpass"),
    _kv("read allowed for jwt", "GET", "secret/data/conf/app", token="$jwt_token"),
    # ---- auth/token
    _kv(
        "lookup-self root",
        "GET",
        "auth/token/lookup-self",
        values=(
            "data.policies",
            "data.path",
            "data.display_name",
            "data.orphan",
            "data.ttl",
            "data.creation_ttl",
            "data.explicit_max_ttl",
            "data.num_uses",
            "data.expire_time",
            "data.meta",
            "data.type",
            "data.id",
        ),
    ),
    _kv(
        "lookup-self approle",
        "GET",
        "auth/token/lookup-self",
        token="$approle",
        values=(
            "data.policies",
            "data.path",
            "data.display_name",
            "data.orphan",
            "data.creation_ttl",
            "data.meta",
            "data.type",
            "data.renewable",
        ),
    ),
    _kv("lookup-self by POST", "POST", "auth/token/lookup-self", {}, token="$approle"),
    _kv(
        "token create",
        "POST",
        "auth/token/create",
        {"policies": ["app"], "ttl": "1h", "meta": {"purpose": "conformance"}},
        values=(
            "auth.policies",
            "auth.token_policies",
            "auth.metadata",
            "auth.lease_duration",
            "auth.renewable",
            "auth.token_type",
            "auth.orphan",
            "auth.num_uses",
        ),
        save=(("child", "auth.client_token"),),
    ),
    _kv(
        "token create orphan, limited uses",
        "POST",
        "auth/token/create-orphan",
        {"policies": ["app"], "ttl": "10m", "num_uses": 3, "renewable": False},
        values=(
            "auth.policies",
            "auth.lease_duration",
            "auth.renewable",
            "auth.orphan",
            "auth.num_uses",
        ),
    ),
    _kv(
        "token create by a token without create rights",
        "POST",
        "auth/token/create",
        {"policies": ["app"]},
        token="$approle",
    ),
    _kv("token create with a bad ttl", "POST", "auth/token/create", {"ttl": "forever"}),
    _kv(
        "lookup-self child",
        "GET",
        "auth/token/lookup-self",
        token="$child",
        values=(
            "data.policies",
            "data.path",
            "data.display_name",
            "data.orphan",
            "data.creation_ttl",
            "data.meta",
            "data.renewable",
            "data.num_uses",
        ),
    ),
    _kv(
        "token lookup of the child by root",
        "POST",
        "auth/token/lookup",
        {"token": "$child"},
        values=("data.policies", "data.path", "data.meta"),
    ),
    _kv(
        "renew-self child",
        "POST",
        "auth/token/renew-self",
        {"increment": "30m"},
        token="$child",
        values=("auth.lease_duration", "auth.renewable", "auth.policies", "auth.metadata"),
    ),
    _kv(
        "renew-self child without a body",
        "POST",
        "auth/token/renew-self",
        token="$child",
        values=("auth.renewable", "auth.policies"),
    ),
    _kv("renew-self root", "POST", "auth/token/renew-self", {}),
    _kv("renew-self with GET", "GET", "auth/token/renew-self", token="$child"),
    _kv("revoke-self child", "POST", "auth/token/revoke-self", token="$child"),
    _kv("lookup-self after revoke-self", "GET", "auth/token/lookup-self", token="$child"),
    _kv("read after revoke-self", "GET", "secret/data/conf/app", token="$child"),
    _kv("revoke-self userpass", "POST", "auth/token/revoke-self", {}, token="$userpass"),
    _kv("unknown auth/token path", "GET", "auth/token/nothing"),
    # ---- mount roots, with and without the slash
    _kv("GET the data root without a slash", "GET", "secret/data"),
    _kv("GET the metadata/ root", "GET", "secret/metadata/"),
    _kv("POST to data/", "POST", "secret/data/", {"data": {"a": "b"}}),
    _kv("POST to data without a slash", "POST", "secret/data", {"data": {"a": "b"}}),
    _kv("DELETE data/", "DELETE", "secret/data/"),
    _kv("DELETE metadata/", "DELETE", "secret/metadata/"),
    # ---- more bad requests
    _kv("write a JSON string body", "POST", "secret/data/conf/bad", '"text"'),
    _kv("write a JSON null body", "POST", "secret/data/conf/bad", "null"),
    _kv("write with data null", "POST", "secret/data/conf/null", {"data": None}),
    _kv("read data written as null", "GET", "secret/data/conf/null", values=("data.data",)),
    _kv("write with data as an array", "POST", "secret/data/conf/bad", {"data": [1]}),
    _kv("write with data as nested arrays", "POST", "secret/data/conf/bad", {"data": [[1]]}),
    _kv(
        "write with data as an array of objects",
        "POST",
        "secret/data/conf/merged",
        {"data": [{"a": 1}, [{"b": "x"}]]},
    ),
    _kv("read data written as an array", "GET", "secret/data/conf/merged", values=("data.data",)),
    _kv(
        "write a number beyond float64 in options",
        "POST",
        "secret/data/conf/bad",
        '{"data":{"a":"b"},"options":{"cas":1e400}}',
    ),
    _kv(
        "write a body that is not JSON without a token",
        "POST",
        "secret/data/conf/bad",
        "{not json",
        token="none",
    ),
    _kv(
        "write with cas as a string",
        "POST",
        "secret/data/conf/cas-str",
        {"data": {"a": "b"}, "options": {"cas": "0"}},
        values=("data.version",),
    ),
    _kv(
        "write with cas null on an existing key",
        "POST",
        "secret/data/conf/cas-str",
        {"data": {"a": "b"}, "options": {"cas": None}},
    ),
    _kv(
        "metadata write with custom_metadata true and a number",
        "POST",
        "secret/metadata/conf/cm",
        '{"custom_metadata":{"b":true,"f":1.50}}',
    ),
    _kv(
        "metadata read of converted custom_metadata",
        "GET",
        "secret/metadata/conf/cm",
        values=("data.custom_metadata", "data.current_version", "data.versions"),
    ),
    _kv(
        "metadata write with an empty custom_metadata value",
        "POST",
        "secret/metadata/conf/cm",
        {"custom_metadata": {"e": ""}},
    ),
    _kv(
        "metadata write with a nested custom_metadata value",
        "POST",
        "secret/metadata/conf/cm",
        {"custom_metadata": {"o": {"x": "y"}}},
    ),
    _kv(
        "metadata write with custom_metadata not an object",
        "POST",
        "secret/metadata/conf/cm",
        {"custom_metadata": "text"},
    ),
    _kv(
        "read data of a metadata-only key",
        "GET",
        "secret/data/conf/cm",
    ),
    # ---- more logins
    _kv(
        "approle login without secret_id",
        "POST",
        "auth/approle/login",
        {"role_id": ROLE_ID},
        token="none",
    ),
    _kv("userpass login with GET", "GET", f"auth/userpass/login/{USER}", token="none"),
    _kv(
        "userpass login without a password",
        "POST",
        f"auth/userpass/login/{USER}",
        {},
        token="none",
    ),
    _kv("jwt login with GET", "GET", "auth/jwt/login", token="none"),
    _kv("jwt login without a role", "POST", "auth/jwt/login", {"jwt": "$jwt"}, token="none"),
    _kv("jwt login without a jwt", "POST", "auth/jwt/login", {"role": "conf"}, token="none"),
    _kv("login at an auth mount never enabled", "POST", "auth/nothing/login", {}, token="none"),
    # ---- namespaces (OpenBao 2.3+)
    _kv(
        "write in a namespace by header",
        "POST",
        "secret/data/conf/ns-app",
        {"data": {"where": "team-a"}},
        namespace="team-a",
        values=("data.version",),
    ),
    _kv(
        "read in a namespace by path prefix",
        "GET",
        "team-a/secret/data/conf/ns-app",
        values=("data.data",),
    ),
    _kv(
        "the root namespace does not see it",
        "GET",
        "secret/data/conf/ns-app",
    ),
    _kv(
        "LIST in a namespace",
        "LIST",
        "secret/metadata/conf",
        namespace="team-a",
        values=("data.keys",),
    ),
    _kv("an unknown namespace", "GET", "secret/data/conf/app", namespace="nope"),
    # ---- mount discovery (kv2render and Vault Agent ask this first) and sys
    _kv(
        "mount discovery as root",
        "GET",
        "sys/internal/ui/mounts/secret/conf/app",
        values=("data.path", "data.type", "data.options", "data.local", "data.seal_wrap"),
    ),
    _kv(
        "mount discovery with a policy token",
        "GET",
        "sys/internal/ui/mounts/secret/conf/app",
        token="$approle",
        values=("data.path", "data.type", "data.options"),
    ),
    _kv("mount discovery without a token", "GET", "sys/internal/ui/mounts/secret/x", token="none"),
    _kv("mount discovery of an unknown mount", "GET", "sys/internal/ui/mounts/nomount/x"),
    _kv(
        "mount discovery in a namespace",
        "GET",
        "sys/internal/ui/mounts/secret/conf/ns-app",
        namespace="team-a",
        values=("data.path", "data.type", "data.options"),
    ),
    _kv(
        "health",
        "GET",
        "sys/health",
        token="none",
        values=("initialized", "sealed", "standby"),
    ),
    _kv("seal status", "GET", "sys/seal-status", token="none", values=("sealed", "initialized")),
    # ---- KV v1
    _kv("KV v1 write", "POST", "kv1/conf/app", '{"password":"p1","n":1.50,"m":1e3}'),
    _kv("KV v1 read", "GET", "kv1/conf/app", values=("data", "lease_duration")),
    _kv("KV v1 LIST", "LIST", "kv1/conf", values=("data.keys",)),
    _kv("KV v1 read missing", "GET", "kv1/conf/missing"),
    _kv("KV v1 delete", "DELETE", "kv1/conf/app"),
    _kv("KV v1 read after delete", "GET", "kv1/conf/app"),
    # ---- token renew and create edge cases
    _kv(
        "token create with num_uses",
        "POST",
        "auth/token/create",
        {"policies": ["app"], "ttl": "5m", "num_uses": 2},
        values=("auth.num_uses", "auth.lease_duration"),
        save=(("two_uses", "auth.client_token"),),
    ),
    _kv("first use", "GET", "secret/data/conf/app", token="$two_uses", values=("data.data",)),
    _kv(
        "second use: lookup-self",
        "GET",
        "auth/token/lookup-self",
        token="$two_uses",
        values=("data.num_uses",),
    ),
    _kv("third use is refused", "GET", "secret/data/conf/app", token="$two_uses"),
    _kv(
        "token create not renewable",
        "POST",
        "auth/token/create",
        {"policies": ["app"], "ttl": "5m", "renewable": False},
        save=(("fixed", "auth.client_token"),),
    ),
    _kv(
        "renew-self of a token that is not renewable",
        "POST",
        "auth/token/renew-self",
        {},
        token="$fixed",
    ),
    _kv(
        "renew-self approle beyond max ttl",
        "POST",
        "auth/token/renew-self",
        {"increment": "100h"},
        token="$approle",
        values=("auth.renewable",),
        # what is left of the role's 4h max: "3h59m59s" unless a second went by
        mask=((r'max_ttl of "(4h|3h59m[0-5]?[0-9]s)"', 'max_ttl of "<about 4h>"'),),
    ),
)


# ---------------------------------------------------------------------------- known


@dataclass(frozen=True)
class Known:
    """A difference we accept: in the steps named (all when empty) and matching ``pattern``."""

    name: str
    reason: str
    pattern: str
    steps: tuple[str, ...] = ()

    def matches(self, step: str, diff: str) -> bool:
        return (not self.steps or step in self.steps) and re.fullmatch(
            self.pattern, diff
        ) is not None


KNOWN: tuple[Known, ...] = (
    Known(
        "json-syntax-error-text",
        "A body that is not JSON gets the same 400 and the same 'failed to decode JSON input: '"
        " prefix, but the rest is the parser's own words: Go's encoding/json scanner on the"
        " real server, Python's json module on the dev server. Re-implementing Go's scanner"
        " messages is out of proportion for a dev server.",
        r"errors: \[\"failed to decode JSON input: .*",
        ("write a body that is not JSON", "write a body that is not JSON without a token"),
    ),
    Known(
        "jwt-signature-not-verified",
        "The dev server never verifies JWT signatures: it accepts exactly the JWTs it was"
        " seeded with (add_jwt), so an unknown JWT gets the same 400 with the dev server's own"
        " text instead of OpenBao's signature-verification error.",
        r"errors: \[\"error validating token: .*",
        ("jwt login with a JWT that is not in the seed or signed",),
    ),
)


# ---------------------------------------------------------------------------- running


@dataclass
class Answer:
    status: int
    text: str
    body: Any  # decoded JSON (numbers keep their literal), None without a body
    is_json: bool
    content_type: str | None = None


@dataclass
class Target:
    """One server: base URL and the per-server variables ($approle, $jwt, ...)."""

    name: str
    url: str
    variables: dict[str, str] = field(default_factory=dict)


def _substitute(value: Any, variables: Mapping[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("$"):
        return variables[value[1:]]
    if isinstance(value, dict):
        return {k: _substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables) for v in value]
    return value


def _token(step: Step, target: Target) -> str | None:
    if step.token == "none":
        return None
    if step.token == "bad":
        return BAD_TOKEN
    if step.token == ROOT:
        return ROOT
    return target.variables[step.token[1:]]


def dig(obj: Any, path: str) -> Any:
    """obj at a dotted path; KeyError when absent."""
    for part in path.split(".") if path else ():
        if isinstance(obj, dict):
            obj = obj[part]
        elif isinstance(obj, list):
            obj = obj[int(part)]
        else:
            raise KeyError(path)
    return obj


def send(session: requests.Session, target: Target, step: Step) -> Answer:
    headers = dict(step.headers)
    token = _token(step, target)
    if token is not None:
        headers["X-Vault-Token"] = token
    if step.namespace:
        headers["X-Vault-Namespace"] = step.namespace
    data: bytes | None = None
    if isinstance(step.body, str):
        data = step.body.encode()
        headers.setdefault("Content-Type", "application/json")
    elif step.body is not None:
        data = json.dumps(_substitute(step.body, target.variables)).encode()
        headers.setdefault("Content-Type", "application/json")
    resp = session.request(
        step.method, f"{target.url}/v1/{step.path}", data=data, headers=headers, timeout=30
    )
    text = resp.text
    try:
        body = jsonnum.loads(text) if text.strip() else None
        is_json = body is not None
    except ValueError:
        body, is_json = None, False
    for var, path in step.save:
        try:
            target.variables[var] = str(dig(body, path))
        except (KeyError, IndexError, ValueError, TypeError):
            pass
    return Answer(resp.status_code, text, body, is_json, resp.headers.get("Content-Type"))


def run_script(target: Target, script: tuple[Step, ...] = SCRIPT) -> list[Answer]:
    with requests.Session() as session:
        return [send(session, target, step) for step in script]


# ---------------------------------------------------------------------------- comparing


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def canon(value: Any) -> Any:
    """A value with numbers as their literal text, for exact comparison."""
    text = jsonnum.number_text(value)
    if text is not None:
        return {"#number": text}
    if isinstance(value, dict):
        return {k: canon(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canon(v) for v in value]
    return value


def _show(value: Any) -> str:
    text = jsonnum.number_text(value)
    if text is not None:
        return text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{_show(value[k])}" for k in sorted(value)) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_show(v) for v in value) + "]"
    return json.dumps(value)


def shape_diffs(real: Any, dev: Any, where: str = "") -> list[str]:
    """Key sets and JSON types, recursively. Diff lines read ``<path>: <what>``."""
    label = where or "body"
    rt, dt = json_type(real), json_type(dev)
    if rt != dt:
        return [f"{label}: type {rt} (real) != {dt} (dev)"]
    out: list[str] = []
    if rt == "object":
        for key in sorted(set(real) - set(dev)):
            out.append(f"{_join(where, key)}: only on the real server")
        for key in sorted(set(dev) - set(real)):
            out.append(f"{_join(where, key)}: only on the dev server")
        for key in sorted(set(real) & set(dev)):
            out.extend(shape_diffs(real[key], dev[key], _join(where, key)))
    elif rt == "array":
        if len(real) != len(dev):
            out.append(f"{label}: length {len(real)} (real) != {len(dev)} (dev)")
        for i, (r, d) in enumerate(zip(real, dev, strict=False)):
            out.extend(shape_diffs(r, d, _join(where, str(i))))
    return out


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def step_diffs(step: Step, real: Answer, dev: Answer) -> list[str]:
    out: list[str] = []
    if real.status != dev.status:
        out.append(f"status: {real.status} (real) != {dev.status} (dev)")
    if real.content_type != dev.content_type:  # hvac compares it with == before reading errors
        out.append(f"content-type: {real.content_type} (real) != {dev.content_type} (dev)")
    if real.is_json != dev.is_json or (not real.is_json and real.text.strip() != dev.text.strip()):
        out.append(f"body: {real.text.strip()[:80]!r} (real) != {dev.text.strip()[:80]!r} (dev)")
    if not (real.is_json and dev.is_json):
        return out
    out.extend(shape_diffs(real.body, dev.body))
    for key in ("errors", "warnings"):
        r = _masked(step, real.body.get(key) if isinstance(real.body, dict) else None)
        d = _masked(step, dev.body.get(key) if isinstance(dev.body, dict) else None)
        if canon(r) != canon(d):
            out.append(f"{key}: {_show(r)} (real) != {_show(d)} (dev)")
    for path in step.values:
        r_val = _maybe(real.body, path)
        d_val = _maybe(dev.body, path)
        if canon(r_val) != canon(d_val):
            out.append(f"value {path}: {_show(r_val)} (real) != {_show(d_val)} (dev)")
    return out


def _masked(step: Step, texts: Any) -> Any:
    if not step.mask or not isinstance(texts, list):
        return texts
    out = []
    for text in texts:
        if isinstance(text, str):
            for pattern, replacement in step.mask:
                text = re.sub(pattern, replacement, text)
        out.append(text)
    return out


_MISSING = "<absent>"


def _maybe(obj: Any, path: str) -> Any:
    try:
        return dig(obj, path)
    except (KeyError, IndexError, ValueError, TypeError):
        return _MISSING


@dataclass
class Outcome:
    step: Step
    diffs: list[str]
    known: list[tuple[str, str]]  # (known name, diff)
    unexpected: list[str]


def compare(
    real: list[Answer],
    dev: list[Answer],
    script: tuple[Step, ...] = SCRIPT,
    known: tuple[Known, ...] = KNOWN,
) -> list[Outcome]:
    outcomes = []
    for step, r, d in zip(script, real, dev, strict=True):
        diffs = step_diffs(step, r, d)
        matched, unexpected = [], []
        for diff in diffs:
            hit = next((k for k in known if k.matches(step.name, diff)), None)
            if hit is None:
                unexpected.append(diff)
            else:
                matched.append((hit.name, diff))
        outcomes.append(Outcome(step, diffs, matched, unexpected))
    return outcomes


def summary(outcomes: list[Outcome], known: tuple[Known, ...] = KNOWN) -> dict[str, Any]:
    used = {name for o in outcomes for name, _ in o.known}
    return {
        "server": "OpenBao (bao server -dev) vs DevServer(flavor='openbao')",
        "steps": len(outcomes),
        "identical": sum(1 for o in outcomes if not o.diffs),
        "known_different": sum(1 for o in outcomes if o.diffs and not o.unexpected),
        "unexpected_different": sum(1 for o in outcomes if o.unexpected),
        "known": {
            k.name: [o.step.name for o in outcomes if any(n == k.name for n, _ in o.known)]
            for k in known
        },
        "stale_known": sorted(k.name for k in known if k.name not in used),
        "unexpected": {o.step.name: o.unexpected for o in outcomes if o.unexpected},
    }


# ---------------------------------------------------------------------------- set-up


def make_jwt_keys() -> tuple[Any, str]:
    """An RSA key and its public PEM, for the real server's jwt_validation_pubkeys."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return key, pem.decode()


def sign_jwt(key: Any, claims: Mapping[str, Any]) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(dict(claims)).encode())
    signing_input = f"{head}.{body}".encode()
    sig = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64(sig)}"


def jwt_claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": "conf-user",
        "aud": JWT_AUDIENCE,
        "iat": now,
        "nbf": now - 5,
        "exp": now + 600,
    }


def setup_real(bao: BaoServer, public_pem: str) -> None:
    """Policies, logins and a namespace on ``bao server -dev``."""
    bao.create_namespace("team-a")
    bao.enable_kv2("secret", namespace="team-a")  # waits until the KV v2 upgrade is done
    api = bao.api
    api("POST", "sys/mounts/kv1", {"type": "kv", "options": {"version": "1"}})
    api("PUT", "sys/policies/acl/app", {"policy": APP_POLICY_HCL})
    api("POST", "sys/auth/approle", {"type": "approle"})
    api(
        "POST",
        "auth/approle/role/conf",
        {"token_policies": ["app"], "token_ttl": "1h", "token_max_ttl": "4h"},
    )
    api("POST", "auth/approle/role/conf/role-id", {"role_id": ROLE_ID})
    api("POST", "auth/approle/role/conf/custom-secret-id", {"secret_id": SECRET_ID})
    api("POST", "sys/auth/userpass", {"type": "userpass"})
    api("POST", f"auth/userpass/users/{USER}", {"password": PASSWORD, "token_policies": ["app"]})
    api("POST", "sys/auth/jwt", {"type": "jwt"})
    api("POST", "auth/jwt/config", {"jwt_validation_pubkeys": [public_pem]})
    api(
        "POST",
        "auth/jwt/role/conf",
        {
            "role_type": "jwt",
            "user_claim": "sub",
            "bound_audiences": [JWT_AUDIENCE],
            "token_policies": ["app"],
        },
    )


def setup_dev(srv: Any, jwt: str) -> None:
    """The same policies, logins and namespace, seeded through the DevServer Python API."""
    srv.add_mount("secret", namespace="team-a")
    srv.add_mount("kv1", version=1)
    srv.add_policy("app", APP_POLICY_RULES)
    srv.add_approle("conf", ROLE_ID, SECRET_ID, ["app"], token_ttl=3600, token_max_ttl=4 * 3600)
    srv.add_userpass(USER, PASSWORD, ["app"])
    srv.add_jwt(jwt, "conf", ["app"], method="jwt")


__all__ = [
    "KNOWN",
    "SCRIPT",
    "Answer",
    "Known",
    "Step",
    "Target",
    "compare",
    "make_jwt_keys",
    "run_script",
    "setup_dev",
    "setup_real",
    "sign_jwt",
    "summary",
]
