"""The only module that imports hvac (spec KV2-INV: hvac boundary).

CONTRACT STUB: SecretVersion, SecretStore and TokenInfo are fixed; HvacSecretStore
is being implemented.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from kv2render.refs import SecretLocation


@dataclass(frozen=True)
class SecretVersion:
    """One KV2 read: the version's data (never in a repr) and its metadata."""

    location: SecretLocation
    version: int  # data.metadata.version as the server reported it
    data: Mapping[str, Any] = field(repr=False)  # data.data
    metadata: Mapping[str, Any] = field(default_factory=dict)  # data.metadata (created_time, ...)


@dataclass(frozen=True)
class TokenInfo:
    """What kv2render knows about its current token (metadata only, no token)."""

    ttl: float | None  # seconds left when learned; None: no expiry (root) or no token (mtls/bearer)
    renewable: bool
    learned_at: float  # monotonic clock reading when ttl was learned


class SecretStore(Protocol):
    """What the rest of kv2render needs from a KV2 server. Unit tests fake this."""

    def read(self, location: SecretLocation) -> SecretVersion:
        """Read one secret version; raise a SecretReadError subclass on failure."""
        ...

    def close(self) -> None: ...
