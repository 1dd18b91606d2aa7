"""The retry loop of one store call: backoff, the --once deadline, the daemon's stop.

    Retries.run(where, call)   call(); on TransientError wait (backoff.READ_*, a
                               Retry-After as a floor) and call again, up to
                               vault.retry.num_retries times, within the deadline
    Retries.set_deadline(...)  --once's once_timeout (KV2-INV-354)

Its clock, wait and random source are arguments (STYLE convention 7): a test scripts the
waits on a fake clock, and the daemon's stop event ends a wait at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from kv2render.errors import TransientError
from kv2render.store.backoff import READ_JITTER, backoff

__all__ = ["Retries"]

log = logging.getLogger(__name__)

_T = TypeVar("_T")
# KV2-INV-354: with a deadline, a retry wait ends at least this long before it, so that the
# last attempt can still be made (a refused connect takes a millisecond; a silent host gets
# this second as its connect timeout).
_LAST_ATTEMPT = 1.0


class Retries:
    """Retries of one call. Thread-safe: each run keeps its own attempt count."""

    def __init__(
        self,
        *,
        max_retries: int,
        base: float,
        cap: float,
        clock: Callable[[], float],
        pause: Callable[[float], bool],
        stop: threading.Event | None,
        rng: random.Random,
    ) -> None:
        self._max_retries = max(0, max_retries)
        self._base = base
        self._cap = cap
        self._clock = clock
        self._pause = pause  # waits; True when the stop event fired (backoff.pause)
        self._stop = stop
        self._rng = rng
        # --once's overall deadline (KV2-INV-354): a self._clock reading, or None (daemon).
        self._deadline: float | None = None
        self._label = ""

    def set_deadline(self, seconds: float | None, label: str = "") -> None:
        """Bound every call and wait to ``seconds`` from now; None or 0 removes the bound.
        ``label`` names the setting in messages (``--timeout 60s``)."""
        if not seconds:
            self._deadline = None
            return
        self._deadline = self._clock() + seconds
        self._label = label or f"a {seconds:g}s deadline"

    def left(self) -> float | None:
        """Seconds to the deadline (negative once past it), or None without one."""
        return None if self._deadline is None else self._deadline - self._clock()

    def monotonic_deadline(self) -> float | None:
        """The deadline on time.monotonic, the clock of transport's watchdog."""
        left = self.left()
        return None if left is None else time.monotonic() + left

    def run(self, where: str, call: Callable[[], _T]) -> _T:
        attempt = 0
        while True:
            if self._stop is not None and self._stop.is_set():
                raise TransientError("stopping: request not sent", where=where)
            try:
                return call()
            except TransientError as exc:
                # KV2-INV-054: waits drawn from [d/2, d]; a Retry-After is a floor.
                delay = backoff(
                    attempt + 1,
                    base=self._base,
                    cap=self._cap,
                    rng=self._rng,
                    jitter=READ_JITTER,
                    retry_after=exc.retry_after,
                )
                left = self.left()
                out_of_time = False
                if left is not None:
                    # KV2-INV-354: the last wait is cut so that one more attempt still starts
                    # _LAST_ATTEMPT before the deadline; with less than that left, stop.
                    room = left - _LAST_ATTEMPT
                    # A Retry-After past the deadline: the server said no attempt can succeed
                    # in time, so none is made (a wait would only delay the same exit).
                    late = exc.retry_after is not None and exc.retry_after > room
                    out_of_time = room <= 0 or late
                    delay = min(delay, max(room, 0.0))
                if attempt >= self._max_retries or out_of_time:
                    raise self._gave_up(exc, attempt, out_of_time) from exc
                attempt += 1
                if left is None:
                    log.warning("%s; retry %d/%d in %.2fs", exc, attempt, self._max_retries, delay)
                else:
                    log.warning(
                        "%s; retry %d/%d in %.2fs, %.0fs left of %s",
                        exc,
                        attempt,
                        self._max_retries,
                        delay,
                        max(0.0, left),
                        self._label,
                    )
                if self._pause(delay):
                    raise

    def _gave_up(self, exc: TransientError, attempt: int, out_of_time: bool) -> TransientError:
        # KV2-FC-054: name the number of attempts and the last cause; KV2-FC-354: and the
        # deadline when that is what ended the retries.
        attempts = f"{attempt + 1} attempt" + ("s" if attempt else "")
        why = f"{self._label} ran out" if out_of_time else "gave up"
        hint = exc.hint
        if out_of_time:
            more = "raise --timeout (once_timeout) if the server needs longer to start"
            hint = f"{hint}; {more}" if hint else more
        return TransientError(
            f"{exc.message} ({why} after {attempts})",
            where=exc.where,
            hint=hint,
            retry_after=exc.retry_after,
        )
