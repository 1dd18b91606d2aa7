"""The store side of a login: the LoginTransport the auth methods talk through, and the
token API answers (renew-self, lookup-self) read into TokenInfo.

``auth.py`` builds login requests and reads credential files; it never sees hvac or
requests. :class:`StoreLoginTransport` does their HTTP through :class:`Wire`, the narrow,
typed part of the store a login needs (an adapter on the shared session, one exchange with
its error mapping), so that nothing here reaches into the store's private members.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from kv2render.errors import AuthError, Kv2RenderError
from kv2render.model import TokenInfo
from kv2render.store.responses import ok_json

if TYPE_CHECKING:
    import requests

__all__ = ["Adapter", "StoreLoginTransport", "Wire", "token_info"]


class Adapter(Protocol):
    """The part of an hvac adapter a login uses (hvac stays in client.py, KV2-INV-050)."""

    def get(self, url: str, **kwargs: Any) -> requests.Response: ...

    def post(self, url: str, **kwargs: Any) -> requests.Response: ...


class Wire(Protocol):
    """What a login needs from the store (HvacSecretStore provides it)."""

    @property
    def namespace(self) -> str | None:
        """vault.namespace: the namespace of a login that names none of its own."""
        ...

    def adapter(self, *, token: str, namespace: str | None) -> Adapter:
        """An hvac adapter on the store's session; token '' sends no X-Vault-Token."""
        ...

    def send(
        self,
        where: str,
        call: Callable[[], requests.Response],
        *,
        login: bool,
        secrets: Iterable[str] = (),
    ) -> requests.Response:
        """One exchange; network failures come back as kv2render errors."""
        ...

    def status_error(
        self, where: str, resp: requests.Response, *, secrets: Iterable[str] = ()
    ) -> Kv2RenderError:
        """The error for a non-200 answer to a login or token call."""
        ...


class StoreLoginTransport:
    """The LoginTransport of auth.py: unauthenticated POSTs for logins and token-bearing
    GETs for lookup-self. Every value of a login body is scrubbed from error texts."""

    def __init__(self, wire: Wire) -> None:
        self._wire = wire

    def post(
        self, path: str, body: Mapping[str, Any], *, namespace: str | None = None
    ) -> Mapping[str, Any]:
        wire = self._wire
        adapter = wire.adapter(
            token="", namespace=namespace if namespace is not None else wire.namespace
        )
        secrets = [v for v in body.values() if isinstance(v, str)]
        resp = wire.send(
            path, lambda: adapter.post(f"/v1/{path}", json=dict(body)), login=True, secrets=secrets
        )
        return self._checked(path, resp, secrets)

    def get(self, path: str, *, token: str) -> Mapping[str, Any]:
        wire = self._wire
        adapter = wire.adapter(token=token, namespace=wire.namespace)
        resp = wire.send(path, lambda: adapter.get(f"/v1/{path}"), login=True, secrets=[token])
        return self._checked(path, resp, [token])

    def _checked(
        self, path: str, resp: requests.Response, secrets: Iterable[str]
    ) -> Mapping[str, Any]:
        if resp.status_code != 200:
            raise self._wire.status_error(path, resp, secrets=secrets)
        return ok_json(path, resp, login=True)


def token_info(body: Mapping[str, Any], *, where: str, now: float) -> TokenInfo:
    """TokenInfo from a token API answer: renew-self carries ``auth.lease_duration``,
    lookup-self ``data.ttl``. A TTL of 0 (a root token) or a bad value means no expiry."""
    renew = where.endswith("renew-self")
    key, ttl_key = ("auth", "lease_duration") if renew else ("data", "ttl")
    part = body.get(key)
    if not isinstance(part, Mapping):
        what = "renew-self" if renew else "lookup-self"
        raise AuthError(f"the {what} response has no {key} object", where=where)
    raw = part.get(ttl_key)
    ttl = float(raw) if isinstance(raw, int | float) and raw > 0 else None
    return TokenInfo(ttl, bool(part.get("renewable")), now)
