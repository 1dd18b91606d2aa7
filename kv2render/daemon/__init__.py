"""Stage daemon/: kv2render as a long-running service.

It owns the poll loop (``loop.py``: its clock, tick source and stop event are arguments)
and its seams (``token.py`` the token lifecycle, ``polling.py``, ``templates.py``,
``status_doc.py``, ``reload.py``, ``ticks.py``, ``ports.py``), file watching, signals and the
worker thread (``service.py``), and systemd's notify socket (``notify.py``). It may import
``runner``, ``store``, ``output``, ``config`` and the modules below them (``model``,
``refs``, ``errors``, ``logsetup``, ``hardening``, ...); it leaves rendering to ``runner``
and never imports ``app`` or ``cli`` (docs/architecture.md; ``lint-imports`` checks the
direction).
"""
