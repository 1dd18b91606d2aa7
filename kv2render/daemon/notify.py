"""The systemd notify protocol (``sd_notify``) over ``NOTIFY_SOCKET``, stdlib only.

systemd passes a datagram socket path in ``NOTIFY_SOCKET`` to a ``Type=notify``
service; the service sends newline-separated ``KEY=VALUE`` assignments to it
(sd_notify(3)). kv2render sends ``READY=1`` after the first complete render,
``STATUS=...`` lines, ``WATCHDOG=1`` every half ``WATCHDOG_USEC`` when the unit
sets ``WatchdogSec=``, and ``STOPPING=1`` on shutdown (KV2-FC-16x). It sends no
``RELOADING=1``: the example units are ``Type=notify`` with SIGHUP as ExecReload, and
``RELOADING=1`` is only honest when a ``READY=1`` ends every reload, refused ones included
(``Type=notify-reload``, KV2-NFR-451).

Without ``NOTIFY_SOCKET`` every call is a no-op, so the daemon code never asks
whether it runs under systemd. A send that fails is logged once at DEBUG and
never raises: the files kv2render serves matter more than its report.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    """Send sd_notify messages; a no-op when ``NOTIFY_SOCKET`` is unset."""

    def __init__(self, env: Mapping[str, str] | None = None, *, pid: int | None = None) -> None:
        source = os.environ if env is None else env
        self._address = _address(source.get("NOTIFY_SOCKET", ""))
        self._warned = False
        self.watchdog_interval: float | None = None
        usec = source.get("WATCHDOG_USEC", "")
        owner = source.get("WATCHDOG_PID", "")
        mine = str(os.getpid() if pid is None else pid)
        if usec.isdigit() and int(usec) > 0 and (not owner or owner == mine):
            # sd_watchdog_enabled(3): ping at half the timeout to leave room for jitter.
            self.watchdog_interval = int(usec) / 2_000_000

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; True when it was sent."""
        if self._address is None or not assignments:
            return False
        message = "\n".join(assignments).encode("utf-8", "replace")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:
            if not self._warned:
                self._warned = True
                log.debug("cannot send to NOTIFY_SOCKET: %s", exc.strerror or exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")


def _one_line(text: str) -> str:
    # A newline would start a new assignment: STATUS text must stay one line.
    return " ".join(text.split())


def _address(value: str) -> str | None:
    """The socket address: a filesystem path, or ``@name`` for the abstract namespace."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    log.debug("NOTIFY_SOCKET is neither a path nor @abstract; notifications are off")
    return None
