"""TLS against the real OpenBao listener (``bao server -dev -dev-tls``), through ``--once``.

The dev-TLS listener's certificate is issued by the CA in ``bao_tls_server.ca_cert`` with the
SANs ``localhost`` and ``127.0.0.1``, and it asks for (does not require) a client certificate.
Every test renders or fails as an operator would see it: exit code, message, elapsed time
(a certificate problem is never retried, KV2-FC-190), output file and mode, and no secret or
token in the output.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.openbao.authkit import (
    SENTINEL_VALUE,
    Pki,
    assert_no_leak,
    assert_secret_file,
    count_lines,
    once_config,
    private_file,
    run_once,
    seed_secret,
)
from tests.realbao import BaoServer

pytestmark = pytest.mark.openbao

# A refused certificate must fail fast: the default 12 retries would take minutes.
FAST = 10.0


def token_setup(server: BaoServer, workdir: Path) -> tuple[str, str, dict[str, Any]]:
    """A secret, a token that may read it in a token_file; (path, token, method)."""
    path, policy = seed_secret(server, "tls")
    token = server.create_token(policies=[policy], ttl="5m")
    token_file = private_file(workdir / "token", token)
    return path, token, {"type": "token_file", "config": {"token_file_path": str(token_file)}}


def default_retries(config: Path) -> None:
    """Drop the helper's retry: 2 so the default (12, minutes of backoff) applies."""
    text = config.read_text().replace("  retry:\n    num_retries: 2\n", "")
    assert "num_retries" not in text
    config.write_text(text)


# --------------------------------------------------------------------------- trust


@pytest.mark.parametrize("how", ["ca_cert", "ca_path", "BAO_CACERT", "VAULT_CACERT"])
def test_the_right_ca_renders(bao_tls_server: BaoServer, workdir: Path, how: str) -> None:
    """KV2-AC-190 KV2-INV-196: the listener's CA as ca_cert, as a ca_path folder (any file
    name, no c_rehash), or from BAO_CACERT / VAULT_CACERT."""
    path, token, method = token_setup(bao_tls_server, workdir)
    config, dest = once_config(workdir, bao_tls_server, path, method)
    env: dict[str, str] = {}
    if how != "ca_cert":
        text = config.read_text().replace(f"  ca_cert: {bao_tls_server.ca_cert}\n", "")
        if how == "ca_path":
            folder = workdir / "cas"
            folder.mkdir()
            shutil.copy(bao_tls_server.ca_cert, folder / "openbao dev.crt")
            (folder / "README").write_text("not a certificate\n")
            text = text.replace("vault:\n", f"vault:\n  ca_path: {folder}\n", 1)
        else:
            env[how] = str(bao_tls_server.ca_cert)
        config.write_text(text)
    result = run_once(config, env)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)
    assert_no_leak(result.text, token)


def test_a_wrong_ca_fails_once_and_fast(
    bao_tls_server: BaoServer, workdir: Path, tmp_path: Path
) -> None:
    """KV2-AC-191 KV2-FC-190 KV2-AC-308: a CA that did not issue the server's certificate:
    exit 3 (the first request is the login's lookup-self) after a single attempt, even with
    the default 12 retries, saying the certificate could not be verified and naming
    vault.ca_cert and tls_server_name; nothing is written."""
    path, token, method = token_setup(bao_tls_server, workdir)
    other = Pki(tmp_path / "other", name="not the openbao CA")
    config, dest = once_config(
        workdir, bao_tls_server, path, method, vault={"ca_cert": str(other.ca_file)}
    )
    default_retries(config)
    started = time.monotonic()
    result = run_once(config)
    elapsed = time.monotonic() - started
    assert result.code == 3, result.text
    assert elapsed < FAST, f"{elapsed:.1f}s: a certificate failure was retried"
    assert "certificate could not be verified" in result.err
    assert "vault.ca_cert" in result.err and "tls_server_name" in result.err
    assert "retry" not in result.err.lower()
    assert count_lines(result.err, "[ERROR]") == 1
    assert not dest.exists()
    assert_no_leak(result.text, token)


def test_the_system_store_does_not_trust_a_private_ca(
    bao_tls_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-308 KV2-INV-195: no ca_cert at all: the system store (or certifi) does not know
    the dev CA, so the same clear exit 3."""
    path, token, method = token_setup(bao_tls_server, workdir)
    config, dest = once_config(workdir, bao_tls_server, path, method)
    config.write_text(config.read_text().replace(f"  ca_cert: {bao_tls_server.ca_cert}\n", ""))
    result = run_once(config)
    assert result.code == 3, result.text
    assert "certificate could not be verified" in result.err
    assert not dest.exists()


def test_requests_ca_bundle_is_ignored(
    bao_tls_server: BaoServer, workdir: Path, tmp_path: Path
) -> None:
    """KV2-AC-195: REQUESTS_CA_BUNDLE / SSL_CERT_FILE pointing at another CA change nothing."""
    path, token, method = token_setup(bao_tls_server, workdir)
    other = Pki(tmp_path / "other", name="not the openbao CA")
    config, dest = once_config(workdir, bao_tls_server, path, method)
    env = {"REQUESTS_CA_BUNDLE": str(other.ca_file), "SSL_CERT_FILE": str(other.ca_file)}
    result = run_once(config, env)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)


def test_tls_skip_verify_renders_with_a_warning(
    bao_tls_server: BaoServer, workdir: Path, tmp_path: Path
) -> None:
    """KV2-AC-194: tls_skip_verify accepts the unknown CA and warns at start."""
    path, token, method = token_setup(bao_tls_server, workdir)
    other = Pki(tmp_path / "other", name="not the openbao CA")
    vault = {"ca_cert": str(other.ca_file), "tls_skip_verify": True}
    config, dest = once_config(workdir, bao_tls_server, path, method, vault=vault)
    result = run_once(config)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)
    assert "tls_skip_verify" in result.err and "[WARNING]" in result.err


# --------------------------------------------------------------------------- server name


@pytest.mark.parametrize("how", ["config", "BAO_TLS_SERVER_NAME", "VAULT_TLS_SERVER_NAME"])
def test_tls_server_name_localhost_at_127_0_0_1(
    bao_tls_server: BaoServer, workdir: Path, how: str
) -> None:
    """KV2-AC-192 KV2-INV-197: connect to 127.0.0.1, check the certificate for `localhost`
    (one of the listener's SANs), from the config or the environment."""
    path, token, method = token_setup(bao_tls_server, workdir)
    vault = {"tls_server_name": "localhost"} if how == "config" else {}
    env = {} if how == "config" else {how: "localhost"}
    config, dest = once_config(workdir, bao_tls_server, path, method, vault=vault)
    result = run_once(config, env)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)


def test_a_wrong_tls_server_name_fails_clearly(bao_tls_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-192 KV2-AC-308: a name the certificate does not carry: exit 3 after one attempt,
    naming the name mismatch and tls_server_name."""
    path, token, method = token_setup(bao_tls_server, workdir)
    vault = {"tls_server_name": "openbao.example.internal"}
    config, dest = once_config(workdir, bao_tls_server, path, method, vault=vault)
    default_retries(config)
    started = time.monotonic()
    result = run_once(config)
    assert result.code == 3, result.text
    assert time.monotonic() - started < FAST
    assert "certificate could not be verified" in result.err
    assert "openbao.example.internal" in result.err and "tls_server_name" in result.err
    assert not dest.exists()
    assert_no_leak(result.text, token)


def test_localhost_address_needs_no_server_name(bao_tls_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-190: https://localhost:PORT matches the `localhost` SAN by itself."""
    path, token, method = token_setup(bao_tls_server, workdir)
    address = bao_tls_server.address.replace("127.0.0.1", "localhost")
    config, dest = once_config(workdir, bao_tls_server, path, method, vault={"address": address})
    result = run_once(config)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)


# --------------------------------------------------------------------------- scheme mix-ups


def test_plain_http_to_a_tls_listener_fails_clearly(
    bao_tls_server: BaoServer, workdir: Path
) -> None:
    """KV2-AC-309 KV2-FC-300: http:// to the TLS listener: OpenBao answers a plain-text 400
    ("Client sent an HTTP request to an HTTPS server"); kv2render exits 2 at once naming
    vault.address and the https:// address to use, not the token (it used to blame the token:
    exit 3)."""
    path, token, method = token_setup(bao_tls_server, workdir)
    address = bao_tls_server.address.replace("https://", "http://")
    config, dest = once_config(workdir, bao_tls_server, path, method, vault={"address": address})
    default_retries(config)
    started = time.monotonic()
    result = run_once(config)
    assert result.code == 2, result.text
    assert time.monotonic() - started < FAST
    assert "vault.address: the server speaks HTTPS but the address says http://" in result.err
    assert f"use {bao_tls_server.address}" in result.err
    assert str(workdir / "token") not in result.err  # the credential is not the problem
    assert not dest.exists()
    assert_no_leak(result.text, token)


def test_https_to_a_plain_listener_fails_clearly(bao_server: BaoServer, workdir: Path) -> None:
    """KV2-AC-309 KV2-FC-300: https:// to a plain-HTTP listener: OpenSSL reports "wrong version
    number"; kv2render exits 2 after one attempt naming vault.address and the http:// address,
    instead of retrying it as transient (it used to: 12 retries, minutes, with a
    client-certificate hint that did not apply)."""
    path, token, method = token_setup(bao_server, workdir)
    address = bao_server.address.replace("http://", "https://")
    config, dest = once_config(workdir, bao_server, path, method, vault={"address": address})
    default_retries(config)
    started = time.monotonic()
    result = run_once(config)
    assert result.code == 2, result.text
    assert time.monotonic() - started < FAST
    assert "vault.address: the server at this address does not speak TLS" in result.err
    assert f"use {bao_server.address}" in result.err
    assert "retry" not in result.err.lower() and "client_cert" not in result.err
    assert not dest.exists()
    assert_no_leak(result.text, token)


# --------------------------------------------------------------------------- client certificates


def test_client_certificate_is_presented_with_token_auth(
    bao_tls_server: BaoServer, workdir: Path, tmp_path: Path
) -> None:
    """KV2-AC-193: a listener that asks for a client certificate gets client_cert/client_key
    while the token does the authorising; the render is unchanged."""
    path, token, method = token_setup(bao_tls_server, workdir)
    cert, key = Pki(tmp_path / "pki").issue("client", "kv2render")
    vault = {"client_cert": str(cert), "client_key": str(key)}
    config, dest = once_config(workdir, bao_tls_server, path, method, vault=vault)
    result = run_once(config)
    assert result.code == 0, result.text
    assert_secret_file(dest, SENTINEL_VALUE)
    assert_no_leak(result.text, token, key.read_text())


def test_client_key_not_matching_the_certificate_exits_2(
    bao_tls_server: BaoServer, workdir: Path, tmp_path: Path
) -> None:
    """KV2-AC-308: a client key that does not belong to client_cert is a config error (exit 2)
    naming vault.client_cert, before any request; the key never appears."""
    path, token, method = token_setup(bao_tls_server, workdir)
    pki = Pki(tmp_path / "pki")
    cert, _key = pki.issue("client", "kv2render")
    _other_cert, other_key = pki.issue("other", "someone")
    vault = {"client_cert": str(cert), "client_key": str(other_key)}
    config, dest = once_config(workdir, bao_tls_server, path, method, vault=vault)
    result = run_once(config)
    assert result.code == 2, result.text
    assert "vault.client_cert" in result.err
    assert not dest.exists()
    assert_no_leak(result.text, token, other_key.read_text())


def test_the_daemon_does_not_storm_a_server_it_cannot_verify(
    bao_tls_server: BaoServer, workdir: Path, tmp_path: Path
) -> None:
    """KV2-FC-162 KV2-AC-308: the daemon with a wrong CA keeps its login backoff (1 s doubling):
    at most 4 attempts in 6 s, each one error line naming the CA problem, and no file."""
    from tests.integration.cli_helpers import DaemonProcess

    path, token, method = token_setup(bao_tls_server, workdir)
    other = Pki(tmp_path / "other", name="not the openbao CA")
    extra = {"template_config": {"static_secret_render_interval": "1s"}}
    config, dest = once_config(
        workdir,
        bao_tls_server,
        path,
        method,
        vault={"ca_cert": str(other.ca_file)},
        extra=extra,
    )
    daemon = DaemonProcess(config, tmp_path / "logs", log_level="debug")
    try:
        time.sleep(6.0)
        assert daemon.alive(), daemon.log()[-3000:]
        log = daemon.log()
    finally:
        daemon.stop()
    failures = count_lines(log, "login failed")
    assert 2 <= failures <= 4, log[-3000:]
    assert failures == count_lines(log, "certificate could not be verified"), log[-3000:]
    assert not dest.exists()
    assert_no_leak(log, token)
