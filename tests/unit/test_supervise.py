"""``service.supervise``: the main thread's wait for signals or for the render loop to end."""

from __future__ import annotations

import threading

from kv2render.daemon.notify import Notifier
from kv2render.daemon.service import supervise
from kv2render.daemon.ticks import QueueTicks


class _ExitsAtOnce:
    """A render loop that ends by itself with exit code 3 (exit_on_err, KV2-FC-165)."""

    closed = 0

    def run(self) -> int:
        return 3

    def close(self) -> None:
        self.closed += 1


def test_a_loop_that_ends_by_itself_always_ends_the_wait() -> None:
    """KV2-FC-165: when the render loop returns (exit_on_err), supervise returns
    its code every time. The loop's "done" byte can arrive while its thread is still alive;
    the wait used to go back to select() with no timeout and hang for ever (seen against the
    real OpenBao server about one run in three)."""
    codes: list[int] = []
    daemon = _ExitsAtOnce()

    def many() -> None:
        for _ in range(300):
            codes.append(
                supervise(
                    daemon,  # type: ignore[arg-type]
                    ticks=QueueTicks(),
                    stop=threading.Event(),
                    notifier=Notifier({}),
                )
            )

    runner = threading.Thread(target=many, daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), f"supervise hung after {len(codes)} clean exits"
    assert codes == [3] * 300 and daemon.closed == 300
