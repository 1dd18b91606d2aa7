"""Which server a name points at: a reference's host against ``vault.address``, and loopback.

* :func:`check_authority` (KV2-INV-006): a reference that names a host must name the server
  of ``vault.address``, since the read always goes there. Hosts compare case-insensitively, an
  omitted port is the scheme's default, and the https form must name the address's base path.
* :func:`is_loopback_host` (KV2-INV-381): the one test of "this machine's loopback", shared
  by the transport warnings (store/transport.py) and the dev server's bind check.

Below refs.py in the layers (docs/architecture.md): it sees a reference through the small
:class:`NamedServer` protocol, which ``refs.SecretRef`` satisfies, and refs re-exports
``check_authority`` and ``is_loopback_host`` (fixed contracts of ``kv2render.refs``).
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import unquote, urlsplit

from kv2render.errors import ConfigError

__all__ = ["NamedServer", "check_authority", "is_loopback_host"]


class NamedServer(Protocol):
    """What :func:`check_authority` reads of a reference; its ``str()`` is the reference's
    canonical text (``refs.format_ref``), metadata only."""

    @property
    def host(self) -> str | None:
        """``host[:port]`` as written, lower-cased; None when the reference names none."""

    @property
    def prefix(self) -> str:
        """The https form's base path before ``/v1``."""

    @property
    def form(self) -> str:
        """``vault+kv2``, ``https`` or ``path``."""

    @property
    def scheme(self) -> str:
        """The https form's URL scheme, ``https`` or ``http``."""


_DEFAULT_PORTS = {"https": 443, "http": 80}


def _split_host_port(hostport: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        close = hostport.find("]")
        host, rest = hostport[1:close], hostport[close + 1 :]
    else:
        host, _, port = hostport.partition(":")
        rest = f":{port}" if port else ""
    return host.lower().rstrip("."), (int(rest[1:]) if rest[1:].isdigit() else None)


def check_authority(ref: NamedServer, address: str, *, where: str | None = None) -> None:
    """Raise ConfigError when a reference names a host (or base path) other than ``address``.

    KV2-INV-006: hosts compare case-insensitively; an omitted port is the scheme's default
    (443/80): the reference's own scheme in the https form, the address's scheme in the
    vault+kv2 form (which has none). The https form must also name the address's base path.
    """
    if ref.host is None:
        return  # empty authority / path form: the configured address by definition
    try:
        parts = urlsplit(address)
        scheme = parts.scheme.lower()
        addr_host = (parts.hostname or "").rstrip(".")
        addr_port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        scheme, addr_host, addr_port = "", "", None
    if scheme not in _DEFAULT_PORTS or not addr_host or addr_port is None:
        raise ConfigError(
            "vault.address is not an http(s) URL, so the reference's host cannot be checked",
            where=where,
            hint="set vault.address to https://HOST[:PORT][/PREFIX]",
        )
    addr_prefix = unquote(parts.path).rstrip("/")
    host, port = _split_host_port(ref.host)
    portless = port is None
    if port is None:
        port = _DEFAULT_PORTS[ref.scheme if ref.form == "https" else scheme]
    same = host == addr_host and port == addr_port
    if ref.form == "https":
        same = same and ref.prefix.rstrip("/") == addr_prefix
    if same:
        return
    named = f"{ref.host}{ref.prefix}" if ref.form == "https" else ref.host
    shown_host = f"[{addr_host}]" if ":" in addr_host else addr_host
    configured = f"{shown_host}:{addr_port}{addr_prefix}"
    hint = "make them match, or leave the host out (vault+kv2:///MOUNT/PATH) to use vault.address"
    if ref.form == "vault+kv2" and portless and "." not in host:
        hint += f"; if {ref.host!r} is a mount, the reference needs three slashes"
    raise ConfigError(
        f"reference {str(ref)!r} names server {named!r} but vault.address is {configured!r}",
        where=where,
        hint=hint,
    )


def is_loopback_host(host: str) -> bool:
    """True when ``host`` (a name or an address, brackets allowed) is this machine's loopback
    (KV2-INV-381): the one test the transport warnings and the dev server both use."""
    import ipaddress  # only a plain-http address or a dev-server start pays for these
    import socket

    name = host.strip().removeprefix("[").removesuffix("]").rstrip(".").lower()
    if name == "localhost":
        return True
    if not name or any(c.isspace() for c in name):
        return False
    address: ipaddress.IPv4Address | ipaddress.IPv6Address
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])  # an IPv6 zone is not the address
    except ValueError:
        try:
            # inet_aton's spellings (127.1, 0x7f.1, 2130706433) are what bind() and connect()
            # accept too: the address a socket would really use.
            address = ipaddress.IPv4Address(socket.inet_aton(name))
        except OSError:
            return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback
