"""Value objects that cross stages: what a read returned, what is known of the token.

Frozen dataclasses; secret-bearing fields are ``repr=False`` (KV2-INV-001). The reference
types (:class:`~kv2render.refs.SecretRef`, :class:`~kv2render.refs.SecretLocation`) live
with their grammar in :mod:`kv2render.refs`; the render result types with the pass that
makes them, in :mod:`kv2render.runner`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kv2render.errors import CommandError
from kv2render.refs import SecretLocation

__all__ = ["CommandResult", "SecretVersion", "TokenInfo"]


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


@dataclass(frozen=True)
class CommandResult:
    """One post-render command of a pass: the command, the templates that asked for it, and
    its failure if any. Here rather than in output/commands.py, which a pass imports only
    when a template has a command (KV2-NFR-520)."""

    command: tuple[str, ...] | str
    templates: tuple[int, ...]
    error: CommandError | None = None
