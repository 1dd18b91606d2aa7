"""kv2render.store: the only code that talks to a KV2 server.

It owns the hvac boundary (``client.py``: ``HvacSecretStore``, the ``SecretStore``
protocol, ``open_store()``), the mapping of answers and failures to kv2render errors
(``responses.py``, ``network.py``), retries and the one backoff (``retries.py``,
``backoff.py``), the auth methods and their credential files (``auth.py``,
``credentials.py``, ``login.py``) and the TLS transport (``transport.py``). It imports
``config`` and the leaf modules only; never ``render`` or ``output``.
"""
