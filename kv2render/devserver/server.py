"""DevServer: the Python API over the in-memory KV2 dev server.

A development and test tool, not a security boundary: state lives in memory,
policies are a small subset of Vault's, and JWT/cert logins trust a seed list.
"""

from __future__ import annotations

import logging
import shutil
import ssl
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from kv2render.devserver import tls as _tls
from kv2render.devserver._time import Clock
from kv2render.devserver.auth import AppRole, JwtGrant
from kv2render.devserver.httpserver import _Server
from kv2render.devserver.protocol import FLAVORS, OPENBAO, OVH
from kv2render.devserver.router import Router
from kv2render.devserver.state import Faults, State, norm_mount, norm_namespace

RequestHook = Callable[[str, str, int], None]

log = logging.getLogger("kv2render.devserver")


class DevServer:
    """An in-memory KV2 server speaking the Vault HTTP API on a real socket.

    >>> srv = DevServer().start()        # doctest: +SKIP
    >>> srv.put("app/db", {"password": "x"})
    1
    """

    def __init__(
        self,
        flavor: str = "vault",
        host: str = "127.0.0.1",
        port: int = 0,
        seed: None | str | Path | Mapping[str, Any] = None,
        tls: bool = False,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        require_client_cert: bool = False,
        root_token: str | None = None,
        clock: Clock = time.monotonic,
        *,
        client_ca_file: str | Path | None = None,
        on_request: RequestHook | None = None,
    ) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"flavor: must be one of {', '.join(FLAVORS)}, got {flavor!r}")
        if (cert_file is None) != (key_file is None):
            raise ValueError("cert_file and key_file: give both or neither")
        if require_client_cert and not (tls or cert_file):
            raise ValueError("require_client_cert: needs tls=True")
        self.flavor = flavor
        self.host = host
        self.port = port
        self.tls = tls or cert_file is not None
        self.require_client_cert = require_client_cert
        self.state = State(flavor, clock)
        self.router = Router(self.state)
        self.okms_id = str(uuid.uuid4())
        self.router.ovh_id = self.okms_id
        self.base_path = f"/api/{self.okms_id}" if flavor == OVH else ""
        self.on_request = on_request
        self.requests: list[tuple[str, str, int]] = []
        self._rec_lock = threading.Lock()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.ca_file: Path | None = None
        self.client_cert_file: Path | None = None
        self.client_key_file: Path | None = None
        self._ssl: ssl.SSLContext | None = None
        if self.tls:
            self._setup_tls(cert_file, key_file, client_ca_file)
        if flavor == OPENBAO and root_token is not None:
            # `bao server -dev -dev-root-token-id=X` makes X through auth/token/create: an
            # orphan named "token" (measured, KV2-AC-342).
            token = self.state.tokens.create(["root"], 0, False, token_id=root_token, orphan=True)
        else:
            token = self.state.tokens.create(
                ["root"], 0, False, token_id=root_token, display_name="root", path="auth/token/root"
            )
        self.root_token: str = token.id
        if seed is not None:
            from kv2render.devserver.seed import apply_seed

            apply_seed(self, seed)

    def __repr__(self) -> str:  # no tokens in reprs (STYLE.md convention 9)
        return f"DevServer(flavor={self.flavor!r}, url={self.url!r})"

    # -- lifecycle ----------------------------------------------------------------------

    def _setup_tls(
        self,
        cert_file: str | Path | None,
        key_file: str | Path | None,
        client_ca: str | Path | None,
    ) -> None:
        self._tmpdir = Path(tempfile.mkdtemp(prefix="kv2render-devserver-"))
        # Remove the generated keys when the server object goes away or at exit.
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmpdir, True)
        pki = _tls.generate(self._tmpdir, [self.host])
        self.client_cert_file, self.client_key_file = pki.client_cert, pki.client_key
        if cert_file is not None and key_file is not None:
            server_cert, server_key = Path(cert_file), Path(key_file)
            self.ca_file = None
        else:
            server_cert, server_key = pki.server_cert, pki.server_key
            self.ca_file = pki.ca_file
        verify_ca = Path(client_ca) if client_ca else pki.ca_file
        self._ssl = _tls.server_context(
            server_cert, server_key, verify_ca, self.require_client_cert
        )

    def start(self) -> DevServer:
        if self._httpd is not None:
            return self
        httpd = _Server((self.host, self.port), self, self._ssl)
        self.port = httpd.server_address[1]  # restart() binds this same port again
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"kv2render-devserver:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.stopping.set()  # releases hung and delayed requests
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections()  # keep-alive clients must see the server go away
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def restart(self) -> DevServer:
        self.stop()
        return self.start()

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}{self.base_path}"

    # -- counters and faults ------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """Fault switches (sealed, status, retry_after, latency, drop, fail_next, hang)."""
        return self.state.faults

    @faults.setter
    def faults(self, value: Faults) -> None:
        self.state.faults = value

    def record(self, method: str, path: str, status: int) -> None:
        with self._rec_lock:
            self.requests.append((method, path, status))
        if self.on_request is not None:
            try:
                self.on_request(method, path, status)
            except Exception:  # a broken log sink must not turn answers into 500s
                log.debug("request log hook failed", exc_info=True)

    def request_count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        """Served requests, optionally filtered by verb and by path prefix ('/v1/...').

        Paths are percent-decoded and without the query string; for the ovh flavour
        the '/api/<uuid>' base is stripped so prefixes read the same in every flavour.
        """
        with self._rec_lock:
            return sum(
                1
                for m, p, _ in self.requests
                if (method is None or m == method.upper())
                and (path_prefix is None or p.startswith(path_prefix))
            )

    def reset_counters(self) -> None:
        with self._rec_lock:
            self.requests.clear()

    def take_fault_status(self) -> int | None:
        """The injected status for this request, consuming one fail_next."""
        with self._rec_lock:
            f = self.faults
            if f.fail_next > 0:
                f.fail_next -= 1
                status = f.status or 500
                if f.fail_next == 0:
                    f.status = None
                return status
            return f.status

    # -- KV data (no ACL: this is the operator's side) ----------------------------------

    def put(
        self, path: str, data: Mapping[str, Any], mount: str = "secret", cas: int | None = None
    ) -> int:
        with self.state.lock:
            options = {"cas": cas} if cas is not None else None
            meta = self.state.kv2(mount).write(path.strip("/"), dict(data), options)
            return int(meta["version"])

    def delete(
        self, path: str, versions: Iterable[int] | None = None, mount: str = "secret"
    ) -> None:
        with self.state.lock:
            kv = self.state.kv2(mount)
            if versions is None:
                kv.delete_latest(path.strip("/"))
            else:
                kv.delete_versions(path.strip("/"), {"versions": list(versions)}, None)

    def undelete(self, path: str, versions: Iterable[int], mount: str = "secret") -> None:
        with self.state.lock:
            self.state.kv2(mount).undelete_versions(path.strip("/"), {"versions": list(versions)})

    def destroy(self, path: str, versions: Iterable[int], mount: str = "secret") -> None:
        with self.state.lock:
            self.state.kv2(mount).destroy_versions(path.strip("/"), {"versions": list(versions)})

    def delete_metadata(self, path: str, mount: str = "secret") -> None:
        with self.state.lock:
            self.state.kv2(mount).delete_metadata(path.strip("/"))

    def write_metadata(self, path: str, mount: str = "secret", **fields: Any) -> None:
        """max_versions, cas_required, delete_version_after, custom_metadata."""
        with self.state.lock:
            self.state.kv2(mount).write_metadata(path.strip("/"), fields)

    def read(self, path: str, version: int = 0, mount: str = "secret") -> dict[str, Any]:
        """The stored data of a version (raises KeyError if missing/deleted/destroyed)."""
        with self.state.lock:
            try:
                return dict(self.state.kv2(mount).read(path.strip("/"), version)["data"])
            except Exception as exc:
                raise KeyError(
                    f"{mount}/{path}: no readable version {version or 'latest'}"
                ) from exc

    def add_mount(self, path: str, version: int = 2, namespace: str = "") -> None:
        with self.state.lock:
            self.state.add_mount(path, version, namespace)

    def add_namespace(self, path: str) -> None:
        if self.flavor == OVH:
            raise ValueError("namespaces: the ovh flavour has none")
        with self.state.lock:
            self.state.add_namespace(path)

    # -- tokens, policies, logins -------------------------------------------------------

    def add_policy(self, name: str, rules: Mapping[str, Iterable[str]]) -> None:
        with self.state.lock:
            self.state.policies.add(name, dict(rules))

    def create_token(
        self,
        policies: Iterable[str] = ("default",),
        ttl: float | None = None,
        renewable: bool = True,
        num_uses: int = 0,
        *,
        token_id: str | None = None,
        namespace: str = "",
        explicit_max_ttl: int = 0,
    ) -> str:
        """A new service token. ttl None: Vault's default 768h; ttl in seconds otherwise."""
        with self.state.lock:
            token = self.state.tokens.create(
                list(policies),
                int(ttl) if ttl else None,
                renewable,
                num_uses,
                token_id=token_id,
                namespace=norm_namespace(namespace),
                explicit_max_ttl=explicit_max_ttl,
            )
            return token.id

    def revoke_token(self, token: str) -> None:
        with self.state.lock:
            self.state.tokens.revoke(token)

    def token_ttl(self, token: str) -> float | None:
        """Seconds left on a token (None: no expiry); KeyError when not valid."""
        with self.state.lock:
            found = self.state.tokens.lookup(token)
            if found is None:
                raise KeyError("token is not valid")
            return None if found.expire_at is None else found.expire_at - self.state.clock()

    def _auth_key(self, mount: str, namespace: str) -> str:
        if self.flavor == OVH:
            raise ValueError("logins: the ovh flavour has no auth endpoints")
        return self.state.auth_mount_key(mount, namespace)

    def add_approle(
        self,
        role_name: str,
        role_id: str,
        secret_id: str | None,
        policies: Iterable[str] = (),
        token_ttl: float | None = None,
        renewable: bool = True,
        mount: str = "approle",
        *,
        namespace: str = "",
        token_max_ttl: float | None = None,
    ) -> None:
        with self.state.lock:
            roles = self.state.auth.approle.setdefault(self._auth_key(mount, namespace), {})
            existing = roles.get(role_name)
            ids = set(existing.secret_ids) if existing and existing.role_id == role_id else set()
            if secret_id:
                ids.add(secret_id)
            roles[role_name] = AppRole(
                role_name,
                role_id,
                ids,
                list(policies),
                int(token_ttl) if token_ttl else None,
                renewable,
                int(token_max_ttl) if token_max_ttl else 0,
            )

    def add_userpass(
        self,
        username: str,
        password: str,
        policies: Iterable[str] = (),
        mount: str = "userpass",
        *,
        namespace: str = "",
    ) -> None:
        with self.state.lock:
            users = self.state.auth.userpass.setdefault(self._auth_key(mount, namespace), {})
            users[username.lower()] = (password, list(policies))

    def add_jwt(
        self,
        jwt: str,
        role: str,
        policies: Iterable[str] = (),
        method: str = "kubernetes",
        mount: str | None = None,
        *,
        namespace: str = "",
    ) -> None:
        if method not in ("kubernetes", "jwt"):
            raise ValueError(f"method: must be 'kubernetes' or 'jwt', got {method!r}")
        with self.state.lock:
            key = self._auth_key(mount or method, namespace)
            kind, grants = self.state.auth.jwt.setdefault(key, (method, []))
            if kind != method:
                raise ValueError(f"mount {mount!r} is already a {kind} mount")
            grants.append(JwtGrant(jwt, role, list(policies)))

    def add_cert_role(
        self, name: str, policies: Iterable[str] = (), mount: str = "cert", *, namespace: str = ""
    ) -> None:
        with self.state.lock:
            key = (
                "auth/" + norm_mount(mount)
                if self.flavor == OVH
                else self._auth_key(mount, namespace)
            )
            self.state.auth.cert.setdefault(key, {})[name] = list(policies)
