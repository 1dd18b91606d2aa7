"""Stage render/: templates in, text out, in memory; nothing here reads a server or writes a file.

It owns the Jinja2 sandbox and its guards (``jinja.py``), the consul-template filters for
Jinja2 (``filters.py``), and ``ctmpl/``, a port of Go's ``text/template`` with
consul-template's functions; with them the discovery of the secret references a template
uses. It may import ``config`` and the modules below it (``redact``, ``model``, ``refs``,
``payload``, ``authority``, ``errors``, ``jsonnum``, ...), never ``store``, ``output``,
``runner``, ``daemon``, ``app`` or ``cli`` (docs/architecture.md; ``lint-imports`` checks it).
"""
