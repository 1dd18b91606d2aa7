"""Auth methods against a fake LoginTransport (our own protocol, never hvac's internals)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kv2render.config import AuthSettings, VaultSettings
from kv2render.config.auth import TokenEnvSettings
from kv2render.config.methods import DEFAULT_KUBERNETES_TOKEN_PATH, parse_method
from kv2render.errors import AuthError, ConfigError
from kv2render.store.auth import (
    Authenticator,
    LoginResult,
    build_authenticator,
)

VAULT = VaultSettings(address="http://127.0.0.1:1")
SENTINEL_SECRET_ID = "sentinel-secret-id-7f3a9c"
SENTINEL_JWT = "eyJhbGciOi.sentinel-jwt-payload.c2ln"
SENTINEL_TOKEN = "hvs.sentinel-token-5d1e"


def method(kind: str, vault: VaultSettings = VAULT, **block: Any) -> Authenticator:
    """An auth method from an ``auto_auth.method`` block, through the config's one parser
    (config.auth.parse_method), as a config file's block goes."""
    auth = parse_method({"type": kind, **block}, Path("/"), (vault.client_cert, vault.client_key))
    assert auth is not None
    return build_authenticator(auth)


class FakeTransport:
    """Records login requests and answers with a canned auth block."""

    def __init__(self, reply: Mapping[str, Any] | None = None) -> None:
        self.posts: list[tuple[str, dict[str, Any], str | None]] = []
        self.gets: list[tuple[str, str]] = []
        self.reply = reply or {
            "auth": {"client_token": "hvs.issued", "lease_duration": 60, "renewable": True}
        }

    def post(
        self, path: str, body: Mapping[str, Any], *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        self.posts.append((path, dict(body), namespace))
        return self.reply

    def get(self, path: str, *, token: str) -> Mapping[str, Any]:
        self.gets.append((path, token))
        return {"data": {"ttl": 120, "renewable": False}}


def test_login_result_repr_hides_token() -> None:
    """KV2-INV-001: a token never reaches a repr."""
    result = LoginResult(SENTINEL_TOKEN, 10.0, True)
    assert SENTINEL_TOKEN not in repr(result)


def test_approle_reads_files_removes_secret_id_and_reuses_it(tmp_path: Path) -> None:
    """approle: role_id/secret_id re-read at login; secret_id file removed after reading
    (Vault Agent's default) and the cached value used for the next login."""
    role = tmp_path / "role_id"
    secret = tmp_path / "secret_id"
    role.write_text("role-1\n")
    secret.write_text(f"  {SENTINEL_SECRET_ID}\n")
    auth = method(
        "approle",
        mount_path="auth/approle-prod",
        namespace="team-a/",
        config={"role_id_file_path": str(role), "secret_id_file_path": str(secret)},
    )
    transport = FakeTransport()
    result = auth.login(transport)
    assert result == LoginResult("hvs.issued", 60.0, True)
    assert transport.posts == [
        (
            "auth/approle-prod/login",
            {"role_id": "role-1", "secret_id": SENTINEL_SECRET_ID},
            "team-a/",
        )
    ]
    assert not secret.exists()
    auth.login(transport)  # re-login with the cached secret_id
    assert transport.posts[1][1]["secret_id"] == SENTINEL_SECRET_ID
    secret.write_text("newer-secret-id")  # a new file dropped later wins
    auth.login(transport)
    assert transport.posts[2][1]["secret_id"] == "newer-secret-id"
    assert SENTINEL_SECRET_ID not in repr(auth)
    assert auth.reloginable and auth.needs_login
    assert auth.credential_files() == (role, secret)


def test_approle_keeps_secret_id_file_when_asked(tmp_path: Path) -> None:
    role = tmp_path / "role_id"
    secret = tmp_path / "secret_id"
    role.write_text("r")
    secret.write_text("s")
    auth = method(
        "approle",
        config={
            "role_id_file_path": role,
            "secret_id_file_path": secret,
            "remove_secret_id_file_after_reading": False,
        },
    )
    transport = FakeTransport()
    auth.login(transport)
    assert secret.exists()
    assert transport.posts[0][0] == "auth/approle/login"


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_missing_or_empty_credential_file_names_the_file(
    tmp_path: Path, content: str | None
) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    auth = method("token_file", config={"token_file_path": path})
    with pytest.raises(AuthError) as info:
        auth.login(FakeTransport())
    assert str(path) in str(info.value)
    assert "token_file_path" in str(info.value)


def test_token_file_reread_each_login_and_validated_by_lookup_self(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("hvs.first\n")
    auth = method("token_file", config={"token_file_path": path})
    transport = FakeTransport()
    assert auth.login(transport) == LoginResult("hvs.first", 120.0, False)
    path.write_text("hvs.second")
    assert auth.login(transport).token == "hvs.second"
    assert transport.gets == [
        ("auth/token/lookup-self", "hvs.first"),
        ("auth/token/lookup-self", "hvs.second"),
    ]


def test_token_env_without_token_says_what_to_set() -> None:
    auth = build_authenticator(AuthSettings(type="token_env", config=TokenEnvSettings()))
    with pytest.raises(AuthError, match="VAULT_TOKEN"):
        auth.login(FakeTransport())
    assert not auth.reloginable


def test_kubernetes_default_token_path_and_jwt_reread(tmp_path: Path) -> None:
    k8s = method("kubernetes", config={"role": "app"})
    assert k8s.credential_files() == (DEFAULT_KUBERNETES_TOKEN_PATH,)
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text(SENTINEL_JWT)
    jwt = method("jwt", mount_path="jwt-ci", config={"role": "ci", "path": jwt_file})
    transport = FakeTransport()
    jwt.login(transport)
    jwt_file.write_text("rotated.jwt.value")
    jwt.login(transport)
    assert [p[1]["jwt"] for p in transport.posts] == [SENTINEL_JWT, "rotated.jwt.value"]
    assert transport.posts[0][0] == "auth/jwt-ci/login"
    assert SENTINEL_JWT not in repr(jwt)


def test_bearer_token_file_rereads_only_on_change(tmp_path: Path) -> None:
    path = tmp_path / "pat"
    path.write_text("first-token\n")
    auth = method("bearer_token_file", config={"token_file_path": path})
    assert not auth.needs_login and not auth.reloginable
    assert auth.header() == {"Authorization": "Bearer first-token"}
    path.write_text("second-token-longer\n")
    assert auth.header() == {"Authorization": "Bearer second-token-longer"}
    path.write_text("")
    with pytest.raises(AuthError, match="is empty"):
        auth.header()


def test_cert_and_mtls_need_a_client_certificate(tmp_path: Path) -> None:
    for kind in ("cert", "mtls"):
        with pytest.raises(ConfigError, match="vault.client_cert"):
            method(kind)
    crt, key = tmp_path / "c.pem", tmp_path / "k.pem"
    with_cert = VaultSettings(address="https://x", client_cert=crt, client_key=key)
    cert = method("cert", with_cert, config={"name": "web"})
    transport = FakeTransport()
    cert.login(transport)
    assert transport.posts == [("auth/cert/login", {"name": "web"}, None)]
    mtls = method("mtls", with_cert)
    assert not mtls.needs_login and mtls.header() == {}
    assert mtls.credential_files() == (crt, key)


def test_required_keys_are_named() -> None:
    with pytest.raises(ConfigError, match=r"auto_auth\.method\.config\.role_id_file_path"):
        method("approle")
    with pytest.raises(ConfigError, match=r"auto_auth\.method\.config\.role"):
        method("kubernetes")


def test_login_response_without_token_is_an_auth_error(tmp_path: Path) -> None:
    jwt_file = tmp_path / "jwt"
    jwt_file.write_text("a.b.c")
    auth = method("jwt", config={"role": "r", "path": jwt_file})
    with pytest.raises(AuthError, match="client_token"):
        auth.login(FakeTransport(reply={"auth": None}))
