"""What wakes the daemon loop besides its own deadlines: file changes and reload requests.

    Watcher (watchfiles) --FilesChanged--┐
    SIGHUP handler --ReloadRequested-----┼--> QueueTicks --wait(timeout)--> Daemon.run
    stop (SIGTERM, SIGINT) --None--------┘

The loop waits only through a :class:`TickSource` (STYLE.md convention 7): production
passes :class:`QueueTicks`; tests pass a script of ticks and events.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class FilesChanged:
    """Paths (normalised, absolute) that changed in a watched directory."""

    paths: frozenset[str]


@dataclass(frozen=True)
class ReloadRequested:
    reason: str = "SIGHUP"


TickEvent = FilesChanged | ReloadRequested


class TickSource(Protocol):
    """Blocks up to ``timeout`` seconds; returns the events that arrived (empty on timeout)."""

    def wait(self, timeout: float) -> Sequence[TickEvent]: ...


class QueueTicks:
    """The production tick source: a queue fed by the watcher and the signal handler."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[TickEvent | None] = queue.SimpleQueue()
        # Set when the loop first waits: its first pass is over (service.Watcher starts
        # its OS watch then, not during the first render, KV2-NFR-241).
        self.waiting = threading.Event()

    def put(self, event: TickEvent | None) -> None:
        """``None`` only wakes the loop (used on stop)."""
        self._queue.put(event)

    def wait(self, timeout: float) -> list[TickEvent]:
        self.waiting.set()
        try:
            items = [self._queue.get(timeout=max(0.0, timeout))]
        except queue.Empty:
            return []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return [item for item in items if item is not None]
