"""kv2render: render files from secrets read over the KV v2 protocol.

One protocol, three targets: HashiCorp Vault, OpenBao and OVHcloud Secret
Manager all serve the Vault KV v2 HTTP API. Data flows one way, and ``ls kv2render/``
draws it: one folder per stage (docs/architecture.md)::

    cli.py, app.py     argv -> exit code; the sub-commands (logsetup.py: log formats;
                       hardening.py: core dumps off, commands' token-free environment)
      -> config/       YAML/JSON/HCL in Vault Agent vocabulary -> one strict pass -> frozen Config
      -> daemon/       the long-running service: poll loop, token lifecycle, file watching,
                       signals, sd_notify
      -> runner.py     one pass: unique references -> reads -> render -> write -> commands
           -> store/   the only code that talks to a KV2 server: hvac boundary, logins, TLS
           -> render/  templates compiled up front and rendered in memory: Jinja2 sandbox
                       + filters, ctmpl/ (consul-template syntax); error text through redact.py
           -> output/  write_atomic(): temp file 0600 -> fsync -> rename, unchanged bytes
                       never written; status file, lock, destination checks; the commands
    below every stage  model.py (values that cross stages), refs.py (the reference grammar),
                       payload.py (key/pointer selection, value text), authority.py (host
                       checks, loopback), redact.py, errors.py, jsonnum.py
    devserver/         the embedded KV2 dev server (development and tests only)

Imports point down this picture only; ``lint-imports`` checks it (pyproject.toml).

Public API: :func:`main` (the CLI) and the error tree in :mod:`kv2render.errors`.
"""

from __future__ import annotations

from kv2render._version import __version__

__all__ = ["__version__", "main"]


def main(argv: list[str] | None = None) -> int:
    from kv2render.cli import main as _main

    return _main(argv)
