"""Stage output/: everything kv2render leaves on disk, and the commands that follow a write.

It owns ``write_atomic()`` in ``writer.py``, the only function that creates or replaces an
output (temp file 0600 in the same directory, fsync, rename; unchanged bytes, no write), the
trust decision on a destination folder (``dirchecks.py``), the status file, pid file and
instance lock (``status.py``), what one instance owns besides its outputs, its lock and
its leftover temp files (``instance.py``), and the commands run after a pass changed files
(``commands.py``). It may import ``config`` and the modules below it (``redact``, ``model``,
``refs``, ``payload``, ``authority``, ``errors``, ``logsetup``, ``hardening``, ...), never
``store``, ``render``, ``runner``, ``daemon``, ``app`` or ``cli`` (docs/architecture.md;
``lint-imports`` checks it).
"""
