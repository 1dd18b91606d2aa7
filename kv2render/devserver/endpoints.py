"""Non-KV endpoints: logins, auth/token/*, sys/* (kv2-wire.md §3, §4, §5).

Each handler takes the Router, seen through context.RouterContext (its state, wire and
ACL helpers), and returns a Reply or raises ApiError. Only the vault and openbao flavours
reach this module.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kv2render.devserver._time import parse_duration, rfc3339
from kv2render.devserver.auth import Token, auth_block, entity_for, jwt_claims
from kv2render.devserver.context import RouterContext
from kv2render.devserver.protocol import OPENBAO, UNSUPPORTED_OPERATION, ApiError, Reply, Request
from kv2render.devserver.state import State

LoginHandler = Callable[[Request], Reply]


def _duration(value: Any, name: str, openbao: bool = False) -> int:
    try:
        return parse_duration(value, name)
    except ValueError as exc:
        if openbao and isinstance(value, str):  # Go's time.ParseDuration text (measured)
            raise ApiError(400, f"time: invalid duration {json.dumps(value)}") from exc
        raise ApiError(400, str(exc)) from exc


def _str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [p.strip() for p in value.split(",") if p.strip()]
    if isinstance(value, list):
        return [str(v) for v in value]
    raise ApiError(400, "expected a list of strings or a comma-separated string")


# -- logins ---------------------------------------------------------------------------


def match_login(router: RouterContext, ns: str, rel: str) -> LoginHandler | None:
    """The login handler for auth/<mount>/login[/<user>], or None if not a login path."""
    if not rel.startswith("auth/") or rel.startswith("auth/token/"):
        return None
    head, sep, tail = rel[len("auth/") :].partition("/login")
    if not sep or (tail and not tail.startswith("/")):
        return None
    mount_key = ns + "auth/" + head + "/"
    method = router.state.auth.method_of(mount_key)
    if method is None:
        return None
    username = tail[1:]

    def handler(req: Request) -> Reply:
        # Measured: OpenBao's approle login path also answers a read (GET), as a login
        # without a body (KV2-AC-342).
        openbao = router.state.flavor == OPENBAO
        if req.op != "write" and not (openbao and method == "approle" and req.op == "read"):
            # Measured: OpenBao's login paths say it without the multierror layout.
            raise ApiError(405, "unsupported operation" if openbao else UNSUPPORTED_OPERATION)
        token = _login(router.state, method, mount_key, ns, username, req)
        return router.wire.ok(None, auth=auth_block(token), mount_type="")

    return handler


def _login(st: State, method: str, mount_key: str, ns: str, username: str, req: Request) -> Token:
    body = req.data
    path = mount_key[len(ns) :] + "login"
    if method == "approle":
        role_id, secret_id = body.get("role_id"), body.get("secret_id")
        if not role_id:
            # OpenBao 2.7.2 answers this with 500 (measured, KV2-AC-342).
            raise ApiError(500 if st.flavor == OPENBAO else 400, "missing role_id")
        role = next((r for r in st.auth.approle[mount_key].values() if r.role_id == role_id), None)
        if role is None:
            raise ApiError(400, "invalid role or secret ID")
        if role.secret_ids:
            if not secret_id:
                raise ApiError(400, "missing secret_id")
            if secret_id not in role.secret_ids:
                raise ApiError(400, "invalid role or secret ID")
        return st.tokens.create(
            role.policies,
            role.token_ttl,
            role.renewable,
            display_name="approle",
            path=path,
            meta={"role_name": role.name},
            orphan=True,
            max_ttl=role.token_max_ttl,
            entity_id=entity_for("approle", mount_key + role.name),
            namespace=ns,
        )
    if method == "userpass":
        user = username.lower()
        password = body.get("password")
        if not user:
            raise ApiError(400, "missing username")
        if not password:  # OpenBao 2.7.2 answers 500 (measured, KV2-AC-342)
            raise ApiError(500 if st.flavor == OPENBAO else 400, "missing password")
        entry = st.auth.userpass[mount_key].get(user)
        if entry is None or entry[0] != password:
            raise ApiError(400, "invalid username or password")
        return st.tokens.create(
            entry[1],
            None,
            display_name=f"userpass-{user}",
            path=path + "/" + user,
            meta={"username": user},
            orphan=True,
            entity_id=entity_for("userpass", mount_key + user),
            namespace=ns,
        )
    if method in ("kubernetes", "jwt"):
        return _jwt_login(st, method, mount_key, ns, path, body)
    return _cert_login(st, mount_key, ns, path, body, req.peer_cert)


def _jwt_login(
    st: State, method: str, mount_key: str, ns: str, path: str, body: dict[str, Any]
) -> Token:
    grants = st.auth.jwt[mount_key][1]
    role, jwt = body.get("role"), body.get("jwt")
    if not jwt:
        raise ApiError(400, "missing jwt" if method == "kubernetes" else "missing token")
    if not role:
        # OpenBao's jwt method has no implicit role unless default_role is configured, which
        # the seed cannot set: "missing role" (measured, KV2-AC-342).
        if method == "kubernetes" or st.flavor == OPENBAO:
            raise ApiError(400, "missing role")
        roles = {g.role for g in grants}
        role = roles.pop() if len(roles) == 1 else None
        if role is None:
            raise ApiError(400, "missing role")
    role_grants = [g for g in grants if g.role == role]
    if not role_grants:
        if method == "kubernetes":
            raise ApiError(400, f'invalid role name "{role}"')
        raise ApiError(400, f'role "{role}" could not be found')
    grant = next((g for g in role_grants if g.jwt == jwt), None)
    if grant is None:
        if method == "kubernetes":  # signature/TokenReview failures are 403 (§5)
            raise ApiError(403, "permission denied")
        raise ApiError(
            400, "error validating token: token is not one the dev server was seeded with"
        )
    claims = jwt_claims(jwt)
    if method == "kubernetes":
        sa_ns = str(claims.get("kubernetes.io/serviceaccount/namespace", ""))
        sa_name = str(claims.get("kubernetes.io/serviceaccount/service-account.name", ""))
        nested = claims.get("kubernetes.io")
        if isinstance(nested, dict):  # projected tokens nest the claims
            sa_ns = sa_ns or str(nested.get("namespace", ""))
            sa = nested.get("serviceaccount")
            if isinstance(sa, dict):
                sa_name = sa_name or str(sa.get("name", ""))
        meta = {
            "role": str(role),
            "service_account_name": sa_name,
            "service_account_namespace": sa_ns,
            "service_account_secret_name": "",
            "service_account_uid": str(claims.get("sub", "")),
        }
        display = f"kubernetes-{sa_ns}-{sa_name}"
    else:
        meta = {"role": str(role)}
        display = f"jwt-{claims.get('sub', role)}"
    return st.tokens.create(
        grant.policies,
        None,
        display_name=display,
        path=path,
        meta=meta,
        orphan=True,
        entity_id=entity_for(method, mount_key + str(role)),
        namespace=ns,
    )


def _subject_field(cert: dict[str, Any], key: str) -> str:
    for rdn in cert.get("subject", ()):
        for name, value in rdn:
            if name == key:
                return str(value)
    return ""


def _cert_login(
    st: State,
    mount_key: str,
    ns: str,
    path: str,
    body: dict[str, Any],
    peer: dict[str, Any] | None,
) -> Token:
    roles = st.auth.cert[mount_key]
    if not peer:
        raise ApiError(400, "invalid certificate or no client certificate supplied")
    name = body.get("name") or (sorted(roles)[0] if roles else None)
    if name is None or name not in roles:
        raise ApiError(
            400, "no chain matching all constraints could be found for this login certificate"
        )
    meta = {
        "authority_key_id": "",
        "cert_name": str(name),
        "common_name": _subject_field(peer, "commonName"),
        "serial_number": str(peer.get("serialNumber", "")),
        "subject_key_id": "",
    }
    return st.tokens.create(
        roles[name],
        None,
        display_name=str(name),
        path=path,
        meta=meta,
        orphan=True,
        entity_id=entity_for("cert", mount_key + str(name)),
        namespace=ns,
    )


def cert_identity(st: State, peer: dict[str, Any]) -> Token:
    """ovh flavour: a verified client certificate is the identity (IAM is out of scope)."""
    roles = st.auth.cert.get("auth/cert/", {})
    policies = roles[sorted(roles)[0]] if roles else ["root"]
    return Token(
        id="",
        accessor="mtls",
        policies=policies if policies else ["default"],
        issued=0.0,
        ttl=0,
        expire_at=None,
        renewable=False,
        display_name=_subject_field(peer, "commonName"),
    )


# -- auth/token/* ---------------------------------------------------------------------


def _self_api(router: RouterContext, req: Request, token: Token, sub: str, acl_path: str) -> Reply:
    """lookup-self, renew-self and revoke-self."""
    st, op = router.state, req.op
    if st.flavor == OPENBAO:
        _check_token_acl(router, token, sub, op, acl_path)
    if sub == "lookup-self":
        if op not in ("read", "write"):
            raise ApiError(405, UNSUPPORTED_OPERATION)
        return router.wire.ok(lookup_data(st, token), mount_type="token")
    if op != "write":
        raise ApiError(405, UNSUPPORTED_OPERATION)
    if sub == "renew-self":
        return _renew(router, token, req.data)
    st.tokens.revoke(token.id)
    return router.wire.no_content()


def token_api(router: RouterContext, req: Request, token: Token, sub: str, acl_path: str) -> Reply:
    st, wire = router.state, router.wire
    op = req.op
    if sub in _DEFAULT_POLICY:
        return _self_api(router, req, token, sub, acl_path)
    if sub in ("create", "create-orphan"):
        if op != "write":
            raise ApiError(405, UNSUPPORTED_OPERATION)
        router.require(token, acl_path, ("create", "update"))
        child = _create(st, token, req.data, orphan=sub == "create-orphan")
        return wire.ok(None, auth=auth_block(child), mount_type="token")
    if sub in ("lookup", "revoke"):
        if op != "write" and not (sub == "lookup" and op == "read"):
            raise ApiError(405, UNSUPPORTED_OPERATION)
        router.require(token, acl_path, ("update",))
        target = st.tokens.lookup(str(req.data.get("token") or ""))
        if sub == "revoke":
            if target is not None:
                st.tokens.revoke(target.id)
            return wire.no_content()
        if target is None:
            raise ApiError(403, "bad token")
        return wire.ok(lookup_data(st, target), mount_type="token")
    router.require(token, acl_path, router.caps_for(op, exists=False))
    if st.flavor == OPENBAO:
        raise ApiError(404, "1 error occurred:\n\t* unsupported path\n\n")  # measured
    raise ApiError(404, f'no handler for route "auth/token/{sub}". route entry not found.')


# OpenBao's built-in "default" policy, as far as the self endpoints go.
_DEFAULT_POLICY = {"lookup-self": "read", "renew-self": "update", "revoke-self": "update"}


def _check_token_acl(router: RouterContext, token: Token, sub: str, op: str, acl_path: str) -> None:
    """Measured on OpenBao: the self endpoints pass the ACL like any path, so a token with
    only the default policy may GET lookup-self (not POST it) and POST renew-self and
    revoke-self (not GET them); anything else is 403 (KV2-AC-342)."""
    cap = {"read": "read", "write": "update"}.get(op, op)
    builtin = "default" in token.policies and "default" not in router.state.policies.rules
    if builtin and _DEFAULT_POLICY[sub] == cap:
        return
    router.require(token, acl_path, (cap,))


def lookup_data(st: State, token: Token) -> dict[str, Any]:
    """auth/token/lookup-self data (kv2-wire.md §4.1)."""
    now = st.clock()
    remaining = max(0, int(token.expire_at - now)) if token.expire_at is not None else 0
    data: dict[str, Any] = {
        "accessor": token.accessor,
        "creation_time": int(st.wall.ns_at(token.issued) // 1_000_000_000),
        "creation_ttl": token.ttl,
        "display_name": token.display_name,
        "entity_id": token.entity_id,
        "expire_time": rfc3339(st.wall.ns_at(token.expire_at)) if token.expire_at else None,
        "explicit_max_ttl": token.explicit_max_ttl,
        "id": token.id,
        "meta": token.meta,
        "num_uses": token.num_uses,
        "orphan": token.orphan,
        "path": token.path,
        "policies": list(token.policies),
        "ttl": remaining,
        "type": "service",
    }
    if token.ttl or st.flavor == OPENBAO:  # OpenBao shows both for every token (measured)
        data["renewable"] = token.renewable
        data["issue_time"] = rfc3339(st.wall.ns_at(token.issued))
    if token.last_renewal is not None:
        data["last_renewal_time"] = int(st.wall.ns_at(token.last_renewal) // 1_000_000_000)
        data["last_renewal"] = rfc3339(st.wall.ns_at(token.last_renewal))
    if token.namespace:
        data["namespace_path"] = token.namespace
    return data


def _renew(router: RouterContext, token: Token, body: dict[str, Any]) -> Reply:
    increment = body.get("increment")
    seconds = _duration(increment, "increment") if increment not in (None, "") else None
    try:
        ttl, warnings = router.state.tokens.renew(token, seconds)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    return router.wire.ok(
        None, auth=auth_block(token, lease=ttl), warnings=warnings, mount_type="token"
    )


def _create(st: State, parent: Token, body: dict[str, Any], orphan: bool) -> Token:
    policies = _str_list(body.get("policies")) or [p for p in parent.policies if p != "root"]
    if not policies and parent.is_root:
        policies = ["root"]
    if not parent.is_root and not set(policies) <= set(parent.policies) | {"default"}:
        raise ApiError(400, "child policies must be subset of parent")
    custom_id = body.get("id")
    if custom_id and not parent.is_root:
        raise ApiError(400, "root or sudo privileges required to specify token id")
    if custom_id and str(custom_id) in st.tokens.tokens:
        raise ApiError(400, "cannot create a token with a duplicate ID")
    openbao = st.flavor == OPENBAO
    ttl = _duration(body["ttl"], "ttl", openbao) if body.get("ttl") not in (None, "") else None
    explicit = body.get("explicit_max_ttl")
    meta = body.get("meta")
    renewable = body.get("renewable", True)
    return st.tokens.create(
        policies,
        ttl if ttl else (None if "root" not in policies else 0),
        bool(renewable) if not isinstance(renewable, str) else renewable.lower() == "true",
        int(body.get("num_uses") or 0),
        token_id=str(custom_id) if custom_id else None,
        display_name="token" + (f"-{body['display_name']}" if body.get("display_name") else ""),
        path="auth/token/create",
        meta={str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else None,
        orphan=orphan or bool(body.get("no_parent")),
        explicit_max_ttl=_duration(explicit, "explicit_max_ttl") if explicit else 0,
        namespace=parent.namespace,
        no_default_policy=bool(body.get("no_default_policy")),
    )


__all__ = [
    "cert_identity",
    "match_login",
    "token_api",
]
