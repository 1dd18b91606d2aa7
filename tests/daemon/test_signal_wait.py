"""The daemon's main thread notices the render loop's end (found while running tests/daemon
for issue 14): supervise's worker ends by sending a zero byte on the wake socket."""

from __future__ import annotations

import socket
import threading
import time

from kv2render.daemon.notify import Notifier
from kv2render.daemon.service import _wait_for_signal
from kv2render.daemon.ticks import QueueTicks


def test_signal_wait_ends_when_the_worker_ends_after_its_wake_byte() -> None:
    """KV2-AC-168: the worker's zero byte arrives while the worker thread still
    looks alive; the main thread must not go back to an endless select() (exit_on_retry_failure
    hung about one run in three)."""
    finish = threading.Event()
    worker = threading.Thread(target=finish.wait, daemon=True)
    worker.start()
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    result: list[str | None] = []
    waiter = threading.Thread(
        target=lambda: result.append(
            _wait_for_signal(worker, wake_r, QueueTicks(), Notifier({}), time.monotonic)
        ),
        daemon=True,
    )
    try:
        wake_w.send(b"\0")  # supervise's body: its last act before the thread ends
        waiter.start()
        time.sleep(0.2)  # the waiter has read the byte and seen a live worker
        finish.set()
        waiter.join(timeout=5)
        assert not waiter.is_alive(), "the signal wait outlived the worker"
        assert result == [None]
    finally:
        finish.set()
        wake_w.send(b"\0")  # frees a waiter stuck in select() (the bug), so the test ends
        waiter.join(timeout=5)
        wake_r.close()
        wake_w.close()
