"""The embedded, in-memory KV2 dev server (``kv2render dev-server``).

For development and tests only: it speaks the Vault KV v2 HTTP API faithfully
(wire reference kv2-wire.md, checklist §11) in three flavours (vault, openbao,
ovh), but keeps everything in memory and is not a security boundary.

    HTTP client --socket--> httpserver (keep-alive, TLS, faults, counters)
        -> router (namespace, token, ACL) -> kv (KV v1/v2 engines; fields, gofields)
                                          -> endpoints (logins, auth/token, sys)
    DevServer (server.py): the Python API tests use; seed.py loads YAML seeds.

Imports point one way, as in the package (docs/architecture.md): protocol.py (wire shapes,
Request, Reply) is at the bottom; endpoints and sysapi see the router through
context.RouterContext, and seed.py and httpserver.py see their DevServer through a small
Protocol, so that nothing imports back up into router.py or server.py.

The openbao flavour follows what the real OpenBao server was measured to answer
(tests/devserver/test_conformance_real.py, docs/dev-server.md): numbers.py stores KV v2
numbers as float64, gofields.py converts fields and words errors as OpenBao does.
"""

from __future__ import annotations

from kv2render.devserver.server import DevServer
from kv2render.devserver.state import Faults

__all__ = ["DevServer", "Faults"]
