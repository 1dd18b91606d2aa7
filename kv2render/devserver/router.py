"""Request -> Reply: namespaces, token checks, ACL, then the KV engines.

Order follows Vault's request handling (kv2-wire.md §1.3, §2.2): sealed check,
namespace resolution, unauthenticated login paths, token lookup, ACL (before
routing, so a non-root token learns nothing about missing mounts), then the
backend. The ovh flavour has its own, smaller front door (§8).
"""

from __future__ import annotations

from typing import Any

from kv2render import jsonnum
from kv2render.devserver import endpoints, gofields, sysapi
from kv2render.devserver.auth import Token
from kv2render.devserver.kv import KvV1, KvV2
from kv2render.devserver.numbers import out_of_range
from kv2render.devserver.protocol import (
    INVALID_TOKEN_VAULT,
    OPENBAO,
    OVH,
    PERMISSION_DENIED,
    SEALED,
    UNSUPPORTED_OPERATION,
    VAULT,
    ApiError,
    RawNotFound,
    Reply,
    Request,
)
from kv2render.devserver.state import Mount, State, norm_namespace


def operation(req: Request) -> str:
    """HTTP verb -> logical operation (kv2-wire.md §1.1): LIST or GET ?list=true lists."""
    verb = req.method
    if verb == "LIST" or (verb == "GET" and (req.qparam("list") or "").lower() in ("true", "1")):
        return "list"
    return {
        "GET": "read",
        "POST": "write",
        "PUT": "write",
        "DELETE": "delete",
        "PATCH": "patch",
    }.get(verb, "")


_GO_KINDS = {list: "array", str: "string", bool: "bool"}


def parse_body(req: Request, flavor: str = VAULT) -> dict[str, Any]:
    if not req.body.strip():
        return {}
    # OpenBao words its decode errors as Go's encoding/json does (measured, KV2-AC-342).
    prefix = (
        "failed to decode JSON input: " if flavor == OPENBAO else "failed to parse JSON input: "
    )
    try:
        # Numbers keep their text, as Vault's jsonutil (UseNumber) stores them.
        value = jsonnum.loads(req.body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ApiError(400, f"{prefix}{exc}") from exc
    if flavor == OPENBAO:
        return _openbao_body(value, prefix)
    if not isinstance(value, dict):
        kind = type(value).__name__
        raise ApiError(
            400,
            f"failed to parse JSON input: cannot unmarshal {kind} into a JSON object",
        )
    return value


def _openbao_body(value: Any, prefix: str) -> dict[str, Any]:
    if value is None:
        return {}  # Go decodes null into a nil map: an empty request
    if not isinstance(value, dict):
        kind = _GO_KINDS.get(type(value), "number")
        raise ApiError(
            400,
            f"{prefix}json: cannot unmarshal {kind} into Go value of type "
            "map[string]interface {}",
        )
    big = out_of_range(value)
    if big is not None:  # OpenBao also decodes every body into float64 (KV2-INV-340)
        raise ApiError(
            400, f"{prefix}json: cannot unmarshal number {big} into Go value of type float64"
        )
    return value


class Router:
    def __init__(self, state: State) -> None:
        self.state = state
        self.wire = state.wire
        self.ovh_id = ""  # the OKMS id in the ovh base path, set by DevServer

    def handle(self, req: Request) -> Reply:
        with self.state.lock:
            try:
                if self.state.flavor == OVH:
                    return self._handle_ovh(req)
                return self._handle(req)
            except (ApiError, RawNotFound) as exc:
                return self.wire.from_error(exc)

    # -- vault / openbao --------------------------------------------------------------

    def _handle(self, req: Request) -> Reply:
        st = self.state
        req.op = operation(req)
        if req.op == "":
            raise ApiError(405)  # unknown verb: respondError(405, nil) -> {"errors":[]}
        if req.path in ("sys/health", "sys/seal-status"):
            return sysapi.sys_status(self, req)
        if st.sealed:
            raise ApiError(503, SEALED)
        header_ns = req.headers.get("x-vault-namespace")
        ns_prefix = norm_namespace(header_ns)
        if ns_prefix and ns_prefix not in st.namespaces:
            raise ApiError(404, "namespace not found")  # OpenBao request_handling.go (§2.2)
        full = ns_prefix + req.path
        ns = st.resolve_namespace(full)
        rel = full[len(ns) :]
        if req.op in ("write", "patch"):
            req.data = parse_body(req, st.flavor)
        login = endpoints.match_login(self, ns, rel)
        if login is not None:
            return login(req)
        token = self._authenticate(req, ns)
        acl_path = ns[len(token.namespace) :] + rel
        st.tokens.use(token)
        reply = self._route(req, token, ns, rel, acl_path)
        if self.state.flavor == OPENBAO and header_ns:
            reply.headers.append(("X-Vault-Namespace", header_ns))  # OpenBao echoes it (§1.2)
        return reply

    def _authenticate(self, req: Request, ns: str) -> Token:
        token_id = req.token_id()
        token = self.state.tokens.lookup(token_id)
        if token is None:
            if token_id and self.state.flavor == VAULT:
                raise ApiError(403, INVALID_TOKEN_VAULT)
            if self.state.flavor == OPENBAO:
                # Measured: OpenBao answers a missing, unknown or revoked token with the bare
                # text; only ACL denials carry the multierror layout (KV2-AC-342).
                raise ApiError(403, "permission denied")
            raise ApiError(403, PERMISSION_DENIED)
        if not ns.startswith(token.namespace):
            raise ApiError(403, PERMISSION_DENIED)  # a child-namespace token cannot reach up
        return token

    def _route(self, req: Request, token: Token, ns: str, rel: str, acl_path: str) -> Reply:
        if rel.startswith("sys/") or rel == "sys":
            return sysapi.sys_api(self, req, token, ns, rel, acl_path)
        if rel.startswith("auth/token/"):
            return endpoints.token_api(self, req, token, rel[len("auth/token/") :], acl_path)
        mount = self.state.find_mount(ns + rel)
        if mount is None or not mount.path.startswith(ns):
            self.require(token, acl_path, self.caps_for(req.op, exists=False))
            raise ApiError(404, f'no handler for route "{rel}". route entry not found.')
        sub = (ns + rel)[len(mount.path) :]
        return self.kv(req, token, mount, sub, acl_path)

    # -- ACL helpers ------------------------------------------------------------------

    @staticmethod
    def caps_for(op: str, exists: bool) -> tuple[str, ...]:
        if op == "write":
            return ("update",) if exists else ("create",)
        return {"read": ("read",), "list": ("list",), "delete": ("delete",), "patch": ("patch",)}[
            op
        ]

    def require(self, token: Token, acl_path: str, caps: tuple[str, ...]) -> None:
        if not self.state.policies.allowed(token, acl_path, caps):
            raise ApiError(403, PERMISSION_DENIED)

    # -- KV dispatch --------------------------------------------------------------------

    def kv(self, req: Request, token: Token, mount: Mount, sub: str, acl_path: str) -> Reply:
        if req.op == "list" and not acl_path.endswith("/"):
            acl_path += "/"  # Vault normalises LIST paths to a trailing slash
        if isinstance(mount, KvV1):
            return self._kv1(req, token, mount, sub, acl_path)
        return self._kv2(req, token, mount, sub, acl_path)

    def _kv1(self, req: Request, token: Token, mount: KvV1, sub: str, acl_path: str) -> Reply:
        self.require(token, acl_path, self.caps_for(req.op, mount.exists(sub)))
        if req.op == "read":
            return self.wire.ok(mount.read(sub), mount_type="kv", lease_duration=2764800)
        if req.op == "list":
            return self.wire.ok({"keys": mount.list(sub)}, mount_type="kv")
        if req.op == "write":
            mount.write(sub, req.data)
            return self.wire.no_content()
        if req.op == "delete":
            mount.delete(sub)
            return self.wire.no_content()
        raise ApiError(405, UNSUPPORTED_OPERATION)

    def _kv2(self, req: Request, token: Token, mount: KvV2, sub: str, acl_path: str) -> Reply:
        first, _, name = sub.partition("/")
        op = req.op
        if self.state.flavor == OPENBAO and sub in ("data/", "metadata/") and op != "list":
            return self._openbao_slash_root(token, op, acl_path)
        if (
            first in ("data", "metadata")
            and name == ""
            and not (first == "metadata" and op == "list")
        ):
            self.require(token, acl_path, self.caps_for(op, exists=True))
            raise RawNotFound(
                None, ["Non-listing operations on the root of a K/V v2 mount are not supported."]
            )
        if first == "data":
            return self._kv2_data(req, token, mount, name, acl_path)
        if first == "metadata":
            return self._kv2_metadata(req, token, mount, name, acl_path)
        if first in ("delete", "undelete", "destroy"):
            return self._kv2_versions(req, token, mount, first, name, acl_path)
        if first == "detailed-metadata" and self.state.flavor == OPENBAO:
            return self._kv2_detailed(req, token, mount, name, acl_path)
        if first == "config" and name == "":
            return self._kv2_config(req, token, mount, acl_path)
        if first == "subkeys" and op == "read":
            self.require(token, acl_path, ("read",))
            return self.wire.ok(mount.subkeys(name, self._version(req)), mount_type="kv")
        self.require(token, acl_path, self.caps_for(op, exists=False))
        cli = self.wire.cli_name()
        raise RawNotFound(
            None,
            [
                "Invalid path for a versioned K/V secrets engine. See the API docs for the "
                f"appropriate API endpoints to use. If using the {self.wire.product()} CLI, use "
                f"'{cli} kv get' for this operation."
            ],
        )

    def _kv2_versions(
        self, req: Request, token: Token, mount: KvV2, action: str, name: str, acl_path: str
    ) -> Reply:
        """delete/, undelete/ and destroy/: a write naming versions."""
        if req.op != "write":
            raise self._unsupported()
        self.require(token, acl_path, ("update",))
        if action == "delete":
            mount.delete_versions(name, req.data, token.actor())
        elif action == "undelete":
            mount.undelete_versions(name, req.data)
        else:
            mount.destroy_versions(name, req.data)
        return self.wire.no_content()

    def _kv2_config(self, req: Request, token: Token, mount: KvV2, acl_path: str) -> Reply:
        if req.op == "read":
            self.require(token, acl_path, ("read",))
            config = mount.read_config()
            if self.state.flavor == OPENBAO:
                config["metadata_cas_required"] = False  # measured (KV2-AC-342)
            return self.wire.ok(config, mount_type="kv")
        if req.op == "write":
            self.require(token, acl_path, ("update",))
            mount.write_config(req.data)
            return self.wire.no_content()
        raise self._unsupported()

    def _openbao_slash_root(self, token: Token, op: str, acl_path: str) -> Reply:
        # Measured: with the slash, OpenBao routes to an empty key name (KV2-AC-342).
        self.require(token, acl_path, self.caps_for(op, exists=True))
        if op == "write":
            raise ApiError(400, "cannot write to a path ending in '/'")
        if op == "delete":
            return self.wire.no_content()
        raise ApiError(404)

    def _unsupported(self) -> ApiError:
        if self.state.flavor == OVH:
            return ApiError(405, "method not allowed")
        return ApiError(405, UNSUPPORTED_OPERATION)

    def _version(self, req: Request) -> int:
        raw = req.qparam("version")
        if raw is None or raw == "":
            return 0
        try:
            return int(raw)
        except ValueError as exc:
            if self.state.flavor == OPENBAO:
                raise gofields.version_error() from exc
            raise ApiError(
                400, f'error converting input {raw!r} for field "version": not an integer'
            ) from exc

    def _kv2_data(self, req: Request, token: Token, mount: KvV2, name: str, acl_path: str) -> Reply:
        op = req.op
        self.require(token, acl_path, self.caps_for(op, mount.exists(name)) if op != "list" else ())
        if op == "read":
            return self.wire.ok(mount.read(name, self._version(req)), mount_type="kv")
        if op == "write":
            if name.endswith("/"):
                raise ApiError(400, "cannot write to a path ending in '/'")
            missing = gofields.NO_DATA if self.state.flavor == OPENBAO else None
            data = req.data.get("data", missing)
            meta = mount.write(name, data, req.data.get("options"), token.actor())
            return self._written(meta)
        if op == "delete":
            mount.delete_latest(name, token.actor())
            return self.wire.no_content()
        if op == "patch":
            ctype = req.headers.get("content-type", "").split(";")[0].strip()
            openbao = self.state.flavor == OPENBAO
            if ctype != "application/merge-patch+json":
                if openbao:  # measured wording (KV2-AC-342)
                    raise ApiError(
                        415,
                        "PATCH requires Content-Type of application/merge-patch+json, "
                        f"provided {ctype}",
                    )
                raise ApiError(
                    415, "PATCH requires the Content-Type header application/merge-patch+json"
                )
            try:
                return self._written(mount.patch(name, req.data, token.actor()))
            except ApiError as exc:
                if openbao and exc.status == 404 and not exc.messages:
                    return Reply(404, b"")  # measured: OpenBao's 404 here has no body
                raise
        raise self._unsupported()

    def _written(self, meta: dict[str, Any]) -> Reply:
        warnings: list[str] | None = [] if self.state.flavor == OVH else None
        return self.wire.ok(meta, mount_type="kv", warnings=warnings)

    def _kv2_metadata(
        self, req: Request, token: Token, mount: KvV2, name: str, acl_path: str
    ) -> Reply:
        op = req.op
        self.require(token, acl_path, self.caps_for(op, mount.exists(name)))
        if op == "list":
            return self.wire.ok({"keys": mount.list(name)}, mount_type="kv")
        if op == "read":
            data = mount.read_metadata(name, openbao=self.state.flavor == OPENBAO)
            if self.state.flavor == OVH:
                data["urn"] = f"urn:v1:eu:resource:okms:{self.ovh_id}:secret/{name}"
            return self.wire.ok(data, mount_type="kv")
        if op == "write":
            mount.write_metadata(name, req.data)
            return self.wire.no_content()
        if op == "delete":
            mount.delete_metadata(name)
            return self.wire.no_content()
        raise self._unsupported()

    def _kv2_detailed(
        self, req: Request, token: Token, mount: KvV2, name: str, acl_path: str
    ) -> Reply:
        """OpenBao's listing with each key's metadata (issue 18, KV2-AC-504); the vault and
        ovh flavours never get here: theirs is the invalid-path 404 of a server without it."""
        self.require(token, acl_path, self.caps_for(req.op, exists=True))
        if req.op != "list":
            raise self._unsupported()  # measured: 405 "unsupported operation"
        raw = req.qparam("limit")
        try:
            limit = int(raw) if raw else 0
        except ValueError as exc:
            raise gofields.version_error("limit") from exc
        data = mount.list_detailed(name, req.qparam("after") or "", limit)
        return self.wire.ok(data, mount_type="kv")

    # -- ovh ----------------------------------------------------------------------------

    def _handle_ovh(self, req: Request) -> Reply:
        st = self.state
        if req.method == "LIST":
            # Not in the OKMS swagger (§8): clients must use GET ?list=true (strict_http).
            raise ApiError(405, "method not allowed")
        req.op = operation(req)
        if req.op == "":
            raise ApiError(405, "method not allowed")
        if not (req.path == "secret" or req.path.startswith("secret/")):
            raise ApiError(404, f"path {req.path!r} not found")
        if st.sealed:
            raise ApiError(503, "service unavailable")
        token = self._ovh_identity(req)
        if req.op in ("write", "patch"):
            req.data = parse_body(req)
        mount = st.kv2("secret")
        sub = req.path[len("secret/") :] if req.path.startswith("secret/") else ""
        if sub in ("metadata", "metadata/") and req.op == "read":
            req.op = "list"  # GET /secret/metadata lists everything (OKMS swagger)
        # destroy/: the swagger documents PUT only, hvac sends POST; both are writes here.
        return self._kv2(req, token, mount, sub, req.path)

    def _ovh_identity(self, req: Request) -> Token:
        bearer = req.bearer()
        if bearer:
            token = self.state.tokens.lookup(bearer)
            if token is None:
                raise ApiError(401, "unauthorized: invalid or expired bearer token")
            self.state.tokens.use(token)
            return token
        if req.peer_cert:
            return endpoints.cert_identity(self.state, req.peer_cert)
        raise ApiError(
            401, "unauthorized: missing credentials (Bearer token or client certificate)"
        )
