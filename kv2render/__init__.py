"""kv2render: render files from secrets read over the KV v2 protocol.

One protocol, three targets: HashiCorp Vault, OpenBao and OVHcloud Secret
Manager all serve the Vault KV v2 HTTP API. Data flows one way:

    config.load()           YAML/JSON/HCL in Vault Agent vocabulary -> frozen Config
                            (config_sources, config_values, config_build; agentconfig)
      -> runner.prepare()   compile templates; every secret reference known up front (refs)
      -> auth + vault       log in; read each unique secret once (hvac lives in vault.py only;
                            transport: TLS, deadline, body bound; jsonnum: number texts)
      -> template / ctmpl   render in memory (Jinja2 sandbox + filters, or consul-template
                            syntax); error text through redact
      -> writer             temp file 0600 -> fsync -> rename; unchanged bytes: no write
                            (dirchecks: who else could change a destination directory)
      -> runner             commands for files that changed
    loop + service          the daemon: poll versions, watch files, renew, re-login, reload
                            (status: status file, lock, pid file; notify: sd_notify)
    app, cli                the sub-commands; argv -> exit code (logsetup: log formats;
                            hardening: core dumps off, the one test of loopback)
    devserver               the embedded KV2 dev server (development and tests only)

Public API: :func:`main` (the CLI) and the error tree in :mod:`kv2render.errors`.
"""

from __future__ import annotations

from kv2render._version import __version__

__all__ = ["__version__", "main"]


def main(argv: list[str] | None = None) -> int:
    from kv2render.cli import main as _main

    return _main(argv)
