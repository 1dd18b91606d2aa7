"""Every auth method, the token lifecycle, TLS and the three targets' identities:
real hvac against the embedded dev server over a real socket (issues 4, 5, 6)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kv2render.config import AuthSettings, VaultSettings
from kv2render.config.auth import TokenEnvSettings
from kv2render.config.logins import AppRoleSettings, MtlsSettings
from kv2render.config.methods import parse_method
from kv2render.devserver import DevServer
from kv2render.errors import (
    AccessDeniedError,
    AuthError,
    Kv2RenderError,
    SecretReadError,
    TransientError,
)
from kv2render.refs import SecretLocation
from kv2render.store.auth import build_authenticator
from kv2render.store.client import HvacSecretStore

LOC = SecretLocation("secret", "app/db")
LOGIN = "/v1/auth/"


def make_store(
    srv: DevServer | str, kind: str = "token_env", *, vault: dict[str, Any] | None = None,
    env_token: str | None = None, **method: Any,
) -> HvacSecretStore:  # fmt: skip
    """The method block goes through the config's one parser, as a config file's does."""
    url = srv if isinstance(srv, str) else srv.url
    settings = VaultSettings(address=url, num_retries=-1, timeout=5.0, **(vault or {}))
    if kind == "token_env":
        auth = AuthSettings(type="token_env", config=TokenEnvSettings(env_token))
    else:
        cert = (settings.client_cert, settings.client_key)
        parsed = parse_method({"type": kind, **method}, Path("/"), cert)
        assert parsed is not None
        auth = parsed
    return HvacSecretStore(settings, build_authenticator(auth))


@pytest.fixture
def tls_server() -> Iterator[DevServer]:
    with DevServer(tls=True) as srv:
        srv.put("app/db", {"password": "tls"})
        yield srv


@pytest.fixture
def mtls_server() -> Iterator[DevServer]:
    with DevServer(tls=True, require_client_cert=True) as srv:
        srv.put("app/db", {"password": "mtls"})
        yield srv


def client_tls(srv: DevServer) -> dict[str, Any]:
    return {
        "ca_cert": srv.ca_file,
        "client_cert": srv.client_cert_file,
        "client_key": srv.client_key_file,
    }


# --------------------------------------------------------------------------- each method


def test_token_env_login_reads_ttl_and_renews(dev_server: DevServer) -> None:
    """KV2-AC-068: KV2 token from the environment: validated by lookup-self, TTL learned,
    renew-self."""
    dev_server.put("app/db", {"password": "p"})
    token = dev_server.create_token(["root"], ttl=600, renewable=True)
    with make_store(dev_server, env_token=token) as store:
        info = store.login()
        assert info is not None and info.renewable
        assert info.ttl is not None and 590 <= info.ttl <= 600
        assert store.read(LOC).data["password"] == "p"
        renewed = store.renew()
        assert renewed.renewable and renewed.ttl is not None and renewed.ttl > 590
        assert store.token_info == renewed
        assert store.lookup_self().ttl is not None
    assert dev_server.request_count("POST", "/v1/auth/token/renew-self") == 1


def test_root_token_has_no_expiry(dev_server: DevServer) -> None:
    """KV2-AC-068: a root token (ttl 0) has no expiry."""
    with make_store(dev_server, env_token=dev_server.root_token) as store:
        info = store.login()
    assert info is not None and info.ttl is None


def test_non_renewable_token_renew_is_refused(dev_server: DevServer) -> None:
    """KV2-FC-053: renew-self of a non-renewable token is an AuthError without the token."""
    token = dev_server.create_token(["root"], ttl=600, renewable=False)
    with make_store(dev_server, env_token=token) as store:
        info = store.login()
        assert info is not None and not info.renewable
        with pytest.raises(AuthError) as err:
            store.renew()
    assert "renew-self" in str(err.value)
    assert token not in str(err.value)


def test_token_file_login(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-AC-050 KV2-INV-051: token_file, whitespace trimmed, TTL from lookup-self."""
    dev_server.put("app/db", {"password": "p"})
    path = tmp_path / "token"
    path.write_text(dev_server.create_token(["root"], ttl=300) + "\n")
    with make_store(dev_server, "token_file", config={"token_file_path": path}) as store:
        assert store.read(LOC).version == 1
        assert store.token_info is not None and store.token_info.ttl is not None


def test_approle_login(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-AC-051 KV2-INV-051: approle login; the secret_id file is gone afterwards."""
    dev_server.put("app/db", {"password": "p"})
    dev_server.add_policy("app", {"secret/data/app/*": ["read"]})
    dev_server.add_approle("web", "role-123", "secret-456", ["app"], token_ttl=120)
    (tmp_path / "role").write_text("role-123")
    (tmp_path / "secret").write_text("secret-456")
    config = {"role_id_file_path": tmp_path / "role", "secret_id_file_path": tmp_path / "secret"}
    with make_store(dev_server, "approle", config=config) as store:
        assert store.read(LOC).data["password"] == "p"
        info = store.token_info
        assert info is not None and info.ttl == 120.0 and info.renewable
    assert not (tmp_path / "secret").exists()
    assert dev_server.request_count("POST", "/v1/auth/approle/login") == 1


def test_approle_bad_secret_id_is_auth_error_naming_files(
    dev_server: DevServer, tmp_path: Path
) -> None:
    """KV2-FC-053 KV2-AC-062: a refused login names the method and the credential files."""
    dev_server.add_approle("web", "role-123", "secret-456", ["default"])
    (tmp_path / "role").write_text("role-123")
    (tmp_path / "secret").write_text("wrong-secret-id")
    config = {"role_id_file_path": tmp_path / "role", "secret_id_file_path": tmp_path / "secret"}
    with make_store(dev_server, "approle", config=config) as store:
        with pytest.raises(AuthError) as err:
            store.login()
    text = str(err.value)
    assert "auth/approle/login" in text and "400" in text
    assert str(tmp_path / "secret") in text
    assert "wrong-secret-id" not in text


@pytest.mark.parametrize("method", ["kubernetes", "jwt"])
def test_jwt_style_logins(dev_server: DevServer, tmp_path: Path, method: str) -> None:
    """KV2-AC-052 KV2-AC-053 KV2-AC-056: kubernetes and jwt logins at a custom mount_path."""
    dev_server.put("app/db", {"password": "p"})
    dev_server.add_policy("app", {"secret/data/app/*": ["read"]})
    mount = f"{method}-prod"
    dev_server.add_jwt("header.payload.sig", "app", ["app"], method=method, mount=mount)
    jwt = tmp_path / "jwt"
    jwt.write_text("header.payload.sig\n")
    key = "token_path" if method == "kubernetes" else "path"
    with make_store(
        dev_server, method, mount_path=f"auth/{mount}", config={"role": "app", key: jwt}
    ) as store:
        assert store.read(LOC).version == 1
    assert dev_server.request_count("POST", f"/v1/auth/{mount}/login") == 1


def test_cert_login_over_mtls(mtls_server: DevServer) -> None:
    """KV2-AC-054: cert login with name, presenting vault.client_cert over TLS."""
    mtls_server.add_policy("app", {"secret/data/app/*": ["read"]})
    mtls_server.add_cert_role("web", ["app"])
    with make_store(
        mtls_server, "cert", vault=client_tls(mtls_server), config={"name": "web"}
    ) as store:
        assert store.read(LOC).data["password"] == "mtls"
    assert mtls_server.request_count("POST", "/v1/auth/cert/login") == 1


# --------------------------------------------------------------------------- 403 and re-login


def approle_store(srv: DevServer, tmp_path: Path, policies: list[str]) -> HvacSecretStore:
    srv.add_approle("web", "role-1", "secret-1", policies, token_ttl=300)
    (tmp_path / "role").write_text("role-1")
    (tmp_path / "secret").write_text("secret-1")
    config = {
        "role_id_file_path": tmp_path / "role",
        "secret_id_file_path": tmp_path / "secret",
    }
    return make_store(srv, "approle", config=config)


def test_403_after_revocation_triggers_one_relogin(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-FC-050: Issue 5: a read that gets 403 logs in again once, and the read then succeeds."""
    dev_server.put("app/db", {"password": "p"})
    dev_server.add_policy("app", {"secret/data/app/*": ["read"]})
    with approle_store(dev_server, tmp_path, ["app"]) as store:
        store.read(LOC)
        first = store.token_info
        revoked = [t for t in _issued_tokens(dev_server) if t != dev_server.root_token]
        for token in revoked:
            dev_server.revoke_token(token)
        assert store.read(LOC).version == 1
        assert store.token_info is not first
    assert dev_server.request_count("POST", "/v1/auth/approle/login") == 2


def _issued_tokens(srv: DevServer) -> list[str]:
    with srv.state.lock:
        return list(srv.state.tokens.tokens)  # the dev server's own token table


def test_concurrent_403s_share_one_relogin(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-NFR-050: Reads denied at once (revoked token) cause one re-login between them, not one
    each."""
    from concurrent.futures import ThreadPoolExecutor

    dev_server.add_policy("app", {"secret/data/app/*": ["read"]})
    for i in range(6):
        dev_server.put(f"app/s{i}", {"v": str(i)})
    with approle_store(dev_server, tmp_path, ["app"]) as store:
        store.login()
        for token in _issued_tokens(dev_server):
            if token != dev_server.root_token:
                dev_server.revoke_token(token)
        with ThreadPoolExecutor(6) as pool:
            versions = list(
                pool.map(lambda i: store.read(SecretLocation("secret", f"app/s{i}")).version,
                         range(6))
            )  # fmt: skip
    assert versions == [1] * 6
    assert dev_server.request_count("POST", "/v1/auth/approle/login") == 2


def test_denial_after_fresh_login_is_final(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-FC-050 KV2-AC-057: Access denied after a fresh login is a real denial: reported, no
    loop."""
    dev_server.put("other/x", {"a": "1"})
    dev_server.add_policy("app", {"secret/data/app/*": ["read"]})
    with approle_store(dev_server, tmp_path, ["app"]) as store:
        with pytest.raises(AccessDeniedError) as err:
            store.read(SecretLocation("secret", "other/x"))
    assert 'grant "read" on "secret/data/other/x"' in str(err.value)
    assert dev_server.request_count("POST", "/v1/auth/approle/login") == 2
    assert dev_server.request_count("GET", "/v1/secret/data/other/x") == 2


def test_revoked_env_token_is_not_relogged(dev_server: DevServer) -> None:
    """KV2-INV-053: a 403 on the environment token is final (it cannot be replaced)."""
    dev_server.put("app/db", {"password": "p"})
    token = dev_server.create_token(["root"], ttl=600)
    with make_store(dev_server, env_token=token) as store:
        store.read(LOC)
        dev_server.revoke_token(token)
        with pytest.raises((AccessDeniedError, AuthError)) as err:
            store.read(LOC)
    assert token not in str(err.value)
    assert dev_server.request_count("GET", "/v1/auth/token/lookup-self") == 1


def test_expired_token_is_replaced_before_a_read(dev_server: DevServer, tmp_path: Path) -> None:
    """KV2-INV-051: ensure_token logs in again when the learned TTL has (nearly) run out."""
    dev_server.put("app/db", {"password": "p"})
    dev_server.add_policy("app", {"secret/data/app/*": ["read"]})
    now = [1000.0]
    dev_server.add_approle("web", "role-1", None, ["app"], token_ttl=60)
    (tmp_path / "role").write_text("role-1")
    settings = VaultSettings(address=dev_server.url, num_retries=-1)
    auth = build_authenticator(
        AuthSettings(type="approle", config=AppRoleSettings(tmp_path / "role"))
    )
    with HvacSecretStore(settings, auth, clock=lambda: now[0]) as store:
        store.read(LOC)
        now[0] += 30
        store.read(LOC)
        assert dev_server.request_count("POST", LOGIN) == 1
        now[0] += 29  # 1s left of 60: inside the safety margin
        store.read(LOC)
    assert dev_server.request_count("POST", LOGIN) == 2


# --------------------------------------------------------------------------- TLS


def test_tls_with_the_right_ca(tls_server: DevServer) -> None:
    """KV2-AC-190: TLS with the right ca_cert."""
    with make_store(
        tls_server, env_token=tls_server.root_token, vault={"ca_cert": tls_server.ca_file}
    ) as store:
        assert store.read(LOC).data["password"] == "tls"


def test_configured_ca_wins_over_requests_ca_bundle(
    tls_server: DevServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-AC-195 / KV2-INV-191: the environment requests reads by itself is ignored."""
    with DevServer(tls=True) as other:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other.ca_file))
        monkeypatch.setenv("CURL_CA_BUNDLE", str(other.ca_file))
        with make_store(
            tls_server, env_token=tls_server.root_token, vault={"ca_cert": tls_server.ca_file}
        ) as store:
            assert store.read(LOC).version == 1


def test_tls_with_a_wrong_ca_says_the_certificate_could_not_be_verified(
    tls_server: DevServer,
) -> None:
    """KV2-FC-190 KV2-AC-191: a wrong CA says the certificate could not be verified."""
    with DevServer(tls=True) as other:
        wrong = other.ca_file
        with make_store(
            tls_server, env_token=tls_server.root_token, vault={"ca_cert": wrong}
        ) as store:
            with pytest.raises(AuthError) as err:
                store.login()
    assert "TLS: the server certificate could not be verified" in str(err.value)
    assert "vault.ca_cert / VAULT_CACERT" in str(err.value)


def test_tls_wrong_ca_on_read_is_not_retried(tls_server: DevServer) -> None:
    """KV2-FC-190: An unverifiable certificate is not transient: no retry, a SecretReadError on
    reads."""
    settings = VaultSettings(
        address=tls_server.url,
        num_retries=5,
        client_cert=tls_server.client_cert_file,
        client_key=tls_server.client_key_file,
    )  # no ca_cert: the dev CA is not in the system store
    slept: list[float] = []
    auth = build_authenticator(
        AuthSettings(type="mtls", config=MtlsSettings(settings.client_cert, settings.client_key))  # type: ignore[arg-type]
    )
    with HvacSecretStore(settings, auth, sleep=slept.append) as store:
        with pytest.raises(SecretReadError, match="could not be verified"):
            store.read(LOC)
    assert slept == []


def test_ca_path_directory_of_pems(tls_server: DevServer, tmp_path: Path) -> None:
    """KV2-AC-190 KV2-INV-191: vault.ca_path: any PEM file names, no c_rehash needed."""
    cadir = tmp_path / "cas"
    cadir.mkdir()
    assert tls_server.ca_file is not None
    (cadir / "dev-ca.crt").write_bytes(tls_server.ca_file.read_bytes())
    (cadir / "README").write_text("not a certificate")
    with make_store(tls_server, env_token=tls_server.root_token, vault={"ca_path": cadir}) as store:
        assert store.read(LOC).version == 1


def test_tls_server_name_is_used_for_sni_and_the_name_check(tls_server: DevServer) -> None:
    """KV2-AC-192: tls_server_name is the SNI and the checked name."""
    vault = {"ca_cert": tls_server.ca_file, "tls_server_name": "localhost"}
    with make_store(tls_server, env_token=tls_server.root_token, vault=vault) as store:
        assert store.read(LOC).version == 1
    vault["tls_server_name"] = "vault.wrong.example"
    with make_store(tls_server, env_token=tls_server.root_token, vault=vault) as store:
        with pytest.raises(AuthError, match="could not be verified") as err:
            store.login()
    assert "tls_server_name" in str(err.value)


def test_tls_skip_verify(tls_server: DevServer) -> None:
    """KV2-INV-190: tls_skip_verify connects without verification (the warning is app.py's)."""
    with make_store(
        tls_server, env_token=tls_server.root_token, vault={"tls_skip_verify": True}
    ) as store:
        assert store.read(LOC).version == 1


def test_required_client_certificate(mtls_server: DevServer) -> None:
    """KV2-AC-193: With the client certificate the read works; without it the error says to set one
    (TLS 1.3 servers may send an alert or just close the connection)."""
    token = mtls_server.root_token
    with make_store(mtls_server, env_token=token, vault=client_tls(mtls_server)) as store:
        assert store.read(LOC).version == 1
    with make_store(mtls_server, env_token=token, vault={"ca_cert": mtls_server.ca_file}) as bare:
        with pytest.raises((AuthError, TransientError)) as err:
            bare.login()
    assert "vault.client_cert" in str(err.value)


# --------------------------------------------------------------------------- targets


def test_namespace_from_settings(dev_server: DevServer) -> None:
    """KV2-INV-192 KV2-AC-196: vault.namespace reaches the namespaced mount."""
    dev_server.add_namespace("team-a")
    dev_server.add_mount("secret", namespace="team-a")
    dev_server.put("app/db", {"password": "ns"}, mount="team-a/secret")
    token = dev_server.root_token
    with make_store(dev_server, env_token=token, vault={"namespace": "team-a/"}) as store:
        assert store.read(LOC).data["password"] == "ns"
    with make_store(dev_server, env_token=token) as root:
        with pytest.raises(SecretReadError):
            root.read(LOC)


def test_openbao_flavour(tmp_path: Path) -> None:
    """KV2-AC-197: the openbao flavour (no mount_type) reads the same."""
    with DevServer(flavor="openbao") as srv:
        srv.put("app/db", {"password": "bao"})
        with make_store(srv, env_token=srv.root_token) as store:
            assert store.read(LOC).data["password"] == "bao"


def test_ovh_base_path_with_bearer_token_file(tmp_path: Path) -> None:
    """KV2-INV-193 KV2-INV-055 KV2-AC-199: OVHcloud: /api/<okms-id> base path, Authorization:
    Bearer from a file, no login."""
    with DevServer(flavor="ovh") as srv:
        assert "/api/" in srv.url
        srv.put("prod/db", {"password": "ovh"})
        pat = tmp_path / "pat"
        pat.write_text(srv.create_token(["root"]) + "\n")
        with make_store(srv, "bearer_token_file", config={"token_file_path": pat}) as store:
            assert store.read(SecretLocation("secret", "prod/db")).data["password"] == "ovh"
            assert store.token_info is None
            with pytest.raises(AuthError, match="no token"):
                store.renew()
        assert srv.request_count("POST", LOGIN) == 0
        assert srv.request_count("GET", "/v1/secret/data/prod/db") == 1


def test_ovh_401_names_the_token_file(tmp_path: Path) -> None:
    """KV2-FC-191 KV2-AC-200: a 401 names the bearer token file."""
    with DevServer(flavor="ovh") as srv:
        srv.put("prod/db", {"password": "ovh"})
        pat = tmp_path / "pat"
        pat.write_text("not-a-valid-token")
        with make_store(srv, "bearer_token_file", config={"token_file_path": pat}) as store:
            with pytest.raises(AuthError) as err:
                store.read(SecretLocation("secret", "prod/db"))
    assert "401 unauthorized" in str(err.value)
    assert f"the bearer token in {pat}" in str(err.value)
    assert "not-a-valid-token" not in str(err.value)


def test_ovh_mtls_identity(tmp_path: Path) -> None:
    """KV2-INV-055 KV2-AC-198: OVHcloud access certificate: mTLS, no token header, no login."""
    with DevServer(flavor="ovh", tls=True, require_client_cert=True) as srv:
        srv.put("prod/db", {"password": "okms"})
        with make_store(srv, "mtls", vault=client_tls(srv)) as store:
            assert store.read(SecretLocation("secret", "prod/db")).data["password"] == "okms"
        assert srv.request_count("POST", LOGIN) == 0


def test_ovh_401_names_the_client_certificate(tls_server: DevServer) -> None:
    """KV2-FC-191 KV2-AC-200: mtls over a connection that carries no certificate (plain http): the
    401 says which
    certificate to check."""
    vault = {"client_cert": tls_server.client_cert_file, "client_key": tls_server.client_key_file}
    with DevServer(flavor="ovh") as srv:
        srv.put("prod/db", {"password": "okms"})
        with make_store(srv, "mtls", vault=vault) as store:
            with pytest.raises(AuthError) as err:
                store.read(SecretLocation("secret", "prod/db"))
    assert "401 unauthorized" in str(err.value)
    assert f"the client certificate {tls_server.client_cert_file}" in str(err.value)


# --------------------------------------------------------------------------- hygiene


def test_credentials_never_appear_in_errors_reprs_or_logs(
    dev_server: DevServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """KV2-INV-001: sentinel token, secret_id, JWT and secret value never appear in exception
    text, reprs or DEBUG logs, on success and failure paths."""
    caplog.set_level(logging.DEBUG)
    secret_value = "SENTINEL-secret-value-91c2"
    secret_id = "SENTINEL-secret-id-4b7e"
    jwt = "SENTINEL.jwt.body-8d3f"
    token = dev_server.create_token(["root"], ttl=600, token_id="hvs.SENTINEL-token-6a1d")
    sentinels = [secret_value, secret_id, jwt, token]
    dev_server.put("app/db", {"password": secret_value})
    dev_server.add_approle("web", "role-1", secret_id, ["nothing"])
    dev_server.add_jwt(jwt, "app", ["nothing"], method="jwt")
    (tmp_path / "role").write_text("role-1")
    (tmp_path / "sid").write_text(secret_id)
    (tmp_path / "jwt").write_text(jwt)
    (tmp_path / "bad-sid").write_text(secret_id + "x")
    texts: list[str] = []

    def attempt(store: HvacSecretStore, location: SecretLocation = LOC) -> None:
        texts.append(repr(store))
        try:
            version = store.read(location)
            texts.extend([repr(version), str(version.metadata), repr(store.token_info)])
            store.renew()
        except Kv2RenderError as exc:
            texts.extend([str(exc), repr(exc), str(exc.__cause__)])
        finally:
            store.close()

    attempt(make_store(dev_server, env_token=token))
    attempt(make_store(dev_server, env_token=token), SecretLocation("secret", "missing"))
    attempt(make_store(dev_server, env_token=token + "x"))
    approle = {"role_id_file_path": tmp_path / "role", "secret_id_file_path": tmp_path / "sid",
               "remove_secret_id_file_after_reading": False}  # fmt: skip
    attempt(make_store(dev_server, "approle", config=approle))  # logs in, then 403
    attempt(make_store(dev_server, "approle", config={**approle,
            "secret_id_file_path": tmp_path / "bad-sid"}))  # fmt: skip
    # Kept (KV2-INV-494 removes it after a login by default) for the refused login below.
    jwt_conf = {"path": tmp_path / "jwt", "remove_jwt_after_reading": False}
    attempt(make_store(dev_server, "jwt", config={"role": "app", **jwt_conf}))
    attempt(make_store(dev_server, "jwt", config={"role": "nope", **jwt_conf}))
    dev_server.faults.status = 503
    attempt(make_store(dev_server, env_token=token))
    dev_server.faults.status = None
    texts.append(caplog.text)
    texts.extend(r.getMessage() for r in caplog.records)
    joined = "\n".join(texts)
    assert "permission denied" in joined  # the failure paths really ran
    assert "503" in joined
    for sentinel in sentinels:
        assert sentinel not in joined, sentinel
