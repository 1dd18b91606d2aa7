"""One protocol, three targets: TLS, namespaces, base paths and identities, end to end.

Every test drives the real CLI (``kv2render --once``) against the embedded KV2 dev server
over a real socket, in the flavour of the target it stands for (vault, openbao, ovh), mostly
over TLS. Issue 6; spec rules KV2-INV-190..194, KV2-FC-190/191, KV2-AC-190..202.

Where a test must see request headers (namespace, token, bearer), it wraps the dev server's
router with :class:`HeaderSpy`, which records header *presence* and the namespace; secret
values and tokens are compared in memory, never printed.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import ssl
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kv2render.devserver import DevServer

from .cli_helpers import CliResult, run_cli, run_cli_subprocess, write_config

REF = "vault+kv2:///secret/data/app/db#password"
OVH_REF = "vault+kv2:///secret/data/prod/db#password"
PASSWORD = "s3cr3t-value-7781"  # a sentinel: it must reach the file and nothing else
MOUNTS_UI = "/v1/sys/internal/ui/mounts"
VERIFY_FAILED = "the server certificate could not be verified"


# --------------------------------------------------------------------------- helpers


@dataclass
class Seen:
    method: str
    path: str
    namespace: str | None
    token_header: bool  # X-Vault-Token present
    bearer: str | None  # the Authorization: Bearer credential (compared, never printed)


class HeaderSpy:
    """Wraps a DevServer's router (looked up per request by the HTTP layer) to record what
    each request carried. Test-only: the product never sees it."""

    def __init__(self, server: DevServer) -> None:
        self._inner = server.router
        self.seen: list[Seen] = []
        server.router = self  # type: ignore[assignment]

    def handle(self, req: Any) -> Any:
        auth = req.headers.get("authorization", "")
        scheme, _, cred = auth.partition(" ")
        self.seen.append(
            Seen(
                req.method,
                "/v1/" + req.path,
                req.headers.get("x-vault-namespace"),
                "x-vault-token" in req.headers,
                cred.strip() if scheme.lower() == "bearer" else None,
            )
        )
        return self._inner.handle(req)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def render_config(
    workdir: Path,
    vault: dict[str, Any] | None = None,
    auth: dict[str, Any] | None = None,
    *,
    ref: str = REF,
    contents: str | None = None,
) -> Path:
    template: dict[str, Any] = {"destination": str(workdir / "out")}
    if contents is not None:
        template["contents"] = contents
    else:
        template["ref"] = ref
    tree: dict[str, Any] = {}
    if vault:
        tree["vault"] = {k: str(v) if isinstance(v, Path) else v for k, v in vault.items()}
    if auth:
        tree["auto_auth"] = {"method": auth}
    tree["template"] = [template]
    return write_config(workdir, tree)


def once(cfg: Path, env: dict[str, str] | None = None) -> CliResult:
    return run_cli(["--config", str(cfg), "--once"], env or {})


def assert_rendered(workdir: Path, result: CliResult, expected: str = PASSWORD) -> None:
    assert result.code == 0, result.text
    out = workdir / "out"
    assert out.read_bytes() == expected.encode()
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert expected not in result.text  # the value reaches the file, never the log


def assert_no_mount_discovery(server: DevServer) -> None:
    """KV2-INV-194: the reference grammar fixes the mount; discovery is never asked."""
    assert server.request_count(path_prefix=MOUNTS_UI) == 0


@pytest.fixture
def tls_server() -> Iterator[DevServer]:
    with DevServer(tls=True) as srv:
        srv.put("app/db", {"password": PASSWORD})
        yield srv


@pytest.fixture
def other_ca() -> Iterator[Path]:
    """A CA that did not sign the server's certificate."""
    with DevServer(tls=True) as other:
        assert other.ca_file is not None
        yield other.ca_file


@dataclass(frozen=True)
class NamedPki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def named_pki(directory: Path, dns_name: str) -> NamedPki:
    """A CA and a server certificate valid for ``dns_name`` only (no IP SAN), so that
    connecting to 127.0.0.1 verifies only when tls_server_name says ``dns_name``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(name("targets test CA"))
        .issuer_name(name("targets test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(dns_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(mode=0o700, exist_ok=True)
    pki = NamedPki(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pki.key_file.chmod(0o600)
    return pki


# --------------------------------------------------------------------------- CA trust


def test_right_ca_from_vault_ca_cert(tls_server: DevServer, workdir: Path) -> None:
    """KV2-AC-190 KV2-INV-191: vault.ca_cert is the trust anchor for a private CA."""
    cfg = render_config(workdir, {"address": tls_server.url, "ca_cert": tls_server.ca_file})
    assert_rendered(workdir, once(cfg, {"VAULT_TOKEN": tls_server.root_token}))
    assert_no_mount_discovery(tls_server)


@pytest.mark.parametrize("variable", ["VAULT_CACERT", "BAO_CACERT"])
def test_right_ca_from_the_environment(tls_server: DevServer, workdir: Path, variable: str) -> None:
    """KV2-AC-190 KV2-INV-031: VAULT_CACERT / BAO_CACERT when the file sets no CA."""
    cfg = render_config(workdir, {"address": tls_server.url})
    env = {variable: str(tls_server.ca_file), "VAULT_TOKEN": tls_server.root_token}
    assert_rendered(workdir, once(cfg, env))


def test_bao_cacert_is_read_before_vault_cacert(
    tls_server: DevServer, workdir: Path, other_ca: Path
) -> None:
    """KV2-INV-031 KV2-AC-190: BAO_CACERT wins over a wrong VAULT_CACERT (OpenBao's order)."""
    cfg = render_config(workdir, {"address": tls_server.url})
    env = {
        "BAO_CACERT": str(tls_server.ca_file),
        "VAULT_CACERT": str(other_ca),
        "VAULT_TOKEN": tls_server.root_token,
    }
    assert_rendered(workdir, once(cfg, env))


@pytest.mark.parametrize("source", ["config", "VAULT_CAPATH", "BAO_CAPATH"])
def test_right_ca_from_a_ca_path_directory(
    tls_server: DevServer, workdir: Path, tmp_path_factory: pytest.TempPathFactory, source: str
) -> None:
    """KV2-AC-190: vault.ca_path (and VAULT_CAPATH / BAO_CAPATH) is a directory of PEM files,
    any file names (not c_rehash'ed), other files ignored."""
    assert tls_server.ca_file is not None
    cadir = tmp_path_factory.mktemp("cadir")
    shutil.copy(tls_server.ca_file, cadir / "corporate-root.crt")
    (cadir / "README").write_text("not a certificate\n")
    env = {"VAULT_TOKEN": tls_server.root_token}
    vault: dict[str, Any] = {"address": tls_server.url}
    if source == "config":
        vault["ca_path"] = cadir
    else:
        env[source] = str(cadir)
    assert_rendered(workdir, once(render_config(workdir, vault), env))


def test_ca_cert_wins_over_ca_path(
    tls_server: DevServer, workdir: Path, tmp_path_factory: pytest.TempPathFactory, other_ca: Path
) -> None:
    """KV2-INV-191: with both set, ca_cert is used (Vault's client order), not ca_path."""
    cadir = tmp_path_factory.mktemp("cadir")
    shutil.copy(other_ca, cadir / "wrong.pem")
    vault = {"address": tls_server.url, "ca_cert": tls_server.ca_file, "ca_path": cadir}
    result = once(render_config(workdir, vault), {"VAULT_TOKEN": tls_server.root_token})
    assert_rendered(workdir, result)


@pytest.mark.parametrize("trust", ["wrong ca_cert", "system store"])
def test_wrong_ca_fails_once_with_a_verification_message(
    tls_server: DevServer, workdir: Path, other_ca: Path, trust: str
) -> None:
    """KV2-AC-191 KV2-FC-190 KV2-INV-190: an unverifiable certificate exits non-zero after one
    attempt (no retry: retrying cannot fix it), says the certificate could not be verified and
    names the settings to check; nothing is written. Verification is on by default."""
    vault: dict[str, Any] = {"address": tls_server.url}
    if trust == "wrong ca_cert":
        vault["ca_cert"] = other_ca
    result = once(render_config(workdir, vault), {"VAULT_TOKEN": tls_server.root_token})
    assert result.code != 0
    assert VERIFY_FAILED in result.text
    assert "vault.ca_cert" in result.text and "tls_server_name" in result.text
    assert "retry" not in result.text.lower()
    assert not (workdir / "out").exists()
    assert tls_server.request_count() == 0  # no request ever got past the handshake
    assert tls_server.root_token not in result.text


def test_wrong_ca_bundle_in_requests_environment_does_not_replace_the_configured_ca(
    tls_server: DevServer, workdir: Path, other_ca: Path
) -> None:
    """KV2-AC-195 KV2-INV-191: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE pointing at a wrong CA
    (hvac's session.verify quirk, kv2-wire §6.1) do not override vault.ca_cert. A subprocess,
    so the variables are in place before requests and hvac are imported."""
    cfg = render_config(workdir, {"address": tls_server.url, "ca_cert": tls_server.ca_file})
    env = {
        "REQUESTS_CA_BUNDLE": str(other_ca),
        "CURL_CA_BUNDLE": str(other_ca),
        "SSL_CERT_FILE": str(other_ca),
        "VAULT_TOKEN": tls_server.root_token,
    }
    result = run_cli_subprocess(["--config", str(cfg), "--once"], env)
    assert_rendered(workdir, result)


def test_requests_ca_bundle_alone_is_not_trusted(tls_server: DevServer, workdir: Path) -> None:
    """KV2-INV-030 KV2-INV-191: the trust store comes from the config (or VAULT_CACERT), never
    from a variable requests would read by itself: a right CA in REQUESTS_CA_BUNDLE alone does
    not make verification pass."""
    cfg = render_config(workdir, {"address": tls_server.url})
    env = {"REQUESTS_CA_BUNDLE": str(tls_server.ca_file), "VAULT_TOKEN": tls_server.root_token}
    result = run_cli_subprocess(["--config", str(cfg), "--once"], env)
    assert result.code != 0
    assert VERIFY_FAILED in result.text


# --------------------------------------------------------------------------- server name


@pytest.fixture
def named_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevServer, Path]]:
    """A TLS dev server whose certificate names only kv2-dev.internal; SNI names recorded."""
    pki = named_pki(tmp_path_factory.mktemp("pki"), "kv2-dev.internal")
    srv = DevServer(tls=True, cert_file=pki.cert_file, key_file=pki.key_file)
    sni: list[str | None] = []
    # The server's SSLContext is private to the dev server; recording the SNI name the
    # client sent is the only way to see that tls_server_name reaches the handshake.
    ctx: ssl.SSLContext = srv._ssl  # type: ignore[assignment]
    ctx.sni_callback = lambda _sock, server_name, _ctx: sni.append(server_name)  # type: ignore[assignment,misc,return-value]
    srv.sni = sni  # type: ignore[attr-defined]
    with srv:
        srv.put("app/db", {"password": PASSWORD})
        yield srv, pki.ca_file


def test_tls_server_name_sets_sni_and_the_checked_name(
    named_server: tuple[DevServer, Path], workdir: Path
) -> None:
    """KV2-AC-192: connecting to 127.0.0.1, tls_server_name is sent as SNI and the certificate
    is checked against it."""
    srv, ca = named_server
    assert "127.0.0.1" in srv.url
    vault = {"address": srv.url, "ca_cert": ca, "tls_server_name": "kv2-dev.internal"}
    assert_rendered(workdir, once(render_config(workdir, vault), {"VAULT_TOKEN": srv.root_token}))
    assert srv.sni and set(srv.sni) == {"kv2-dev.internal"}  # type: ignore[attr-defined]


def test_tls_server_name_from_the_environment(
    named_server: tuple[DevServer, Path], workdir: Path
) -> None:
    """KV2-AC-192 KV2-INV-031: VAULT_TLS_SERVER_NAME is the environment fallback."""
    srv, ca = named_server
    cfg = render_config(workdir, {"address": srv.url, "ca_cert": ca})
    env = {"VAULT_TLS_SERVER_NAME": "kv2-dev.internal", "VAULT_TOKEN": srv.root_token}
    assert_rendered(workdir, once(cfg, env))


@pytest.mark.parametrize("server_name", [None, "other.internal"])
def test_a_name_the_certificate_does_not_carry_fails(
    named_server: tuple[DevServer, Path], workdir: Path, server_name: str | None
) -> None:
    """KV2-AC-192 KV2-FC-190: without tls_server_name the IP address is checked (and is not
    in the certificate); a mismatching name fails the same way."""
    srv, ca = named_server
    vault: dict[str, Any] = {"address": srv.url, "ca_cert": ca}
    if server_name:
        vault["tls_server_name"] = server_name
    result = once(render_config(workdir, vault), {"VAULT_TOKEN": srv.root_token})
    assert result.code != 0
    assert VERIFY_FAILED in result.text
    assert "tls_server_name" in result.text
    assert not (workdir / "out").exists()


# --------------------------------------------------------------------------- skip verify


def test_tls_skip_verify_works_and_warns_on_every_start(
    tls_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-194 KV2-INV-190: tls_skip_verify: true renders without a CA, and every start logs
    the warning (two starts, two warnings)."""
    cfg = render_config(workdir, {"address": tls_server.url, "tls_skip_verify": True})
    for _ in range(2):
        result = once(cfg, {"VAULT_TOKEN": tls_server.root_token})
        assert_rendered(workdir, result)
        assert "[WARNING]" in result.text
        assert "tls_skip_verify is on" in result.text
        assert "NOT verified" in result.text


@pytest.mark.parametrize("variable", ["VAULT_SKIP_VERIFY", "BAO_SKIP_VERIFY"])
def test_skip_verify_from_the_environment_warns(
    tls_server: DevServer, workdir: Path, variable: str
) -> None:
    """KV2-AC-194 KV2-INV-190: VAULT_SKIP_VERIFY=true / BAO_SKIP_VERIFY=1 skip, loudly."""
    cfg = render_config(workdir, {"address": tls_server.url})
    value = "true" if variable.startswith("VAULT") else "1"
    result = once(cfg, {variable: value, "VAULT_TOKEN": tls_server.root_token})
    assert_rendered(workdir, result)
    assert "tls_skip_verify is on" in result.text


@pytest.mark.parametrize(
    ("variable", "value"), [("VAULT_SKIP_VERIFY", "maybe"), ("BAO_SKIP_VERIFY", "garbage")]
)
def test_skip_verify_garbage_is_a_config_error(
    tls_server: DevServer, workdir: Path, variable: str, value: str
) -> None:
    """KV2-AC-194: a non-boolean VAULT_SKIP_VERIFY is refused with exit 2, naming the variable,
    before any request (Vault Agent would treat any non-empty value as true)."""
    cfg = render_config(workdir, {"address": tls_server.url, "ca_cert": tls_server.ca_file})
    result = once(cfg, {variable: value, "VAULT_TOKEN": tls_server.root_token})
    assert result.code == 2, result.text
    assert variable in result.text
    assert tls_server.request_count() == 0
    assert not (workdir / "out").exists()


def test_skip_verify_false_keeps_verification_on(tls_server: DevServer, workdir: Path) -> None:
    """KV2-INV-190: VAULT_SKIP_VERIFY=false means false (a departure from Vault Agent, where any
    non-empty value turns verification off)."""
    cfg = render_config(workdir, {"address": tls_server.url})
    result = once(cfg, {"VAULT_SKIP_VERIFY": "false", "VAULT_TOKEN": tls_server.root_token})
    assert result.code != 0
    assert VERIFY_FAILED in result.text


# --------------------------------------------------------------------------- client certs


@pytest.fixture
def mtls_server() -> Iterator[DevServer]:
    with DevServer(tls=True, require_client_cert=True) as srv:
        srv.put("app/db", {"password": PASSWORD})
        yield srv


def test_required_client_certificate_from_config(mtls_server: DevServer, workdir: Path) -> None:
    """KV2-AC-193: a server requiring a client certificate accepts vault.client_cert/client_key."""
    vault = {
        "address": mtls_server.url,
        "ca_cert": mtls_server.ca_file,
        "client_cert": mtls_server.client_cert_file,
        "client_key": mtls_server.client_key_file,
    }
    result = once(render_config(workdir, vault), {"VAULT_TOKEN": mtls_server.root_token})
    assert_rendered(workdir, result)
    assert_no_mount_discovery(mtls_server)


@pytest.mark.parametrize("prefix", ["VAULT", "BAO"])
def test_required_client_certificate_from_the_environment(
    mtls_server: DevServer, workdir: Path, prefix: str
) -> None:
    """KV2-AC-193 KV2-INV-031: <PREFIX>_CLIENT_CERT / <PREFIX>_CLIENT_KEY."""
    cfg = render_config(workdir, {"address": mtls_server.url, "ca_cert": mtls_server.ca_file})
    env = {
        f"{prefix}_CLIENT_CERT": str(mtls_server.client_cert_file),
        f"{prefix}_CLIENT_KEY": str(mtls_server.client_key_file),
        "VAULT_TOKEN": mtls_server.root_token,
    }
    assert_rendered(workdir, once(cfg, env))


def test_missing_client_certificate_fails_clearly(mtls_server: DevServer, workdir: Path) -> None:
    """KV2-AC-193: without a client certificate the failure says so and names the settings.

    With TLS 1.3 the server's "certificate required" alert races the client's first request:
    the client sees either the alert (AuthError, exit 3) or an EOF (TransientError, exit 4,
    with the same hint). One attempt (num_retries -1) keeps the test fast; both outcomes must
    name vault.client_cert."""
    vault = {
        "address": mtls_server.url,
        "ca_cert": mtls_server.ca_file,
        "retry": {"num_retries": -1},
    }
    result = once(render_config(workdir, vault), {"VAULT_TOKEN": mtls_server.root_token})
    assert result.code in (3, 4), result.text
    assert "client certificate" in result.text or "client's certificate" in result.text
    assert "vault.client_cert" in result.text
    assert mtls_server.root_token not in result.text
    assert not (workdir / "out").exists()


def test_missing_client_certificate_ends_with_the_alert(
    mtls_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-193: with the default retries the run ends on the server's refusal: exit 3, the
    message says the server refused this client's certificate."""
    cfg = render_config(workdir, {"address": mtls_server.url, "ca_cert": mtls_server.ca_file})
    result = once(cfg, {"VAULT_TOKEN": mtls_server.root_token})
    assert result.code == 3, result.text
    assert "refused this client's certificate" in result.text
    assert "vault.client_cert" in result.text


def test_cert_auth_method_logs_in_with_the_client_certificate(workdir: Path) -> None:
    """KV2-AC-054 KV2-AC-193: auto_auth `cert` logs in at auth/cert/login presenting
    vault.client_cert over TLS, then reads with the token it got (least privilege policy)."""
    with DevServer(tls=True, require_client_cert=True) as srv:
        srv.put("app/db", {"password": PASSWORD})
        srv.add_policy("app-read", {"secret/data/app/db": ["read"]})
        srv.add_cert_role("web", policies=["app-read"])
        spy = HeaderSpy(srv)
        vault = {
            "address": srv.url,
            "ca_cert": srv.ca_file,
            "client_cert": srv.client_cert_file,
            "client_key": srv.client_key_file,
        }
        cfg = render_config(workdir, vault, {"type": "cert", "config": {"name": "web"}})
        # An environment token is ignored when auto_auth is configured (KV2-INV-033).
        assert_rendered(workdir, once(cfg, {"VAULT_TOKEN": srv.root_token}))
        assert srv.request_count("POST", "/v1/auth/cert/login") == 1
        login = [s for s in spy.seen if s.path == "/v1/auth/cert/login"]
        assert login and not login[0].token_header
        assert_no_mount_discovery(srv)


# --------------------------------------------------------------------------- namespaces


@pytest.fixture
def ns_server() -> Iterator[DevServer]:
    """Secret only in namespace team-a; the root namespace has no such secret."""
    with DevServer(tls=True) as srv:
        srv.add_namespace("team-a")
        srv.add_mount("secret", namespace="team-a")
        srv.put("app/db", {"password": PASSWORD}, mount="team-a/secret")
        yield srv


def _reads(spy: HeaderSpy) -> list[Seen]:
    return [s for s in spy.seen if "/data/" in s.path]


def test_namespace_from_config_on_every_request(ns_server: DevServer, workdir: Path) -> None:
    """KV2-AC-196 KV2-INV-192: vault.namespace is sent as X-Vault-Namespace on every request
    (lookup-self and the read); the path itself carries no namespace."""
    spy = HeaderSpy(ns_server)
    vault = {"address": ns_server.url, "ca_cert": ns_server.ca_file, "namespace": "team-a"}
    assert_rendered(
        workdir, once(render_config(workdir, vault), {"VAULT_TOKEN": ns_server.root_token})
    )
    assert spy.seen and all(s.namespace in ("team-a", "team-a/") for s in spy.seen), spy.seen
    assert [s.path for s in _reads(spy)] == ["/v1/secret/data/app/db"]


@pytest.mark.parametrize("variable", ["VAULT_NAMESPACE", "BAO_NAMESPACE"])
def test_namespace_from_the_environment(ns_server: DevServer, workdir: Path, variable: str) -> None:
    """KV2-AC-196 KV2-INV-031: VAULT_NAMESPACE / BAO_NAMESPACE when the file sets none."""
    spy = HeaderSpy(ns_server)
    cfg = render_config(workdir, {"address": ns_server.url, "ca_cert": ns_server.ca_file})
    assert_rendered(workdir, once(cfg, {variable: "team-a/", "VAULT_TOKEN": ns_server.root_token}))
    assert all(s.namespace == "team-a/" for s in spy.seen)


def test_environment_namespace_beats_the_file(ns_server: DevServer, workdir: Path) -> None:
    """KV2-INV-031: environment over file, BAO_NAMESPACE over VAULT_NAMESPACE."""
    vault = {"address": ns_server.url, "ca_cert": ns_server.ca_file, "namespace": "nope"}
    env = {
        "BAO_NAMESPACE": "team-a",
        "VAULT_NAMESPACE": "also-wrong",
        "VAULT_TOKEN": ns_server.root_token,
    }
    assert_rendered(workdir, once(render_config(workdir, vault), env))


def test_without_the_namespace_the_secret_is_not_found(ns_server: DevServer, workdir: Path) -> None:
    """KV2-AC-196 (control): the same config without a namespace reads the root namespace,
    where the secret does not exist (exit 4) — the header is what makes the others pass."""
    cfg = render_config(workdir, {"address": ns_server.url, "ca_cert": ns_server.ca_file})
    result = once(cfg, {"VAULT_TOKEN": ns_server.root_token})
    assert result.code == 4, result.text
    assert "vault.namespace" in result.text


def test_method_namespace_applies_to_the_login_only(workdir: Path) -> None:
    """KV2-AC-196 KV2-INV-192: auto_auth.method.namespace (admin) goes on the AppRole login
    only; the reads carry vault.namespace (admin/team-a), where the secret lives."""
    with DevServer(tls=True) as srv:
        srv.add_namespace("admin/team-a")
        srv.add_mount("secret", namespace="admin/team-a")
        srv.put("app/db", {"password": PASSWORD}, mount="admin/team-a/secret")
        srv.add_policy("team-a-read", {"team-a/secret/data/app/db": ["read"]})
        srv.add_approle("renderer", "role-id-1", "secret-id-1", ["team-a-read"], namespace="admin")
        (workdir / "role_id").write_text("role-id-1\n")
        (workdir / "secret_id").write_text("secret-id-1\n")
        spy = HeaderSpy(srv)
        vault = {"address": srv.url, "ca_cert": srv.ca_file, "namespace": "admin/team-a"}
        auth = {
            "type": "approle",
            "namespace": "admin",
            "config": {
                "role_id_file_path": str(workdir / "role_id"),
                "secret_id_file_path": str(workdir / "secret_id"),
                "remove_secret_id_file_after_reading": False,
            },
        }
        assert_rendered(workdir, once(render_config(workdir, vault, auth)))
        logins = [s for s in spy.seen if s.path.endswith("/login")]
        assert [(s.path, s.namespace) for s in logins] == [("/v1/auth/approle/login", "admin")]
        reads = _reads(spy)
        assert reads and all(s.namespace == "admin/team-a" for s in reads)
        assert_no_mount_discovery(srv)


# --------------------------------------------------------------------------- OpenBao


def test_openbao_flavour_with_bao_addr_and_bao_token(workdir: Path) -> None:
    """KV2-AC-197 KV2-INV-031: BAO_ADDR and BAO_TOKEN are read before conflicting VAULT_ADDR and
    VAULT_TOKEN; OpenBao's responses carry no mount_type and that does not matter."""
    with DevServer(flavor="openbao") as srv:
        srv.put("app/db", {"password": PASSWORD})
        # The premise: the openbao flavour really omits mount_type.
        req = urllib.request.Request(
            srv.url + "/v1/secret/data/app/db", headers={"X-Vault-Token": srv.root_token}
        )
        with urllib.request.urlopen(req, timeout=5) as resp:
            assert "mount_type" not in json.loads(resp.read())
        cfg = render_config(workdir)  # no vault block at all: the address comes from BAO_ADDR
        env = {
            "BAO_ADDR": srv.url,
            "BAO_TOKEN": srv.root_token,
            "VAULT_ADDR": "http://127.0.0.1:9",  # discard port: would fail if used
            "VAULT_TOKEN": "hvs.wrong-token-sentinel",
        }
        assert_rendered(workdir, once(cfg, env))
        assert_no_mount_discovery(srv)


def test_openbao_over_tls_with_bao_cacert_and_namespace(workdir: Path) -> None:
    """KV2-AC-190 KV2-AC-196 KV2-AC-197: OpenBao 2.3+ namespaces and BAO_CACERT, all from BAO_*."""
    with DevServer(flavor="openbao", tls=True) as srv:
        srv.add_mount("kv", namespace="tenant1")
        srv.put("app/db", {"password": PASSWORD}, mount="tenant1/kv")
        env = {
            "BAO_ADDR": srv.url,
            "BAO_TOKEN": srv.root_token,
            "BAO_CACERT": str(srv.ca_file),
            "BAO_NAMESPACE": "tenant1",
        }
        cfg = render_config(workdir, ref="vault+kv2:///kv/data/app/db#password")
        assert_rendered(workdir, once(cfg, env))


# --------------------------------------------------------------------------- OVHcloud


@pytest.fixture
def ovh_mtls() -> Iterator[DevServer]:
    with DevServer(flavor="ovh", tls=True, require_client_cert=True) as srv:
        srv.put("prod/db", {"password": PASSWORD})
        yield srv


def _ovh_mtls_vault(srv: DevServer) -> dict[str, Any]:
    return {
        "address": srv.url,
        "ca_cert": srv.ca_file,
        "client_cert": srv.client_cert_file,
        "client_key": srv.client_key_file,
    }


def test_ovh_mtls_with_base_path_sends_no_token(ovh_mtls: DevServer, workdir: Path) -> None:
    """KV2-AC-198 KV2-INV-055 KV2-INV-193 KV2-INV-033: the access certificate is the identity;
    the /api/<okms-id> base path is kept; no token header, no login, no lookup-self, even with
    a VAULT_TOKEN in the environment."""
    assert ovh_mtls.url.endswith(f"/api/{ovh_mtls.okms_id}")
    spy = HeaderSpy(ovh_mtls)
    cfg = render_config(workdir, _ovh_mtls_vault(ovh_mtls), {"type": "mtls"}, ref=OVH_REF)
    assert_rendered(workdir, once(cfg, {"VAULT_TOKEN": "hvs.must-not-be-sent"}))
    assert [(s.method, s.path) for s in spy.seen] == [("GET", "/v1/secret/data/prod/db")]
    assert not any(s.token_header or s.bearer for s in spy.seen)
    assert ovh_mtls.request_count(path_prefix="/v1/auth/") == 0
    assert_no_mount_discovery(ovh_mtls)


def test_ovh_https_reference_with_the_okms_prefix(ovh_mtls: DevServer, workdir: Path) -> None:
    """KV2-AC-201 KV2-INV-193: an https-form reference carrying /api/<okms-id> renders against
    the same base-path address, in a ref: output and in a template."""
    ref = f"{ovh_mtls.url}/v1/secret/data/prod/db#password"
    assert ref.startswith("https://") and f"/api/{ovh_mtls.okms_id}/v1/" in ref
    vault = _ovh_mtls_vault(ovh_mtls)
    assert_rendered(workdir, once(render_config(workdir, vault, {"type": "mtls"}, ref=ref)))
    cfg = render_config(workdir, vault, {"type": "mtls"}, contents='pw={{ kv2("' + ref + '") }}\n')
    assert_rendered(workdir, once(cfg), f"pw={PASSWORD}\n")


def test_https_reference_with_another_prefix_is_refused(ovh_mtls: DevServer, workdir: Path) -> None:
    """KV2-INV-006 KV2-AC-201: a reference naming a different OKMS base path is a config error
    (exit 2): the read would otherwise silently go to the configured domain."""
    ref = ovh_mtls.url.replace(ovh_mtls.okms_id, "00000000-0000-0000-0000-000000000000")
    cfg = render_config(
        workdir, _ovh_mtls_vault(ovh_mtls), {"type": "mtls"},
        ref=f"{ref}/v1/secret/data/prod/db#password",
    )  # fmt: skip
    result = once(cfg)
    assert result.code == 2, result.text
    assert "vault.address" in result.text
    assert ovh_mtls.request_count() == 0


def test_ovh_bearer_token_file_is_reread_between_runs(workdir: Path) -> None:
    """KV2-AC-199 KV2-AC-055 KV2-INV-055 KV2-INV-193: Authorization: Bearer from the file, no
    X-Vault-Token, no login; a replaced token file is used by the next run (http-form
    reference with the base path)."""
    with DevServer(flavor="ovh") as srv:
        srv.put("prod/db", {"password": PASSWORD})
        srv.add_policy("prod-db-read", {"secret/data/prod/db": ["read"]})
        first = srv.create_token(["prod-db-read"])
        second = srv.create_token(["prod-db-read"])
        token_file = workdir / "okms-pat"
        token_file.write_text(first + "\n")
        spy = HeaderSpy(srv)
        ref = f"{srv.url}/v1/secret/data/prod/db#password"
        assert ref.startswith("http://") and "/api/" in ref
        cfg = render_config(
            workdir,
            {"address": srv.url},
            {"type": "bearer_token_file", "config": {"token_file_path": str(token_file)}},
            ref=ref,
        )
        result = once(cfg)
        assert_rendered(workdir, result)
        assert first not in result.text
        token_file.write_text(second + "\n")
        srv.revoke_token(first)  # only the new file content can work now
        srv.put("prod/db", {"password": PASSWORD + "-v2"})
        result = once(cfg)
        assert_rendered(workdir, result, PASSWORD + "-v2")
        assert second not in result.text
        assert [s.bearer == first for s in spy.seen] == [True, False]
        assert [s.bearer == second for s in spy.seen] == [False, True]
        assert not any(s.token_header for s in spy.seen)
        assert srv.request_count(path_prefix="/v1/auth/") == 0
        assert_no_mount_discovery(srv)


def test_ovh_401_with_a_wrong_bearer_token_names_the_file(workdir: Path) -> None:
    """KV2-AC-200 KV2-FC-191: a 401 exits 3 and names the token file, not the token."""
    with DevServer(flavor="ovh") as srv:
        srv.put("prod/db", {"password": PASSWORD})
        token_file = workdir / "okms-pat"
        token_file.write_text("eyJ.wrong-pat-sentinel.x\n")
        cfg = render_config(
            workdir,
            {"address": srv.url},
            {"type": "bearer_token_file", "config": {"token_file_path": str(token_file)}},
            ref=OVH_REF,
        )
        result = once(cfg)
    assert result.code == 3, result.text
    assert "401" in result.text
    assert str(token_file) in result.text
    assert "wrong-pat-sentinel" not in result.text
    assert not (workdir / "out").exists()


def test_ovh_401_without_identity_names_the_certificate(
    tls_server: DevServer, workdir: Path
) -> None:
    """KV2-AC-200 KV2-FC-191: mtls configured but the connection carries no certificate (an
    http address): the server's 401 exits 3 naming the certificate to check."""
    with DevServer(flavor="ovh") as srv:
        srv.put("prod/db", {"password": PASSWORD})
        vault = {
            "address": srv.url,
            "client_cert": tls_server.client_cert_file,
            "client_key": tls_server.client_key_file,
        }
        result = once(render_config(workdir, vault, {"type": "mtls"}, ref=OVH_REF))
        assert srv.request_count("GET", "/v1/secret/data/prod/db") == 1  # no retry of a 401
    assert result.code == 3, result.text
    assert "401" in result.text
    assert str(tls_server.client_cert_file) in result.text


def test_ovh_mtls_without_a_client_certificate_is_refused_in_the_handshake(
    ovh_mtls: DevServer, workdir: Path
) -> None:
    """KV2-AC-193 KV2-AC-200: a domain requiring the access certificate, reached without one
    (token file instead): exit 3, and the message points at vault.client_cert."""
    token_file = workdir / "okms-pat"
    token_file.write_text(ovh_mtls.create_token(["root"]) + "\n")
    vault = {"address": ovh_mtls.url, "ca_cert": ovh_mtls.ca_file}
    auth = {"type": "bearer_token_file", "config": {"token_file_path": str(token_file)}}
    result = once(render_config(workdir, vault, auth, ref=OVH_REF))
    assert result.code == 3, result.text  # ends on the alert (see the retry note above)
    assert "vault.client_cert" in result.text


# --------------------------------------------------------------------------- discovery


class DenyMountDiscovery(HeaderSpy):
    """A server where sys/internal/ui/mounts is forbidden, as behind a narrow policy or a
    proxy that filters sys/ paths (Vault itself answers it for any path the token can touch)."""

    def handle(self, req: Any) -> Any:
        if req.path.startswith("sys/internal/ui/mounts"):
            self.seen.append(Seen(req.method, "/v1/" + req.path, None, False, None))
            return self._inner.state.wire.error(403, ["permission denied"])
        return super().handle(req)


@pytest.mark.parametrize("flavor", ["vault", "openbao"])
def test_renders_with_a_narrow_policy_and_forbidden_mount_discovery(
    workdir: Path, flavor: str
) -> None:
    """KV2-AC-202 KV2-INV-194: a token whose only grant is read on <mount>/data/<path> (no
    metadata, no sys/) renders while mount discovery is forbidden, and discovery is never asked."""
    with DevServer(flavor=flavor) as srv:
        srv.put("app/db", {"password": PASSWORD})
        srv.add_policy("app-db-read", {"secret/data/app/db": ["read"]})
        token = srv.create_token(["app-db-read"])
        spy = DenyMountDiscovery(srv)
        # The premise: discovery really is forbidden here.
        probe = urllib.request.Request(
            srv.url + MOUNTS_UI + "/secret/app/db", headers={"X-Vault-Token": token}
        )
        with pytest.raises(urllib.error.HTTPError) as denied:
            urllib.request.urlopen(probe, timeout=5)
        denied.value.close()
        assert denied.value.code == 403
        spy.seen.clear()
        srv.reset_counters()
        cfg = render_config(workdir, {"address": srv.url})
        assert_rendered(workdir, once(cfg, {"VAULT_TOKEN": token}))
        assert not any(s.path.startswith(MOUNTS_UI) for s in spy.seen)
        assert_no_mount_discovery(srv)
        assert srv.request_count(path_prefix="/v1/secret/metadata") == 0


def test_renders_where_mount_discovery_is_absent(workdir: Path) -> None:
    """KV2-AC-202 KV2-INV-194: OVHcloud has no sys/ API at all (404); rendering never needs it."""
    with DevServer(flavor="ovh") as srv:
        srv.put("prod/db", {"password": PASSWORD})
        token = srv.create_token(["root"])
        probe = urllib.request.Request(
            srv.url + MOUNTS_UI + "/secret/prod/db", headers={"Authorization": f"Bearer {token}"}
        )
        with pytest.raises(urllib.error.HTTPError) as absent:
            urllib.request.urlopen(probe, timeout=5)
        absent.value.close()
        assert absent.value.code == 404
        srv.reset_counters()
        (workdir / "pat").write_text(token)
        auth = {"type": "bearer_token_file", "config": {"token_file_path": str(workdir / "pat")}}
        assert_rendered(
            workdir, once(render_config(workdir, {"address": srv.url}, auth, ref=OVH_REF))
        )
        assert_no_mount_discovery(srv)


def test_environment_is_not_read_after_load(
    tls_server: DevServer, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KV2-INV-033: with no VAULT_ADDR/VAULT_CACERT hvac could pick up, everything comes from
    the config; ~/.vault-token (HOME is scrubbed per test) is not consulted."""
    home = Path(os.environ["HOME"])
    (home / ".vault-token").write_text(tls_server.root_token)
    cfg = render_config(workdir, {"address": tls_server.url, "ca_cert": tls_server.ca_file})
    result = once(cfg)
    assert result.code == 2, result.text  # no credentials: the ~/.vault-token is never used
    assert "VAULT_TOKEN" in result.text
    assert tls_server.request_count() == 0
