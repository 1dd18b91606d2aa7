"""Stage store/: the only code that talks to a KV2 server.

It owns the hvac boundary (``client.py``: ``HvacSecretStore``, the ``SecretStore`` protocol,
``open_store()``), the mapping of answers and failures to kv2render errors (``responses.py``,
``network.py``), retries and the one backoff (``retries.py``, ``backoff.py``), the auth methods
and their credential files (``auth.py``, ``credentials.py``, ``login.py``) and the TLS
transport (``transport.py``). It may import ``config`` and the modules below it (``redact``,
``model``, ``refs``, ``payload``, ``authority``, ``errors``, ``jsonnum``, ...), never
``render``, ``output``, ``runner``, ``daemon``, ``app`` or ``cli`` (docs/architecture.md;
``lint-imports`` checks it).
"""
