"""Auth methods: how kv2render proves who it is to a KV2 server (spec KV2-FC-05x).

This module never imports hvac or requests (spec: hvac boundary). An
:class:`Authenticator` builds login requests and reads credential files; the
store (``login.py``) hands it a :class:`LoginTransport` that does the HTTP and
maps the server's answers to kv2render errors. Each method takes the typed settings
``config.auth`` parsed once (KV2-INV-030) and checks nothing of the config again;
credential files are read and checked by ``credentials.py``.

    token_env          token from BAO_TOKEN / VAULT_TOKEN, checked with lookup-self
    token_file         token re-read from token_file_path at every login
    approle            role_id / secret_id files  -> POST auth/<mount>/login
    kubernetes, jwt    a JWT file + role          -> POST auth/<mount>/login
    cert               the TLS client certificate -> POST auth/<mount>/login {name}
    bearer_token_file  no login: ``Authorization: Bearer`` from a file, re-read when it changes
    mtls               no login, no token: the TLS client certificate is the identity

Credentials are read from files at login time (so a rotated file is picked up by
the next login) and never appear in a log line, an exception or a repr
(KV2-INV-001): only file paths, mount paths and role names do.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kv2render.config.auth import AuthSettings, TokenEnvSettings
from kv2render.errors import AuthError
from kv2render.store.credentials import (
    JwtFile,
    SecretIdFile,
    check_credential,
    read_credential,
    stamp,
)

if TYPE_CHECKING:
    # config.methods is loaded only when a config has auto_auth (config/auth.py), and
    # config.logins only when its method is not token_file (KV2-NFR-520).
    from kv2render.config.logins import (
        AppRoleSettings,
        BearerTokenFileSettings,
        CertSettings,
        JwtSettings,
        KubernetesSettings,
        MtlsSettings,
    )
    from kv2render.config.methods import TokenFileSettings

__all__ = [
    "Authenticator",
    "LoginResult",
    "LoginTransport",
    "build_authenticator",
]

log = logging.getLogger(__name__)

_LOOKUP_SELF = "auth/token/lookup-self"


@dataclass(frozen=True)
class LoginResult:
    """A token obtained by a login; the token itself never reaches a repr."""

    token: str = field(repr=False)
    ttl: float | None  # seconds; None when the token does not expire
    renewable: bool


class LoginTransport(Protocol):
    """The HTTP a login needs, provided by the store. Errors come back as kv2render errors:
    AuthError for a refusal (400/401/403/404), TransientError for 5xx/429/network."""

    def post(
        self, path: str, body: Mapping[str, Any], *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        """POST ``/v1/<path>`` without a token; ``namespace`` None means vault.namespace."""
        ...

    def get(self, path: str, *, token: str) -> Mapping[str, Any]:
        """GET ``/v1/<path>`` with ``token`` as X-Vault-Token."""
        ...


class Authenticator(Protocol):
    """One auth method. ``needs_login`` False: no login, token, lookup or renew (bearer, mtls)."""

    method: str  # the auto_auth.method.type, or 'token_env'
    label: str  # metadata for logs: 'approle at auth/approle'
    identity: str  # what to check when the server says 401/403 to this identity
    needs_login: bool
    reloginable: bool  # a new login can yield a new token (not token_env, bearer, mtls)

    def login(self, transport: LoginTransport) -> LoginResult: ...

    def header(self) -> Mapping[str, str]:
        """Extra request headers (bearer); re-reads its file only when the file changed."""
        ...

    def credential_files(self) -> tuple[Path, ...]:
        """Files whose change should trigger a new login (the daemon watches them)."""
        ...

    def release_credentials(self) -> None:
        """The run is done and succeeded: remove what should not outlive it (--once: the
        AppRole secret_id file, KV2-INV-352)."""
        ...


# --------------------------------------------------------------------------- helpers


def _ttl(value: Any) -> float | None:
    """A TTL in seconds from a server field; 0 (root tokens) or a bad value means no expiry."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    return float(value)


def _login_result(reply: Mapping[str, Any], where: str) -> LoginResult:
    auth = reply.get("auth")
    token = auth.get("client_token") if isinstance(auth, Mapping) else None
    if not isinstance(auth, Mapping) or not isinstance(token, str) or not token:
        raise AuthError("the login response has no auth.client_token", where=where)
    return LoginResult(token, _ttl(auth.get("lease_duration")), bool(auth.get("renewable")))


def _lookup_result(token: str, reply: Mapping[str, Any], where: str) -> LoginResult:
    data = reply.get("data")
    if not isinstance(data, Mapping):
        raise AuthError("the auth/token/lookup-self response has no data object", where=where)
    return LoginResult(token, _ttl(data.get("ttl")), bool(data.get("renewable")))


class _Method:
    """Defaults shared by the methods below."""

    method = ""
    label = ""
    identity = ""
    needs_login = True
    reloginable = True

    def header(self) -> Mapping[str, str]:
        return {}

    def credential_files(self) -> tuple[Path, ...]:
        return ()

    def release_credentials(self) -> None:
        return None

    def __repr__(self) -> str:  # metadata only, whatever a subclass caches
        return f"<{type(self).__name__} {self.label}>"


# --------------------------------------------------------------------------- token methods


class TokenEnv(_Method):
    """The token from BAO_TOKEN / VAULT_TOKEN (no auto_auth). It cannot be replaced by a
    new login, so a 403 on it is final."""

    method = "token_env"
    identity = "the token in BAO_TOKEN / VAULT_TOKEN"
    reloginable = False

    def __init__(self, settings: TokenEnvSettings) -> None:
        self._token = settings.token or ""
        name = settings.variable or "VAULT_TOKEN"
        # Logs name the variable, not the internal method name (KV2-INV-399).
        self.label = f"{name} from the environment"
        if self._token:
            # KV2-INV-351: refused when the store is built, before any request. The
            # environment cannot change under a running process, so this is final.
            check_credential(
                self._token, source=f"{name} from the environment", where="auth", header=True
            )

    def login(self, transport: LoginTransport) -> LoginResult:
        where = "auth"
        if not self._token:
            raise AuthError(
                "no token: BAO_TOKEN and VAULT_TOKEN are unset and no auto_auth is configured",
                where=where,
                hint="set VAULT_TOKEN, or configure auto_auth.method",
            )
        reply = _checked(lambda: transport.get(_LOOKUP_SELF, token=self._token), self)
        return _lookup_result(self._token, reply, where)


class TokenFile(_Method):
    """Vault Agent's ``token_file``: the token is re-read from the file at every login."""

    method = "token_file"
    reloginable = True  # a rotated file gives a new token

    def __init__(self, settings: TokenFileSettings) -> None:
        path = self._path = settings.token_file_path
        self.label = f"token_file {path}"
        self.identity = f"the token in {path}"

    def login(self, transport: LoginTransport) -> LoginResult:
        where = "auto_auth.method.config.token_file_path"
        token = read_credential(self._path, "token", where, header=True)
        reply = _checked(lambda: transport.get(_LOOKUP_SELF, token=token), self)
        return _lookup_result(token, reply, where)

    def credential_files(self) -> tuple[Path, ...]:
        return (self._path,)


def _checked(call: Callable[[], Mapping[str, Any]], method: _Method) -> Mapping[str, Any]:
    """Run a transport call, adding the method and the credential to check to an AuthError
    (KV2-FC-053)."""
    try:
        result = call()
    except AuthError as exc:
        if exc.hint:  # already says what to fix (a TLS problem, a wrong mount path)
            raise
        hint = f"check {method.identity} ({method.method} auth)"
        raise AuthError(exc.message, where=exc.where, hint=hint) from exc
    return result


# --------------------------------------------------------------------------- login methods


class AppRole(_Method):
    """AppRole: role_id and secret_id from files (Vault Agent's key names). The secret_id
    file's life (kept in memory for re-logins, removed after a successful login when
    ``remove_secret_id_file_after_reading``, KV2-INV-352) is :class:`SecretIdFile`'s;
    ``defer_removal`` (--once) keeps the file until :meth:`release_credentials`."""

    method = "approle"

    def __init__(
        self, auth: AuthSettings, settings: AppRoleSettings, *, defer_removal: bool = False
    ) -> None:
        self._mount = auth.mount_path
        self._namespace = auth.namespace
        self._role_id_file = settings.role_id_file_path
        self._secret_id: SecretIdFile | None = None
        if settings.secret_id_file_path is not None:
            self._secret_id = SecretIdFile(
                settings.secret_id_file_path,
                remove=settings.remove_secret_id_file_after_reading,
                defer_removal=defer_removal,
            )
        self.label = f"approle at {self._mount}"
        secret = settings.secret_id_file_path
        files = f"{self._role_id_file}" + (f" and the secret_id in {secret}" if secret else "")
        self.identity = f"the role_id in {files}"

    def login(self, transport: LoginTransport) -> LoginResult:
        role_id = read_credential(
            self._role_id_file, "role_id", "auto_auth.method.config.role_id_file_path"
        )
        body = {"role_id": role_id}
        used = None
        if self._secret_id is not None:
            body["secret_id"], used = self._secret_id.read()
        path = f"{self._mount}/login"
        reply = _checked(lambda: transport.post(path, body, namespace=self._namespace), self)
        result = _login_result(reply, path)
        if self._secret_id is not None:
            self._secret_id.logged_in(body["secret_id"], used)
        return result

    def release_credentials(self) -> None:
        if self._secret_id is not None:
            self._secret_id.release()

    def credential_files(self) -> tuple[Path, ...]:
        if self._secret_id is None:
            return (self._role_id_file,)
        return (self._role_id_file, self._secret_id.path)


class JwtLogin(_Method):
    """kubernetes and jwt: POST {role, jwt} where the JWT is re-read from its file at each
    login (a projected service-account token rotates). The jwt method's file is removed
    after a successful login unless ``remove_jwt_after_reading`` is false (:class:`JwtFile`,
    KV2-INV-494); the kubernetes token file never is."""

    def __init__(
        self,
        auth: AuthSettings,
        settings: KubernetesSettings | JwtSettings,
        *,
        defer_removal: bool = False,
    ) -> None:
        self.method = method = settings.method
        self._mount = auth.mount_path
        self._namespace = auth.namespace
        self._role = settings.role
        from kv2render.config.logins import KubernetesSettings

        self._consumed: JwtFile | None = None
        if isinstance(settings, KubernetesSettings):
            self._jwt_file, self._path_key = settings.token_path, "token_path"
        else:
            self._jwt_file, self._path_key = settings.path, "path"
            if settings.remove_jwt_after_reading:
                self._consumed = JwtFile(
                    settings.path,
                    remove=True,
                    defer_removal=defer_removal,
                    follow_symlinks=settings.remove_jwt_follows_symlinks,
                )
        self.label = f"{method} at {self._mount}, role {self._role!r}"
        self.identity = f"the JWT in {self._jwt_file} and role {self._role!r}"

    def login(self, transport: LoginTransport) -> LoginResult:
        used = None
        if self._consumed is not None:
            jwt, used = self._consumed.read()
        else:
            where = f"auto_auth.method.config.{self._path_key}"
            jwt = read_credential(self._jwt_file, "JWT", where)
        path = f"{self._mount}/login"
        body = {"role": self._role, "jwt": jwt}
        reply = _checked(lambda: transport.post(path, body, namespace=self._namespace), self)
        result = _login_result(reply, path)
        if self._consumed is not None:
            self._consumed.logged_in(jwt, used)
        return result

    def release_credentials(self) -> None:
        if self._consumed is not None:
            self._consumed.release()

    def credential_files(self) -> tuple[Path, ...]:
        return (self._jwt_file,)


class CertLogin(_Method):
    """TLS certificate auth: the client certificate of the TLS connection (vault.client_cert)
    is the credential; the body names the cert role, if any."""

    method = "cert"

    def __init__(self, auth: AuthSettings, settings: CertSettings) -> None:
        self._mount = auth.mount_path
        self._namespace = auth.namespace
        self._name = settings.name or ""
        self._files = (settings.client_cert, settings.client_key)
        self.label = f"cert at {self._mount}" + (f", role {self._name!r}" if self._name else "")
        self.identity = f"the client certificate {settings.client_cert}"

    def login(self, transport: LoginTransport) -> LoginResult:
        path = f"{self._mount}/login"
        body = {"name": self._name} if self._name else {}
        reply = _checked(lambda: transport.post(path, body, namespace=self._namespace), self)
        return _login_result(reply, path)

    def credential_files(self) -> tuple[Path, ...]:
        return self._files


# --------------------------------------------------------------------------- no-login methods


class BearerTokenFile(_Method):
    """``Authorization: Bearer <file content>`` on every request, no X-Vault-Token and no
    login (OVHcloud personal access tokens, spec issue 6). The file is re-read whenever its
    inode, size or mtime changes, so each pass uses the current token."""

    method = "bearer_token_file"
    needs_login = False
    reloginable = False

    def __init__(self, settings: BearerTokenFileSettings) -> None:
        path = self._path = settings.token_file_path
        self._stamp: tuple[int, int, int] | None = None
        self._token = ""
        self.label = f"bearer token from {path}"
        self.identity = f"the bearer token in {path}"

    def login(self, transport: LoginTransport) -> LoginResult:
        raise AuthError("bearer_token_file has no login", where="auto_auth.method")

    def header(self) -> Mapping[str, str]:
        where = "auto_auth.method.config.token_file_path"
        now = stamp(self._path)
        if now is None or now != self._stamp or not self._token:
            self._token = read_credential(self._path, "bearer token", where, header=True)
            self._stamp = now
            log.debug("bearer token (re)read from %s", self._path)
        return {"Authorization": f"Bearer {self._token}"}

    def credential_files(self) -> tuple[Path, ...]:
        return (self._path,)


class Mtls(_Method):
    """No login and no token header: the TLS client certificate is the identity
    (the OVHcloud OKMS access certificate, spec issue 6)."""

    method = "mtls"
    needs_login = False
    reloginable = False

    def __init__(self, settings: MtlsSettings) -> None:
        self._files = (settings.client_cert, settings.client_key)
        self.label = f"mtls with client certificate {settings.client_cert}"
        self.identity = f"the client certificate {settings.client_cert} and its key"

    def login(self, transport: LoginTransport) -> LoginResult:
        raise AuthError("mtls has no login", where="auto_auth.method")

    def credential_files(self) -> tuple[Path, ...]:
        return self._files


class TokenSinking:
    """An Authenticator whose every successful login hands the new token to ``on_token``
    (the daemon's and --once's token sink, KV2-INV-490): a login by the daemon's token
    lifecycle, a re-login after a 403 or near expiry alike. ``on_token`` raising (a sink
    that cannot be written) makes the login fail, so it is retried with the login backoff."""

    def __init__(self, inner: Authenticator, on_token: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_token = on_token
        self.method = inner.method
        self.label = inner.label
        self.identity = inner.identity
        self.needs_login = inner.needs_login
        self.reloginable = inner.reloginable

    def __repr__(self) -> str:
        return f"<TokenSinking {self._inner!r}>"

    def login(self, transport: LoginTransport) -> LoginResult:
        result = self._inner.login(transport)
        self._on_token(result.token)
        return result

    def header(self) -> Mapping[str, str]:
        return self._inner.header()

    def credential_files(self) -> tuple[Path, ...]:
        return self._inner.credential_files()

    def release_credentials(self) -> None:
        self._inner.release_credentials()


def build_authenticator(
    auth: AuthSettings, *, once: bool = False, on_token: Callable[[str], None] | None = None
) -> Authenticator:
    """The Authenticator for ``auth``, as config.auth parsed it. ``once``: a --once run,
    which keeps the AppRole secret_id file until the run succeeded (KV2-INV-352).
    ``on_token``: called with each new token (the token sink, KV2-INV-490)."""
    method = _authenticator(auth, once=once)
    return method if on_token is None else TokenSinking(method, on_token)


def _authenticator(auth: AuthSettings, *, once: bool) -> Authenticator:
    settings = auth.config
    if isinstance(settings, TokenEnvSettings):
        return TokenEnv(settings)
    from kv2render.config.methods import TokenFileSettings

    if isinstance(settings, TokenFileSettings):
        return TokenFile(settings)
    from kv2render.config.logins import (
        AppRoleSettings,
        BearerTokenFileSettings,
        CertSettings,
        JwtSettings,
        KubernetesSettings,
        MtlsSettings,
    )

    if isinstance(settings, AppRoleSettings):
        return AppRole(auth, settings, defer_removal=once)
    if isinstance(settings, KubernetesSettings | JwtSettings):
        return JwtLogin(auth, settings, defer_removal=once)
    if isinstance(settings, CertSettings):
        return CertLogin(auth, settings)
    if isinstance(settings, BearerTokenFileSettings):
        return BearerTokenFile(settings)
    if isinstance(settings, MtlsSettings):
        return Mtls(settings)
    raise TypeError(f"no auth method for {type(settings).__name__}")  # a bug, not bad input
