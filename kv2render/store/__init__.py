"""Stage store/: the only code that talks to a KV2 server.

It owns the hvac boundary (``client.py``: ``HvacSecretStore``, the ``SecretStore`` protocol
the other stages code against, the mapping of hvac and requests errors onto kv2render's
error tree), the login methods (``auth.py``), and the transport (``transport.py``: TLS,
deadlines, body bounds, the start-up transport warnings) with the one retry backoff. It may
import ``config`` and the modules below it (``redact``, ``model``, ``refs``, ``payload``,
``authority``, ``errors``, ``jsonnum``, ...), never ``render``, ``output``, ``runner``,
``daemon``, ``app`` or ``cli`` (docs/architecture.md; ``lint-imports`` checks it).
"""
