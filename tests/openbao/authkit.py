"""Credentials for the real-server auth tests: a little PKI, signed JWTs, a fake TokenReview API,
and the kv2render config/run helpers those tests share.

Everything is generated per test session with ``cryptography`` (a test extra): a CA and the
certificates it signs (client certificates for ``cert`` auth, a server certificate for the fake
Kubernetes API), an RSA key that signs RS256 JWTs for ``jwt`` auth, and a tiny HTTPS server that
answers ``POST /apis/authentication.k8s.io/v1/tokenreviews`` the way the Kubernetes API server
does, so the real OpenBao ``kubernetes`` auth method has something to ask.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import ssl
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.integration.cli_helpers import CliResult, run_cli_subprocess, write_config
from tests.realbao import BaoServer

# Sentinels: none of these may ever appear in kv2render's stdout, stderr or logs.
SENTINEL_VALUE = "S3NTINEL-bao-secret-value-7f3a"


# --------------------------------------------------------------------------- files


def private_file(path: Path, text: str) -> Path:
    """A 0600 credential file holding ``text`` and a newline (kv2render strips it)."""
    path.write_text(text + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def assert_secret_file(path: Path, expected: str) -> None:
    """The rendered bytes, exactly, and mode 0600 (KV2-INV-090 family)."""
    assert path.read_bytes() == expected.encode("utf-8")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def assert_no_leak(text: str, *secrets: str) -> None:
    """Neither the secret value nor any credential reached the output (KV2-INV-001)."""
    for secret in (SENTINEL_VALUE, *secrets):
        assert secret not in text, "a secret or credential leaked into kv2render's output"


# --------------------------------------------------------------------------- kv2render runs


def seed_secret(server: BaoServer, prefix: str) -> tuple[str, str]:
    """A fresh secret under a unique path holding the sentinel; (path, policy name)."""
    from tests.realbao import unique

    path = f"{prefix}/{unique('s')}"
    server.kv_put(path, {"password": SENTINEL_VALUE, "username": "app"})
    policy = unique("read")
    server.put_policy(policy, f'path "secret/data/{path}" {{ capabilities = ["read"] }}\n')
    return path, policy


def once_config(
    workdir: Path,
    server: BaoServer,
    path: str,
    method: Mapping[str, Any],
    *,
    vault: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """A config rendering ``secret/<path>#password`` to ``workdir/out/password``; (config, dest)."""
    out = workdir / "out"
    out.mkdir(exist_ok=True, mode=0o700)
    dest = out / "password"
    tree: dict[str, Any] = {
        "vault": {"address": server.address, "retry": {"num_retries": 2}, "timeout": "5s"},
        "auto_auth": {"method": dict(method)},
        "template": [
            {"ref": f"vault+kv2:///secret/data/{path}#password", "destination": str(dest)}
        ],
    }
    if server.tls_dir is not None:
        tree["vault"]["ca_cert"] = str(server.ca_cert)
    tree["vault"].update(vault or {})
    tree.update(extra or {})
    return write_config(workdir, tree), dest


def run_once(config: Path, env: Mapping[str, str] | None = None) -> CliResult:
    """``python -m kv2render --config C --once`` as a user runs it (debug logs, so that a
    leak at any level shows)."""
    return run_cli_subprocess(
        ["--config", str(config), "--once", "--log-level", "debug"], env, timeout=90
    )


# --------------------------------------------------------------------------- PKI


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass
class Pki:
    """A CA and the certificates it issues, written as PEM files under ``directory``."""

    directory: Path
    name: str = "kv2render test CA"
    key: ec.EllipticCurvePrivateKey = field(init=False, repr=False)
    cert: x509.Certificate = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(self.name))
            .issuer_name(_name(self.name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )  # fmt: skip
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file.write_bytes(self.ca_pem)

    @property
    def ca_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    def issue(
        self,
        stem: str,
        common_name: str,
        *,
        client: bool = True,
        sans: Sequence[str] = (),
        not_after: dt.datetime | None = None,
    ) -> tuple[Path, Path]:
        """A leaf certificate and its key as (cert.pem, key.pem); key file mode 0600."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        names: list[x509.GeneralName] = []
        for san in sans:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                names.append(x509.DNSName(san))
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(not_after or now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        cert_file = self.directory / f"{stem}.pem"
        key_file = self.directory / f"{stem}-key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        key_file.chmod(0o600)
        return cert_file, key_file


# --------------------------------------------------------------------------- JWT


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class JwtSigner:
    """An RSA key pair that signs RS256 JWTs; ``public_pem`` goes to jwt_validation_pubkeys."""

    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        repr=False,
    )

    @property
    def public_pem(self) -> str:
        return (
            self.key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def sign(self, claims: Mapping[str, Any], *, lifetime: float = 600.0) -> str:
        """A compact JWS with ``iat``/``nbf``/``exp`` filled in unless given."""
        now = int(time.time())
        body = {"iat": now, "nbf": now - 5, "exp": int(now + lifetime), **claims}
        header = {"alg": "RS256", "typ": "JWT"}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(body, separators=(",", ":")).encode())
        )
        signature = self.key.sign(
            signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
        )
        return signing_input + "." + _b64url(signature)


# --------------------------------------------------------------------------- fake TokenReview


@dataclass
class TokenReviewApi:
    """An HTTPS server answering the Kubernetes TokenReview API for known tokens.

    ``accounts`` maps a service-account JWT to (namespace, name, uid); any other token is
    answered ``authenticated: false``, as the API server does for a token it did not issue.
    """

    pki: Pki
    accounts: dict[str, tuple[str, str, str]] = field(default_factory=dict, repr=False)
    reviews: list[dict[str, Any]] = field(default_factory=list, repr=False)
    _httpd: ThreadingHTTPServer | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        assert self._httpd is not None
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> TokenReviewApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
                return

            def do_POST(self) -> None:  # noqa: N802 - stdlib name
                length = int(self.headers.get("Content-Length") or 0)
                review = json.loads(self.rfile.read(length) or b"{}")
                api.reviews.append(review)
                token = review.get("spec", {}).get("token", "")
                audiences = review.get("spec", {}).get("audiences") or []
                account = api.accounts.get(token)
                status: dict[str, Any]
                if account is None or not self.path.endswith("/tokenreviews"):
                    status = {"authenticated": False, "error": "token not recognised"}
                else:
                    namespace, name, uid = account
                    status = {
                        "authenticated": True,
                        "user": {
                            "username": f"system:serviceaccount:{namespace}:{name}",
                            "uid": uid,
                            "groups": ["system:serviceaccounts"],
                        },
                        "audiences": audiences,
                    }
                body = json.dumps(
                    {
                        "apiVersion": "authentication.k8s.io/v1",
                        "kind": "TokenReview",
                        "status": status,
                    }
                ).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        cert, key = self.pki.issue("k8s-api", "kubernetes", client=False, sans=["127.0.0.1"])
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
        httpd.daemon_threads = True
        self._httpd = httpd
        threading.Thread(target=httpd.serve_forever, name="fake-k8s-api", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


# --------------------------------------------------------------------------- waiting


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll every 50 ms; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(0.05)


def count_lines(text: str, needle: str) -> int:
    return sum(1 for line in text.splitlines() if needle in line)


def iter_lines(text: str, needle: str) -> Iterator[str]:
    return (line for line in text.splitlines() if needle in line)
