"""Tokens, policies, logins, namespaces and mount discovery (kv2-wire.md §1.3, §3-§5)."""

from __future__ import annotations

import base64
import json

import hvac
import hvac.exceptions
import pytest

from kv2render.devserver import DevServer
from tests.devserver.helpers import client, raw, read

DENIED = ["1 error occurred:\n\t* permission denied\n\n"]


def _jwt(claims: dict[str, object]) -> str:
    def enc(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{enc({'alg': 'RS256'})}.{enc(claims)}.c2lnbmF0dXJl"


def test_policy_denial_multierror(srv: DevServer) -> None:
    """KV2-AC-136: a token without a policy for the path gets 403 in the multierror form."""
    srv.put("app/db", {"a": 1})
    srv.put("other/x", {"a": 1})
    srv.add_policy("app-read", {"secret/data/app/*": ["read"]})
    tok = srv.create_token(["app-read"])
    assert raw(srv, "GET", "/v1/secret/data/app/db", token=tok).status == 200
    r = raw(srv, "GET", "/v1/secret/data/other/x", token=tok)
    assert r.status == 403
    assert r.headers["Content-Type"] == "application/json"
    assert r.json["errors"] == DENIED
    # no write capability
    assert raw(srv, "POST", "/v1/secret/data/app/db", {"data": {}}, token=tok).status == 403
    with pytest.raises(hvac.exceptions.Forbidden, match="permission denied"):
        read(client(srv, tok), "other/x")


def test_policy_prefix_exact_plus_and_deny(vsrv: DevServer) -> None:
    """KV2-AC-136: trailing '/' and '*' match by prefix, '+' one segment, deny wins."""
    for p in ("app/a", "app/b", "app/sub/c", "exact", "exact2", "t1/db", "t2/db"):
        vsrv.put(p, {"a": 1})
    vsrv.add_policy(
        "p",
        {
            "secret/data/app/": ["read"],
            "secret/data/app/b": ["deny"],
            "secret/data/exact": ["read"],
            "secret/data/+/db": ["read"],
            "secret/metadata/app/*": ["list"],
        },
    )
    tok = vsrv.create_token(["p"])

    def status(path: str, method: str = "GET") -> int:
        return raw(vsrv, method, path, token=tok).status

    assert status("/v1/secret/data/app/a") == 200
    assert status("/v1/secret/data/app/sub/c") == 200
    assert status("/v1/secret/data/app/b") == 403
    assert status("/v1/secret/data/exact") == 200
    assert status("/v1/secret/data/exact2") == 403
    assert status("/v1/secret/data/t1/db") == 200
    assert status("/v1/secret/data/t2/db") == 200
    assert status("/v1/secret/metadata/app/", "LIST") == 200
    assert status("/v1/secret/metadata/", "LIST") == 403


def test_create_vs_update_capability(vsrv: DevServer) -> None:
    """KV2-AC-136: writing a new key needs create, an existing one update (existence check)."""
    vsrv.add_policy("c", {"secret/data/*": ["create"]})
    tok = vsrv.create_token(["c"])
    assert raw(vsrv, "POST", "/v1/secret/data/n", {"data": {"a": 1}}, token=tok).status == 200
    assert raw(vsrv, "POST", "/v1/secret/data/n", {"data": {"a": 2}}, token=tok).status == 403


def test_missing_invalid_revoked_token(srv: DevServer) -> None:
    """KV2-AC-139: no token / revoked token -> 403 (vault, openbao) or 401 (ovh)."""
    srv.put("k", {"a": 1})
    tok = srv.create_token(["root"])
    assert raw(srv, "GET", "/v1/secret/data/k", token=tok).status == 200
    srv.revoke_token(tok)
    denied = 401 if srv.flavor == "ovh" else 403
    r = raw(srv, "GET", "/v1/secret/data/k", token=tok)
    assert r.status == denied
    assert "permission denied" in r.json["errors"][0] or srv.flavor == "ovh"
    if srv.flavor == "vault":  # Vault >= PR #25953 adds "invalid token" (§1.3)
        assert "invalid token" in r.json["errors"][0]
    if srv.flavor == "openbao":
        # Measured on OpenBao 2.7.2 (KV2-AC-342): a bad token gets the bare text; only ACL
        # denials carry the multierror layout.
        assert r.json["errors"] == ["permission denied"]
    assert raw(srv, "GET", "/v1/secret/data/k", token=None).status == denied


def test_bearer_header_accepted(vsrv: DevServer) -> None:
    """KV2-AC-151: Authorization: Bearer works like X-Vault-Token (§1.1)."""
    vsrv.put("k", {"a": 1})
    r = raw(
        vsrv,
        "GET",
        "/v1/secret/data/k",
        token=None,
        headers={"Authorization": f"Bearer {vsrv.root_token}"},
    )
    assert r.status == 200


def test_lookup_self_shape(vsrv: DevServer) -> None:
    """KV2-AC-139: lookup-self fields (§4.1); root has no expiry."""
    c = client(vsrv)
    data = c.auth.token.lookup_self()["data"]
    for key in (
        "accessor",
        "creation_time",
        "creation_ttl",
        "display_name",
        "entity_id",
        "expire_time",
        "explicit_max_ttl",
        "id",
        "meta",
        "num_uses",
        "orphan",
        "path",
        "policies",
        "ttl",
        "type",
    ):
        assert key in data, key
    assert data["policies"] == ["root"] and data["expire_time"] is None and data["ttl"] == 0
    r = raw(vsrv, "GET", "/v1/auth/token/lookup-self")
    if vsrv.flavor == "vault":
        assert r.json["mount_type"] == "token"
    tok = vsrv.create_token(["default"], ttl=600)
    d = client(vsrv, tok).auth.token.lookup_self()["data"]
    assert d["creation_ttl"] == 600 and 598 <= d["ttl"] <= 600 and d["renewable"] is True
    assert d["expire_time"].endswith("Z") and "issue_time" in d
    assert d["policies"] == ["default"] and d["type"] == "service"


def test_ttl_expiry_on_injected_clock() -> None:
    """KV2-AC-139: token TTL is enforced on the injectable clock; renew-self extends it."""
    now = [100.0]
    with DevServer(clock=lambda: now[0]) as srv:
        srv.put("k", {"a": 1})
        tok = srv.create_token(["root"], ttl=60)
        now[0] += 59
        assert raw(srv, "GET", "/v1/auth/token/lookup-self", token=tok).json["data"]["ttl"] == 1
        r = raw(srv, "POST", "/v1/auth/token/renew-self", {"increment": "120s"}, token=tok)
        assert r.status == 200 and r.json["auth"]["lease_duration"] == 120
        assert r.json["data"] is None
        now[0] += 119
        assert raw(srv, "GET", "/v1/secret/data/k", token=tok).status == 200
        now[0] += 2
        assert raw(srv, "GET", "/v1/secret/data/k", token=tok).status == 403


def test_renew_self(vsrv: DevServer) -> None:
    """KV2-AC-139: renew-self returns an auth block; non-renewable -> 400 (§4.2)."""
    tok = vsrv.create_token(["default"], ttl=300)
    resp = client(vsrv, tok).auth.token.renew_self(increment="1h")
    assert resp["auth"]["client_token"] == tok and resp["auth"]["lease_duration"] == 3600
    fixed = vsrv.create_token(["default"], ttl=300, renewable=False)
    r = raw(vsrv, "POST", "/v1/auth/token/renew-self", {}, token=fixed)
    assert r.status == 400 and r.json["errors"] == ["lease is not renewable"]
    r = raw(vsrv, "POST", "/v1/auth/token/renew-self", {})  # root: no TTL
    assert r.status == 400
    capped = vsrv.create_token(["default"], ttl=30, explicit_max_ttl=60)
    r = raw(vsrv, "POST", "/v1/auth/token/renew-self", {"increment": 3600}, token=capped)
    assert r.json["auth"]["lease_duration"] <= 60 and "capped" in r.json["warnings"][0]


def test_revoke_self(vsrv: DevServer) -> None:
    """KV2-AC-139: revoke-self returns 204 and the token stops working."""
    tok = vsrv.create_token(["default"])
    r = raw(vsrv, "POST", "/v1/auth/token/revoke-self", token=tok)
    assert r.status == 204 and r.body == b""
    assert raw(vsrv, "GET", "/v1/auth/token/lookup-self", token=tok).status == 403
    assert client(vsrv, tok).is_authenticated() is False


def test_token_create(vsrv: DevServer) -> None:
    """KV2-AC-139: auth/token/create honours ttl, renewable, policies; subset rule for children."""
    vsrv.add_policy("p1", {"secret/data/*": ["read"]})
    c = client(vsrv)
    out = c.auth.token.create(policies=["p1"], ttl="10m", renewable=False)
    auth = out["auth"]
    assert auth["policies"] == ["default", "p1"] and auth["lease_duration"] == 600
    assert auth["renewable"] is False and auth["token_type"] == "service"
    # OpenBao 2.7.2 issues "s." tokens (measured, KV2-AC-342); Vault issues "hvs." ones.
    assert auth["client_token"].startswith("s." if vsrv.flavor == "openbao" else "hvs.")
    child = client(vsrv, auth["client_token"])
    assert child.auth.token.lookup_self()["data"]["ttl"] <= 600
    # a non-root parent needs create on auth/token/create, and children must be a subset
    vsrv.add_policy("creator", {"auth/token/create": ["create", "update"]})
    parent = vsrv.create_token(["creator"])
    r = raw(vsrv, "POST", "/v1/auth/token/create", {"policies": ["p1"]}, token=parent)
    assert r.status == 400 and r.json["errors"] == ["child policies must be subset of parent"]
    r = raw(vsrv, "POST", "/v1/auth/token/create", {"policies": ["creator"]}, token=parent)
    assert r.status == 200
    nobody = vsrv.create_token(["default"])
    assert raw(vsrv, "POST", "/v1/auth/token/create", {}, token=nobody).status == 403


def test_num_uses(vsrv: DevServer) -> None:
    """KV2-AC-139: a num_uses token dies after its last use."""
    vsrv.put("k", {"a": 1})
    tok = vsrv.create_token(["root"], num_uses=2)
    assert raw(vsrv, "GET", "/v1/secret/data/k", token=tok).status == 200
    assert raw(vsrv, "GET", "/v1/secret/data/k", token=tok).status == 200
    assert raw(vsrv, "GET", "/v1/secret/data/k", token=tok).status == 403


def test_approle_login(vsrv: DevServer) -> None:
    """KV2-AC-140: approle success (auth block, §5) and 400 failures."""
    vsrv.put("app/db", {"a": 1})
    vsrv.add_policy("app", {"secret/data/app/*": ["read"]})
    vsrv.add_approle("web", "role-1", "secret-1", policies=["app"], token_ttl=3600)
    c = client(vsrv, None)
    out = c.auth.approle.login(role_id="role-1", secret_id="secret-1")
    auth = out["auth"]
    assert out["data"] is None
    assert auth["metadata"] == {"role_name": "web"} and auth["lease_duration"] == 3600
    assert auth["policies"] == ["app", "default"] and auth["renewable"] is True
    assert auth["orphan"] is True and auth["entity_id"]
    assert list(auth) == [
        "client_token",
        "accessor",
        "policies",
        "token_policies",
        "metadata",
        "lease_duration",
        "renewable",
        "entity_id",
        "token_type",
        "orphan",
        "mfa_requirement",
        "num_uses",
    ]
    if vsrv.flavor == "vault":
        r = raw(
            vsrv, "POST", "/v1/auth/approle/login", {"role_id": "role-1", "secret_id": "secret-1"}
        )
        assert r.json["mount_type"] == ""
    assert read(c, "app/db")["data"]["data"] == {"a": 1}
    for body, msg in (
        ({"role_id": "role-1", "secret_id": "wrong"}, "invalid role or secret ID"),
        ({"role_id": "nope", "secret_id": "secret-1"}, "invalid role or secret ID"),
        ({"secret_id": "secret-1"}, "missing role_id"),
        ({"role_id": "role-1"}, "missing secret_id"),
    ):
        r = raw(vsrv, "POST", "/v1/auth/approle/login", body, token=None)
        # OpenBao 2.7.2 answers a missing role_id with 500 (measured, KV2-AC-342).
        status = 500 if vsrv.flavor == "openbao" and "role_id" not in body else 400
        assert (r.status, r.json["errors"]) == (status, [msg])
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client(vsrv, None).auth.approle.login(role_id="role-1", secret_id="bad")


def test_userpass_login(vsrv: DevServer) -> None:
    """KV2-AC-140: userpass success (lower-cased username) and 400 failure."""
    vsrv.add_userpass("Alice", "pw", policies=["default"])
    out = client(vsrv, None).auth.userpass.login("ALICE", "pw")
    assert out["auth"]["metadata"] == {"username": "alice"}
    r = raw(vsrv, "POST", "/v1/auth/userpass/login/alice", {"password": "x"}, token=None)
    assert (r.status, r.json["errors"]) == (400, ["invalid username or password"])


def test_kubernetes_login(vsrv: DevServer) -> None:
    """KV2-AC-141: kubernetes accepts only seeded JWTs; 403 for others, 400 unknown role."""
    jwt = _jwt(
        {
            "sub": "uid-1",
            "kubernetes.io/serviceaccount/namespace": "prod",
            "kubernetes.io/serviceaccount/service-account.name": "web",
        }
    )
    vsrv.add_jwt(jwt, "web-role", policies=["default"])
    out = client(vsrv, None).auth.kubernetes.login("web-role", jwt)
    meta = out["auth"]["metadata"]
    assert meta["role"] == "web-role" and meta["service_account_namespace"] == "prod"
    assert meta["service_account_name"] == "web"
    r = raw(
        vsrv, "POST", "/v1/auth/kubernetes/login", {"role": "web-role", "jwt": _jwt({})}, token=None
    )
    assert r.status == 403
    r = raw(vsrv, "POST", "/v1/auth/kubernetes/login", {"role": "x", "jwt": jwt}, token=None)
    assert (r.status, r.json["errors"]) == (400, ['invalid role name "x"'])


def test_jwt_login(vsrv: DevServer) -> None:
    """KV2-AC-141: jwt accepts only seeded JWTs, 400 otherwise; custom mount path."""
    jwt = _jwt({"sub": "ci"})
    vsrv.add_jwt(jwt, "ci", policies=["default"], method="jwt", mount="oidc-ci")
    out = client(vsrv, None).auth.jwt.jwt_login("ci", jwt, path="oidc-ci")
    assert out["auth"]["metadata"] == {"role": "ci"}
    r = raw(vsrv, "POST", "/v1/auth/oidc-ci/login", {"role": "ci", "jwt": "x.y.z"}, token=None)
    assert r.status == 400 and r.json["errors"][0].startswith("error validating token")
    r = raw(vsrv, "POST", "/v1/auth/oidc-ci/login", {"role": "zz", "jwt": jwt}, token=None)
    assert r.json["errors"] == ['role "zz" could not be found']


def test_login_wrong_method(vsrv: DevServer) -> None:
    """KV2-AC-150: GET on a login path is 405 unsupported operation."""
    vsrv.add_userpass("a", "b")
    r = raw(vsrv, "GET", "/v1/auth/userpass/login/a", token=None)
    assert r.status == 405 and "unsupported operation" in r.json["errors"][0]


def test_ui_mounts(vsrv: DevServer) -> None:
    """KV2-AC-138: sys/internal/ui/mounts/{path} gives path + options.version; 403 preflight."""
    vsrv.add_mount("kv1", version=1)
    d = raw(vsrv, "GET", "/v1/sys/internal/ui/mounts/secret/app/db").json["data"]
    assert d["path"] == "secret/" and d["options"] == {"version": "2"} and d["type"] == "kv"
    d = client(vsrv).adapter.get("/v1/sys/internal/ui/mounts/kv1/x")["data"]
    assert d["path"] == "kv1/" and d["options"]["version"] == "1"
    r = raw(vsrv, "GET", "/v1/sys/internal/ui/mounts/nomount")
    assert r.status == 403
    assert r.json["errors"] == [
        "preflight capability check returned 403, please ensure client's policies grant "
        'access to path "nomount/"'
    ]
    vsrv.add_policy("app", {"secret/data/app/*": ["read"]})
    tok = vsrv.create_token(["app"])
    assert raw(vsrv, "GET", "/v1/sys/internal/ui/mounts/secret/app", token=tok).status == 200
    assert raw(vsrv, "GET", "/v1/sys/internal/ui/mounts/kv1/x", token=tok).status == 403
    assert raw(vsrv, "GET", "/v1/sys/internal/ui/mounts/secret/x", token=None).status == 403
    listing = raw(vsrv, "GET", "/v1/sys/internal/ui/mounts").json["data"]
    assert set(listing["secret"]) == {"secret/", "kv1/"}


def test_sys_mounts_and_enable(vsrv: DevServer) -> None:
    """KV2-AC-138: sys/mounts lists (legacy top-level injection); hvac enables a kv-v2 mount."""
    c = client(vsrv)
    c.sys.enable_secrets_engine("kv", path="team", options={"version": "2"})
    mounts = c.sys.list_mounted_secrets_engines()
    assert mounts["data"]["team/"]["options"] == {"version": "2"}
    assert "secret/" in mounts  # injected at top level (§1.2)
    c.secrets.kv.v2.create_or_update_secret("x", {"a": 1}, mount_point="team")
    assert vsrv.read("x", mount="team") == {"a": 1}


def test_sys_health(vsrv: DevServer) -> None:
    """KV2-AC-136: sys/health answers unauthenticated; 503 when sealed."""
    assert raw(vsrv, "GET", "/v1/sys/health", token=None).json["sealed"] is False
    vsrv.faults.sealed = True
    assert raw(vsrv, "GET", "/v1/sys/health", token=None).status == 503
    assert raw(vsrv, "GET", "/v1/sys/seal-status", token=None).json["sealed"] is True


def test_namespaces_header_and_prefix(vsrv: DevServer) -> None:
    """KV2-AC-142: X-Vault-Namespace and the path prefix reach the same secret."""
    vsrv.add_namespace("team-a/child")
    vsrv.add_mount("secret", namespace="team-a/")
    vsrv.put("db", {"a": "ns"}, mount="team-a/secret")
    vsrv.put("db", {"a": "root"})
    by_header = raw(vsrv, "GET", "/v1/secret/data/db", headers={"X-Vault-Namespace": "team-a/"})
    by_prefix = raw(vsrv, "GET", "/v1/team-a/secret/data/db")
    assert by_header.json["data"]["data"] == by_prefix.json["data"]["data"] == {"a": "ns"}
    assert raw(vsrv, "GET", "/v1/secret/data/db").json["data"]["data"] == {"a": "root"}
    c = hvac.Client(url=vsrv.url, token=vsrv.root_token, namespace="team-a")
    assert read(c, "db")["data"]["data"] == {"a": "ns"}
    r = raw(vsrv, "GET", "/v1/secret/data/db", headers={"X-Vault-Namespace": "nope/"})
    assert (r.status, r.json["errors"]) == (404, ["namespace not found"])
    if vsrv.flavor == "openbao":
        assert by_header.headers["X-Vault-Namespace"] == "team-a/"
    d = raw(
        vsrv, "GET", "/v1/sys/internal/ui/mounts/secret/db", headers={"X-Vault-Namespace": "team-a"}
    ).json["data"]
    assert d["path"] == "secret/"
    # a login inside a namespace gives a token scoped to it
    vsrv.add_approle("r", "rid", "sid", policies=["root-ish"], namespace="team-a")
    vsrv.add_policy("root-ish", {"secret/data/*": ["read"]})
    r = raw(
        vsrv,
        "POST",
        "/v1/team-a/auth/approle/login",
        {"role_id": "rid", "secret_id": "sid"},
        token=None,
    )
    ns_tok = r.json["auth"]["client_token"]
    assert raw(vsrv, "GET", "/v1/team-a/secret/data/db", token=ns_tok).status == 200
    assert raw(vsrv, "GET", "/v1/secret/data/db", token=ns_tok).status == 403
    look = raw(vsrv, "GET", "/v1/team-a/auth/token/lookup-self", token=ns_tok).json["data"]
    assert look["namespace_path"] == "team-a/"


def test_sealed_503(srv: DevServer) -> None:
    """KV2-AC-136: sealed -> 503 "Vault is sealed" (vault/openbao); hvac raises VaultDown."""
    srv.put("k", {"a": 1})
    srv.faults.sealed = True
    r = raw(srv, "GET", "/v1/secret/data/k")
    assert r.status == 503 and r.headers["Content-Type"] == "application/json"
    if srv.flavor != "ovh":
        assert r.body == b'{"errors":["Vault is sealed"]}\n'
    with pytest.raises(hvac.exceptions.VaultDown):
        read(client(srv), "k")
    srv.faults.sealed = False
    assert raw(srv, "GET", "/v1/secret/data/k").status == 200
