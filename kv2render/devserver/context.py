"""What the endpoint modules need from the router: its state, its wire and the ACL check.

endpoints.py and sysapi.py are called by router.py, so they cannot import it back (no
import cycle, docs/architecture.md): they take any object of this shape, and the Router
is one.
"""

from __future__ import annotations

from typing import Protocol

from kv2render.devserver.auth import Token
from kv2render.devserver.protocol import Wire
from kv2render.devserver.state import State


class RouterContext(Protocol):
    """The Router as the endpoint handlers see it."""

    @property
    def state(self) -> State: ...

    @property
    def wire(self) -> Wire: ...

    def require(self, token: Token, acl_path: str, caps: tuple[str, ...]) -> None:
        """Raise ApiError(403) unless the token's policies grant caps on acl_path."""

    def caps_for(self, op: str, exists: bool) -> tuple[str, ...]:
        """The capabilities an operation needs (create or update for a write)."""


__all__ = ["RouterContext"]
