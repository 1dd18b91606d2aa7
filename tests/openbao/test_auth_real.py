"""Every login method the real OpenBao server can serve here, driven through ``kv2render --once``.

Each test writes a YAML config the way an operator would, runs ``python -m kv2render --once`` as
a subprocess against ``bao server -dev`` (or ``-dev-tls``), and checks the exit code (README
table), the output bytes and mode 0600, and that stdout/stderr (debug level) never carry the
secret value or the credential: token, secret_id, JWT (KV2-INV-001).

Methods: ``token_file``; ``approle`` (role_id + secret_id files, bound-CIDR role without a
secret_id, a custom mount, a used-up and an expired secret_id); ``jwt`` (an RSA key pair made
here, ``jwt_validation_pubkeys``, ``bound_audiences``, ``user_claim``); ``cert`` (a client CA made
here, registered as a trusted certificate on the TLS server); ``kubernetes`` (the real method,
asking a small local HTTPS TokenReview API that stands in for the Kubernetes API server).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.openbao.authkit import (
    SENTINEL_VALUE,
    JwtSigner,
    Pki,
    TokenReviewApi,
    assert_no_leak,
    assert_secret_file,
    once_config,
    private_file,
    run_once,
    seed_secret,
)
from tests.realbao import BaoServer, unique

pytestmark = pytest.mark.openbao


# --------------------------------------------------------------------------- helpers


def approle(
    server: BaoServer, policy: str, *, mount: str = "approle", **role: Any
) -> tuple[str, str]:
    """A role on ``mount`` with ``policy``; returns (role name, role_id)."""
    server.enable_auth("approle", mount)
    name = unique("role")
    server.api("POST", f"auth/{mount}/role/{name}", {"token_policies": [policy], **role})
    role_id = server.api("GET", f"auth/{mount}/role/{name}/role-id")["data"]["role_id"]
    return name, str(role_id)


def new_secret_id(server: BaoServer, name: str, *, mount: str = "approle", **params: Any) -> str:
    out = server.api("POST", f"auth/{mount}/role/{name}/secret-id", params)
    return str(out["data"]["secret_id"])


def approle_method(
    workdir: Path, role_id: str, secret_id: str | None, *, remove: bool, mount: str | None = None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "role_id_file_path": str(private_file(workdir / "role_id", role_id)),
        "remove_secret_id_file_after_reading": remove,
    }
    if secret_id is not None:
        config["secret_id_file_path"] = str(private_file(workdir / "secret_id", secret_id))
    method: dict[str, Any] = {"type": "approle", "config": config}
    if mount is not None:
        method["mount_path"] = mount
    return method


# --------------------------------------------------------------------------- token_file


def test_token_file_renders(bao_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-050 KV2-AC-300: a child token in a token_file (trailing newline trimmed)."""
    path, policy = seed_secret(bao_server, "auth")
    token = bao_server.create_token(policies=[policy], ttl="5m")
    token_file = private_file(workdir / "token", token)
    method = {"type": "token_file", "config": {"token_file_path": str(token_file)}}
    config, dest = once_config(workdir, bao_server, path, method)
    result = run_once(config)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)
    assert_no_leak(result.text, token)


def test_token_file_with_revoked_token_exits_3(bao_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-062 KV2-FC-053: the real server answers 403 "permission denied" to a revoked
    token's lookup-self: exit 3 naming the token file, no output, the token never shown."""
    path, policy = seed_secret(bao_server, "auth")
    token = bao_server.create_token(policies=[policy])
    bao_server.revoke_token(token)
    token_file = private_file(workdir / "token", token)
    method = {"type": "token_file", "config": {"token_file_path": str(token_file)}}
    config, dest = once_config(workdir, bao_server, path, method)
    result = run_once(config)
    assert result.code == 3, result.text
    assert "auth/token/lookup-self" in result.err and str(token_file) in result.err
    assert not dest.exists()
    assert_no_leak(result.text, token)


def test_token_file_without_read_policy_exits_4(bao_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-057 KV2-FC-050 KV2-AC-304 KV2-INV-300: a valid token without `read` on the
    path: exit 4 naming the policy path, after the one re-login KV2-INV-056 allows (still
    denied); the server's multi-line error text reaches the log as one line."""
    path, _policy = seed_secret(bao_server, "auth")
    token = bao_server.create_token(policies=["default"])
    token_file = private_file(workdir / "token", token)
    method = {"type": "token_file", "config": {"token_file_path": str(token_file)}}
    config, dest = once_config(workdir, bao_server, path, method)
    result = run_once(config)
    assert result.code == 4, result.text
    assert f'grant "read" on "secret/data/{path}"' in result.err
    # KV2-AC-304: the server's "1 error occurred:\n\t* permission denied\n\n" is one line.
    denied = [line for line in result.err.splitlines() if "(403)" in line]
    assert denied and all(line.startswith("20") for line in result.err.splitlines())
    assert "permission denied (403): permission denied;" in denied[-1]
    assert "error occurred" not in result.err
    assert not dest.exists()
    assert_no_leak(result.text, token)


# --------------------------------------------------------------------------- approle


@pytest.mark.parametrize("remove", [True, False], ids=["remove", "keep"])
def test_approle_renders_and_handles_the_secret_id_file(
    bao_server: BaoServer, workdir: Path, remove: bool
) -> None:
    """KV2-AC-051 KV2-AC-300: role_id and secret_id files; the secret_id file is removed after
    a successful login when asked to, and kept otherwise."""
    path, policy = seed_secret(bao_server, "auth")
    name, role_id = approle(bao_server, policy)
    secret_id = new_secret_id(bao_server, name)
    method = approle_method(workdir, role_id, secret_id, remove=remove)
    config, dest = once_config(workdir, bao_server, path, method)
    result = run_once(config)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)
    assert (workdir / "secret_id").exists() is not remove
    assert_no_leak(result.text, role_id, secret_id)


def test_approle_wrong_secret_id_exits_3(bao_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-062 KV2-FC-055: the server's 400 "invalid role or secret ID" exits 3 at once (no
    retry in --once), naming auth/approle/login and the files to check."""
    path, policy = seed_secret(bao_server, "auth")
    _name, role_id = approle(bao_server, policy)
    wrong = "S3NTINEL-wrong-secret-id-00000000"
    method = approle_method(workdir, role_id, wrong, remove=False)
    config, dest = once_config(workdir, bao_server, path, method)
    started = time.monotonic()
    result = run_once(config)
    assert result.code == 3, result.text
    assert time.monotonic() - started < 15  # no retry storm on a refusal
    assert "auth/approle/login" in result.err and "invalid role or secret ID" in result.err
    assert str(workdir / "secret_id") in result.err
    assert "retry" not in result.err.lower()
    assert not dest.exists()
    assert_no_leak(result.text, role_id, wrong)


@pytest.mark.parametrize("remove", [True, False], ids=["remove", "keep"])
def test_approle_used_up_secret_id_exits_3(
    bao_server: BaoServer, workdir: Path, remove: bool
) -> None:
    """KV2-AC-301: a secret_id with num_uses=1 logs in once; the next run, handed the same
    secret_id again, exits 3 naming auth/approle/login, and the last good file is kept."""
    path, policy = seed_secret(bao_server, "auth")
    name, role_id = approle(bao_server, policy)
    secret_id = new_secret_id(bao_server, name, num_uses=1)
    method = approle_method(workdir, role_id, secret_id, remove=remove)
    config, dest = once_config(workdir, bao_server, path, method)
    first = run_once(config)
    assert first.code == 0, first.text
    assert_secret_file(dest, SENTINEL_VALUE)

    private_file(workdir / "secret_id", secret_id)  # the operator's stale file, again
    second = run_once(config)
    assert second.code == 3, second.text
    assert "auth/approle/login" in second.err and "invalid role or secret ID" in second.err
    assert_secret_file(dest, SENTINEL_VALUE)  # the failed run did not touch it
    assert_no_leak(first.text + second.text, role_id, secret_id)


def test_approle_expired_secret_id_exits_3(bao_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-301: a secret_id whose TTL (1 s) has passed exits 3 naming auth/approle/login."""
    path, policy = seed_secret(bao_server, "auth")
    name, role_id = approle(bao_server, policy)
    secret_id = new_secret_id(bao_server, name, ttl="1s")
    method = approle_method(workdir, role_id, secret_id, remove=False)
    config, dest = once_config(workdir, bao_server, path, method)
    time.sleep(1.5)
    result = run_once(config)
    assert result.code == 3, result.text
    assert "auth/approle/login" in result.err and "invalid role or secret ID" in result.err
    assert not dest.exists()
    assert_no_leak(result.text, role_id, secret_id)


def test_approle_custom_mount_path(bao_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-056 KV2-INV-060: approle enabled at a custom path, named bare in mount_path."""
    path, policy = seed_secret(bao_server, "auth")
    mount = unique("approle")
    name, role_id = approle(bao_server, policy, mount=mount)
    secret_id = new_secret_id(bao_server, name, mount=mount)
    method = approle_method(workdir, role_id, secret_id, remove=False, mount=mount)
    config, dest = once_config(workdir, bao_server, path, method)
    result = run_once(config)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)
    assert f"approle at auth/{mount}" in result.err
    assert_no_leak(result.text, role_id, secret_id)


def test_approle_without_secret_id(bao_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-300: a role with bind_secret_id=false (bound to 127.0.0.1 instead) logs in with
    the role_id alone, no secret_id_file_path."""
    path, policy = seed_secret(bao_server, "auth")
    _name, role_id = approle(
        bao_server, policy, bind_secret_id=False, secret_id_bound_cidrs=["127.0.0.1/32"]
    )
    method = approle_method(workdir, role_id, None, remove=False)
    config, dest = once_config(workdir, bao_server, path, method)
    result = run_once(config)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)
    assert_no_leak(result.text, role_id)


# --------------------------------------------------------------------------- jwt


@pytest.fixture(scope="module")
def jwt_auth(bao_server: BaoServer) -> Iterator[tuple[str, JwtSigner]]:
    """A jwt auth mount trusting one RSA public key; yields (mount, signer)."""
    signer = JwtSigner()
    mount = bao_server.enable_auth("jwt", unique("jwt"))
    bao_server.api("POST", f"auth/{mount}/config", {"jwt_validation_pubkeys": [signer.public_pem]})
    yield mount, signer


def jwt_role(server: BaoServer, mount: str, policy: str) -> str:
    role = unique("jwtrole")
    server.api(
        "POST",
        f"auth/{mount}/role/{role}",
        {
            "role_type": "jwt",
            "bound_audiences": ["kv2render-test"],
            "user_claim": "sub",
            "token_policies": [policy],
            "token_ttl": "5m",
        },
    )
    return role


def jwt_method(workdir: Path, mount: str, role: str, jwt: str) -> dict[str, Any]:
    jwt_file = private_file(workdir / "jwt", jwt)
    return {
        "type": "jwt",
        "mount_path": f"auth/{mount}",
        "config": {"role": role, "path": str(jwt_file)},
    }


def test_jwt_renders(bao_server: BaoServer, workdir: Path, jwt_auth: tuple[str, JwtSigner]) -> None:
    """KV2-AC-053 KV2-AC-300: an RS256 JWT signed by a key the mount trusts, right audience."""
    mount, signer = jwt_auth
    path, policy = seed_secret(bao_server, "auth")
    role = jwt_role(bao_server, mount, policy)
    jwt = signer.sign({"sub": "kv2render-app", "aud": "kv2render-test"})
    config, dest = once_config(workdir, bao_server, path, jwt_method(workdir, mount, role, jwt))
    result = run_once(config)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)
    assert f"jwt at auth/{mount}, role '{role}'" in result.err
    assert_no_leak(result.text, jwt)


@pytest.mark.parametrize(
    "case",
    ["wrong-audience", "expired", "unknown-key", "no-subject"],
)
def test_jwt_refused_exits_3(
    bao_server: BaoServer, workdir: Path, jwt_auth: tuple[str, JwtSigner], case: str
) -> None:
    """KV2-AC-302: a JWT the real server refuses exits 3 naming the login path and the JWT
    file, never showing the JWT."""
    mount, signer = jwt_auth
    path, policy = seed_secret(bao_server, "auth")
    role = jwt_role(bao_server, mount, policy)
    claims: dict[str, Any] = {"sub": "kv2render-app", "aud": "kv2render-test"}
    if case == "wrong-audience":
        jwt = signer.sign({**claims, "aud": "someone-else"})
    elif case == "expired":
        jwt = signer.sign({**claims, "iat": int(time.time()) - 600, "nbf": int(time.time()) - 600,
                           "exp": int(time.time()) - 300})  # fmt: skip
    elif case == "unknown-key":
        jwt = JwtSigner().sign(claims)
    else:
        jwt = signer.sign({"aud": "kv2render-test"})
    config, dest = once_config(workdir, bao_server, path, jwt_method(workdir, mount, role, jwt))
    result = run_once(config)
    assert result.code == 3, result.text
    assert f"auth/{mount}/login" in result.err
    assert str(workdir / "jwt") in result.err
    assert not dest.exists()
    assert_no_leak(result.text, jwt)


# --------------------------------------------------------------------------- cert


@pytest.fixture(scope="module")
def client_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("client-pki"), name="kv2render client CA")


def cert_role(server: BaoServer, pki: Pki, policy: str) -> tuple[str, str]:
    """cert auth on a unique mount trusting ``pki``'s CA; (mount, cert role name)."""
    mount = server.enable_auth("cert", unique("cert"))
    name = unique("certrole")
    server.api(
        "POST",
        f"auth/{mount}/certs/{name}",
        {"certificate": pki.ca_pem.decode("ascii"), "token_policies": [policy], "token_ttl": "5m"},
    )
    return mount, name


@pytest.mark.parametrize("named", [True, False], ids=["name", "no-name"])
def test_cert_auth_renders(
    bao_tls_server: BaoServer, workdir: Path, client_pki: Pki, named: bool
) -> None:
    """KV2-AC-054 KV2-AC-300: the TLS client certificate is the credential; with or without
    the cert role's `name` (the server then tries every trusted certificate)."""
    path, policy = seed_secret(bao_tls_server, "auth")
    mount, name = cert_role(bao_tls_server, client_pki, policy)
    cert, key = client_pki.issue(unique("client"), "kv2render-app")
    method: dict[str, Any] = {"type": "cert", "mount_path": f"auth/{mount}"}
    if named:
        method["config"] = {"name": name}
    vault = {"client_cert": str(cert), "client_key": str(key)}
    config, dest = once_config(workdir, bao_tls_server, path, method, vault=vault)
    result = run_once(config)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)
    assert f"cert at auth/{mount}" in result.err
    assert_no_leak(result.text, key.read_text())


def test_cert_auth_untrusted_certificate_exits_3(
    bao_tls_server: BaoServer, workdir: Path, client_pki: Pki, tmp_path: Path
) -> None:
    """KV2-AC-303: a client certificate from a CA the cert mount does not trust: exit 3 naming
    auth/<mount>/login and the certificate file."""
    path, policy = seed_secret(bao_tls_server, "auth")
    mount, name = cert_role(bao_tls_server, client_pki, policy)
    stranger = Pki(tmp_path / "stranger", name="some other CA")
    cert, key = stranger.issue("client", "intruder")
    vault = {"client_cert": str(cert), "client_key": str(key)}
    method = {"type": "cert", "mount_path": f"auth/{mount}", "config": {"name": name}}
    config, dest = once_config(workdir, bao_tls_server, path, method, vault=vault)
    result = run_once(config)
    assert result.code == 3, result.text
    assert f"auth/{mount}/login" in result.err and str(cert) in result.err
    assert not dest.exists()
    assert_no_leak(result.text, key.read_text())


def test_cert_auth_without_client_certificate_exits_2(
    bao_tls_server: BaoServer, workdir: Path
) -> None:
    """KV2-FC-053: `cert` without vault.client_cert is a config error naming the key (exit 2),
    found before any request."""
    path, _policy = seed_secret(bao_tls_server, "auth")
    config, _dest = once_config(workdir, bao_tls_server, path, {"type": "cert"})
    result = run_once(config)
    assert result.code == 2, result.text
    assert "vault.client_cert" in result.err


# --------------------------------------------------------------------------- kubernetes


@pytest.fixture(scope="module")
def k8s_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenReviewApi]:
    api = TokenReviewApi(Pki(tmp_path_factory.mktemp("k8s-pki"), name="fake kubernetes CA"))
    api.start()
    yield api
    api.stop()


def k8s_mount(server: BaoServer, api: TokenReviewApi, policy: str) -> tuple[str, str]:
    """kubernetes auth on a unique mount, pointed at the fake API; (mount, role)."""
    mount = server.enable_auth("kubernetes", unique("k8s"))
    server.api(
        "POST",
        f"auth/{mount}/config",
        {
            "kubernetes_host": api.address,
            "kubernetes_ca_cert": api.pki.ca_pem.decode("ascii"),
            "disable_local_ca_jwt": True,
        },
    )
    role = unique("k8srole")
    server.api(
        "POST",
        f"auth/{mount}/role/{role}",
        {
            "bound_service_account_names": ["app"],
            "bound_service_account_namespaces": ["shop"],
            "token_policies": [policy],
            "token_ttl": "5m",
        },
    )
    return mount, role


def service_account_jwt(signer: JwtSigner, namespace: str, name: str, uid: str) -> str:
    """A projected service-account token's claims (the signature is the API server's business:
    the TokenReview decides)."""
    return signer.sign(
        {
            "iss": "https://kubernetes.default.svc",
            "sub": f"system:serviceaccount:{namespace}:{name}",
            "aud": ["https://kubernetes.default.svc"],
            "kubernetes.io": {
                "namespace": namespace,
                "serviceaccount": {"name": name, "uid": uid},
            },
        }
    )


@pytest.mark.parametrize("known", [True, False], ids=["reviewed", "unknown-token"])
def test_kubernetes_auth(
    bao_server: BaoServer, workdir: Path, k8s_api: TokenReviewApi, known: bool
) -> None:
    """KV2-AC-052 KV2-AC-300 KV2-AC-302: the service-account JWT at token_path logs in at
    auth/<mount>/login; the server asks the TokenReview API. A token the API does not
    recognise exits 3 naming the token file, never showing the JWT."""
    path, policy = seed_secret(bao_server, "auth")
    mount, role = k8s_mount(bao_server, k8s_api, policy)
    uid = unique("uid")
    jwt = service_account_jwt(JwtSigner(), "shop", "app", uid)
    if known:
        k8s_api.accounts[jwt] = ("shop", "app", uid)
    token_file = private_file(workdir / "sa-token", jwt)
    method = {
        "type": "kubernetes",
        "mount_path": mount,
        "config": {"role": role, "token_path": str(token_file)},
    }
    config, dest = once_config(workdir, bao_server, path, method)
    result = run_once(config)
    assert_no_leak(result.text, jwt)
    if known:
        assert result.code == 0, result.text
        assert_secret_file(dest, SENTINEL_VALUE)
        assert any(r.get("spec", {}).get("token") == jwt for r in k8s_api.reviews)
    else:
        assert result.code == 3, result.text
        assert f"auth/{mount}/login" in result.err and str(token_file) in result.err
        assert not dest.exists()
