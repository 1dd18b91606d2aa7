"""The token sink (``auto_auth.sink "file"``, KV2-INV-490): the one place kv2render writes
a token, and only because the operator asked for it.

    store login --on_token(token)--> token_writer(cfg)(token) --write_atomic--> sink files

Each file holds the bare token, no newline, as Vault Agent writes it (measured with OpenBao
Agent 2.7), with the sink's mode (default 0640) and owner, written by :func:`write_atomic`
(temp file, fsync, rename): a reader never sees half a token. A login that gives the same
token leaves the file untouched. Logs name the path and mode, never the token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from kv2render.output.writer import write_atomic

if TYPE_CHECKING:
    from kv2render.config.sink import FileSink

__all__ = ["token_writer", "write_token"]

log = logging.getLogger(__name__)


def write_token(sinks: Sequence[FileSink], token: str) -> None:
    """Write ``token`` to every sink; WriteError (path and cause, never the token) on the
    first that fails, the file left as it was."""
    data = token.encode()
    for sink in sinks:
        if write_atomic(sink.path, data, perms=sink.mode, user=sink.uid, group=sink.gid):
            log.info("token written to sink %s (mode %04o)", sink.path, sink.mode)


def token_writer(sinks: Sequence[FileSink]) -> Callable[[str], None] | None:
    """The login hook for a config's sinks, or None when it has none."""
    if not sinks:
        return None
    chosen = tuple(sinks)
    return lambda token: write_token(chosen, token)
