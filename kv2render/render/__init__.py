"""Stage render/: templates in, text out, in memory; nothing here reads a server or writes a file.

It owns the compilation of a template entry into a renderable (``prepare.py``), the Jinja2
environment and its entry points (``jinja.py``) with the parts it is built from: reference
discovery (``discover.py``), the template's functions and secret views (``functions.py``),
the sandbox (``sandbox.py``), its guards (``guards.py``), one render's budget
(``budget.py``) and the redacted error text (``errortext.py``); the consul-template filters
for Jinja2 (``filters.py``), and ``ctmpl/``, a port of Go's ``text/template`` with
consul-template's functions. It may import ``config`` and the modules below it (``redact``,
``model``, ``refs``, ``payload``, ``authority``, ``errors``, ``hardening``, ``jsonnum``,
...), never ``store``, ``output``, ``runner``, ``daemon``, ``app`` or ``cli``
(docs/architecture.md; ``lint-imports`` checks it).
"""
