"""sys/* endpoints: health, seal status, mount discovery, mount listing (kv2-wire.md §3).

Only the vault and openbao flavours reach this module.
"""

from __future__ import annotations

import time
import uuid

from kv2render.devserver.auth import Token
from kv2render.devserver.context import RouterContext
from kv2render.devserver.protocol import (
    OPENBAO,
    UNSUPPORTED_OPERATION,
    ApiError,
    Reply,
    Request,
    encode,
)

# -- sys/* ----------------------------------------------------------------------------


def sys_status(router: RouterContext, req: Request) -> Reply:
    """sys/health and sys/seal-status: unauthenticated, plain JSON (not the envelope)."""
    st = router.state
    if req.op != "read":
        raise ApiError(405, UNSUPPORTED_OPERATION)
    sealed = st.sealed
    if req.path == "sys/health":
        body = {
            "initialized": True,
            "sealed": sealed,
            "standby": False,
            "performance_standby": False,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": int(time.time()),
            "version": "1.15.0+kv2render-dev",
            "cluster_name": "kv2render-dev",
            "cluster_id": "00000000-0000-0000-0000-000000000000",
        }
        if st.flavor == OPENBAO:
            del body["performance_standby"]  # measured: OpenBao 2.7.2 has no such key
        return Reply(503 if sealed else 200, encode(body))
    if st.flavor == OPENBAO:  # measured key set and order (KV2-AC-342)
        body = {
            "type": "shamir",
            "initialized": True,
            "sealed": sealed,
            "t": 1,
            "n": 1,
            "progress": 0,
            "nonce": "",
            "recovery_seal": False,
            "version": "1.15.0+kv2render-dev",
            "commit_date": "",
            "migration": False,
            "cluster_name": "kv2render-dev",
            "cluster_id": "00000000-0000-0000-0000-000000000000",
            "storage_type": "inmem",
        }
        return Reply(200, encode(body))
    body = {
        "type": "shamir",
        "initialized": True,
        "sealed": sealed,
        "t": 1,
        "n": 1,
        "progress": 0,
        "nonce": "",
        "version": "1.15.0+kv2render-dev",
        "build_date": "",
        "migration": False,
        "recovery_seal": False,
        "storage_type": "inmem",
    }
    return Reply(200, encode(body))


def sys_api(
    router: RouterContext, req: Request, token: Token, ns: str, rel: str, acl_path: str
) -> Reply:
    st, wire = router.state, router.wire
    ui = "sys/internal/ui/mounts"
    if rel.startswith(ui + "/") and rel != ui + "/":
        if req.op != "read":
            raise ApiError(405, UNSUPPORTED_OPERATION)
        target = rel[len(ui) + 1 :]
        mount = st.find_mount(ns + target)
        # Unknown mount and no access look the same on purpose: no enumeration (§3.1).
        mount_acl = (mount.path[len(token.namespace) :]) if mount else ""
        if (
            mount is None
            or not mount.path.startswith(ns)
            or not st.policies.touches(token, mount_acl)
        ):
            shown = target if target.endswith("/") else target + "/"
            raise ApiError(
                403,
                "preflight capability check returned 403, please ensure client's policies "
                f'grant access to path "{shown}"',
            )
        return wire.ok(st.mount_info(mount, ns), mount_type="")
    if rel in (ui, ui + "/"):
        if req.op != "read":
            raise ApiError(405, UNSUPPORTED_OPERATION)
        secret = {
            m.path[len(ns) :]: {
                k: v
                for k, v in st.mount_info(m, ns).items()
                if k in ("description", "options", "type")
            }
            for m in st.mounts.values()
            if m.path.startswith(ns) and st.policies.touches(token, m.path[len(token.namespace) :])
        }
        return wire.ok({"auth": {}, "secret": secret}, mount_type="")
    if rel == "sys/mounts":
        router.require(token, acl_path, ("read",))
        if req.op != "read":
            raise ApiError(405, UNSUPPORTED_OPERATION)
        data = {
            m.path[len(ns) :]: st.mount_info(m, ns)
            for m in st.mounts.values()
            if m.path.startswith(ns)
        }
        for info in data.values():
            info.pop("path")
        reply_env = {
            **{k: v for k, v in data.items()},
            "request_id": str(uuid.uuid4()),
            "lease_id": "",
            "renewable": False,
            "lease_duration": 0,
            "data": data,
            "wrap_info": None,
            "warnings": None,
            "auth": None,
        }
        return Reply(200, encode(reply_env))  # legacy sys/ paths inject data at top level (§1.2)
    if rel.startswith("sys/mounts/"):
        return _sys_mount(router, req, token, ns, rel[len("sys/mounts/") :], acl_path)
    router.require(token, acl_path, router.caps_for(req.op, exists=False))
    raise ApiError(404, f'no handler for route "{rel}". route entry not found.')


def _sys_mount(
    router: RouterContext, req: Request, token: Token, ns: str, path: str, acl_path: str
) -> Reply:
    st = router.state
    if req.op == "write":
        router.require(token, acl_path, ("create", "update"))
        kind = req.data.get("type")
        options = req.data.get("options") or {}
        if kind not in ("kv", "kv-v2"):
            raise ApiError(400, f"plugin not found in the catalog: {kind}")
        version = 2 if kind == "kv-v2" else int(str(options.get("version") or "1"))
        if st.find_mount(ns + path) is not None and (ns + path.strip("/") + "/") in st.mounts:
            raise ApiError(400, f"path is already in use at {path.strip('/')}/")
        try:
            st.add_mount(path, version, namespace=ns)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        return router.wire.no_content()
    if req.op == "delete":
        router.require(token, acl_path, ("delete",))
        st.mounts.pop(ns + path.strip("/") + "/", None)
        return router.wire.no_content()
    if req.op == "read":
        router.require(token, acl_path, ("read",))
        mount = st.mounts.get(ns + path.strip("/") + "/")
        if mount is None:
            raise ApiError(400, f"No secret engine mount at {path.strip('/')}/")
        return router.wire.ok(st.mount_info(mount, ns)["config"], mount_type="")
    raise ApiError(405, UNSUPPORTED_OPERATION)
