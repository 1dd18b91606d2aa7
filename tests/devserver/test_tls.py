"""TLS: dev CA, provided cert/key, required client certs, cert login, ovh mTLS (§5, §8)."""

from __future__ import annotations

import ssl
import stat

import hvac
import pytest
import requests

from kv2render.devserver import DevServer
from tests.devserver.helpers import client, raw, read


def test_self_signed_dev_ca() -> None:
    """KV2-AC-144: --tls without cert/key generates a dev CA; clients trusting it connect."""
    with DevServer(tls=True) as srv:
        assert srv.url.startswith("https://127.0.0.1:")
        assert srv.ca_file is not None and srv.ca_file.read_bytes().startswith(b"-----BEGIN")
        assert srv.client_key_file is not None
        assert stat.S_IMODE(srv.client_key_file.stat().st_mode) == 0o600
        srv.put("k", {"a": 1})
        assert read(client(srv), "k")["data"]["data"] == {"a": 1}
        with pytest.raises(requests.exceptions.SSLError):
            hvac.Client(url=srv.url, token=srv.root_token, verify=True).secrets.kv.v2.read_secret(
                "k", raise_on_deleted_version=True
            )
        r = raw(srv, "GET", "/v1/secret/data/k")
        assert r.status == 200


def test_provided_cert_and_key(tmp_path: object) -> None:
    """KV2-AC-144: a provided cert/key pair is served (here: one a first server generated)."""
    with DevServer(tls=True) as first:
        assert first.ca_file is not None
        cert = first.ca_file.parent / "server.pem"
        key = first.ca_file.parent / "server-key.pem"
        with DevServer(cert_file=cert, key_file=key) as srv:
            assert srv.tls and srv.ca_file is None
            srv.put("k", {"a": 1})
            c = hvac.Client(url=srv.url, token=srv.root_token, verify=str(first.ca_file))
            assert read(c, "k")["data"]["data"] == {"a": 1}


def test_require_client_cert() -> None:
    """KV2-AC-144: with require_client_cert, a client without a certificate is refused."""
    with DevServer(tls=True, require_client_cert=True) as srv:
        srv.put("k", {"a": 1})
        ok = hvac.Client(
            url=srv.url,
            token=srv.root_token,
            verify=str(srv.ca_file),
            cert=(str(srv.client_cert_file), str(srv.client_key_file)),
        )
        assert read(ok, "k")["data"]["data"] == {"a": 1}
        bare = hvac.Client(url=srv.url, token=srv.root_token, verify=str(srv.ca_file))
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            read(bare, "k")
        # and the server keeps serving afterwards
        assert read(ok, "k")["data"]["data"] == {"a": 1}


def test_plain_http_client_to_tls_server_does_not_hang() -> None:
    """KV2-INV-132: a plain-HTTP request to the TLS port fails fast, the server survives."""
    with DevServer(tls=True) as srv:
        plain = srv.url.replace("https://", "http://")
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(plain + "/v1/sys/health", timeout=5)
        assert raw(srv, "GET", "/v1/sys/health", token=None).status == 200


@pytest.mark.parametrize("flavor", ["vault", "openbao"])
def test_cert_login(flavor: str) -> None:
    """KV2-AC-141: cert login works over mTLS; without a client cert it is 400."""
    with DevServer(flavor=flavor, tls=True) as srv:
        srv.add_cert_role("web", policies=["default"])
        pair = (str(srv.client_cert_file), str(srv.client_key_file))
        c = hvac.Client(url=srv.url, verify=str(srv.ca_file), cert=pair)
        out = c.auth.cert.login(name="web")
        meta = out["auth"]["metadata"]
        assert meta["cert_name"] == "web" and meta["common_name"] == "kv2render-dev-client"
        assert c.auth.token.lookup_self()["data"]["display_name"] == "web"
        ctx = ssl.create_default_context(cafile=str(srv.ca_file))
        import http.client
        import urllib.parse

        url = urllib.parse.urlsplit(srv.url)
        conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=ctx, timeout=5)
        conn.request("POST", "/v1/auth/cert/login", body=b"{}")
        resp = conn.getresponse()
        assert resp.status == 400
        assert b"no client certificate supplied" in resp.read()
        conn.close()


def test_ovh_mtls_identity() -> None:
    """KV2-AC-143: ovh accepts a client certificate as identity, no token needed."""
    with DevServer(flavor="ovh", tls=True) as srv:
        srv.put("prod/db", {"a": 1})
        pair = (str(srv.client_cert_file), str(srv.client_key_file))
        c = hvac.Client(url=srv.url, token="", cert=pair, verify=str(srv.ca_file), strict_http=True)
        assert read(c, "prod/db", mount_point="secret")["data"]["data"] == {"a": 1}
        bare = hvac.Client(url=srv.url, token="", verify=str(srv.ca_file), strict_http=True)
        with pytest.raises(hvac.exceptions.Unauthorized):
            read(bare, "prod/db")


def test_tls_keys_removed_when_server_is_collected() -> None:
    """KV2-INV-130: generated key files do not outlive the DevServer object."""
    import gc

    srv = DevServer(tls=True)
    assert srv.ca_file is not None
    directory = srv.ca_file.parent
    assert directory.is_dir()
    del srv
    gc.collect()
    assert not directory.exists()
