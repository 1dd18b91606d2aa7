"""Helpers for the dev-server conformance tests: raw http.client and hvac per flavour."""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

import hvac
import requests

from kv2render.devserver import DevServer

FLAVORS = ("vault", "openbao", "ovh")


@dataclass
class Raw:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def raw(
    srv: DevServer,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = "",
    headers: dict[str, str] | None = None,
    conn: http.client.HTTPConnection | None = None,
) -> Raw:
    """One request with http.client. path starts with /v1/; the ovh base is added.

    token "" means the root token, sent as X-Vault-Token (vault/openbao) or Bearer (ovh);
    None sends no token.
    """
    url = urllib.parse.urlsplit(srv.url)
    own = conn is None
    if conn is None:
        if url.scheme == "https":
            ctx = ssl.create_default_context(cafile=str(srv.ca_file))
            if srv.client_cert_file:
                ctx.load_cert_chain(str(srv.client_cert_file), str(srv.client_key_file))
            conn = http.client.HTTPSConnection(
                url.hostname or "", url.port, context=ctx, timeout=10
            )
        else:
            conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    hdrs = dict(headers or {})
    if token is not None:
        tok = token or srv.root_token
        if srv.flavor == "ovh":
            hdrs.setdefault("Authorization", f"Bearer {tok}")
        else:
            hdrs.setdefault("X-Vault-Token", tok)
    payload = None
    if body is not None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        conn.request(method, url.path + path, body=payload, headers=hdrs)
        resp = conn.getresponse()
        return Raw(resp.status, resp.headers, resp.read())
    finally:
        if own:
            conn.close()


def client(srv: DevServer, token: str | None = "", **kwargs: Any) -> hvac.Client:
    """An hvac client set up the way each flavour needs (kv2-wire.md §6.5)."""
    tok = srv.root_token if token == "" else token
    verify: Any = str(srv.ca_file) if srv.ca_file else True
    if srv.flavor == "ovh":
        session = requests.Session()
        if tok:
            session.headers["Authorization"] = f"Bearer {tok}"
        session.verify = verify
        return hvac.Client(url=srv.url, token="", session=session, strict_http=True, **kwargs)
    return hvac.Client(url=srv.url, token=tok or "", verify=verify, **kwargs)


def read(c: hvac.Client, path: str, **kw: Any) -> Any:
    return c.secrets.kv.v2.read_secret_version(path, raise_on_deleted_version=True, **kw)
