"""Stage output/: everything kv2render leaves on disk.

It owns ``write_atomic()`` in ``writer.py``, the only function that creates or replaces an
output (temp file 0600 in the same directory, fsync, rename; unchanged bytes, no write), the
trust decision on a destination folder (``dirchecks.py``), the status file, pid file and
instance lock (``status.py``), and what one instance owns besides its outputs, its lock and
its leftover temp files (``instance.py``). It may import ``config`` and the modules below it
(``redact``, ``model``, ``refs``, ``payload``, ``authority``, ``errors``, ``logsetup``, ...),
never ``store``, ``render``, ``runner``, ``daemon``, ``app`` or ``cli``
(docs/architecture.md; ``lint-imports`` checks it).
"""
