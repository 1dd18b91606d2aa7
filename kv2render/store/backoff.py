"""The one backoff of kv2render: every wait after a failure is drawn here.

    delay = min(cap, base * 2 ** (failures - 1)) * uniform(1 - jitter, 1)
    delay = max(delay, retry_after)          # a server's Retry-After is a floor

The jitter only shortens a wait (it is drawn below the ceiling, never above), so ``cap``
stays a true bound on the backoff itself; a Retry-After may exceed it, as the server
asked (the store bounds Retry-After to 5 minutes when it parses the header).

Two parameterisations, each pinned by tests and the spec:

    READ_*       store retries of one request: 0.25 s doubling to 60 s, waits drawn from
                 [d/2, d] (KV2-INV-054, KV2-AC-063)
    the daemon   logins (auto_auth.method min_backoff/max_backoff, 1 s .. 5 m as Vault
                 Agent), renewals and failed templates (KV2-FC-161, KV2-FC-162): jittered
                 down by at most 25 % (``jitter=0.25``); a failed folder listing's rest,
                 60 s doubling to an hour, unjittered (``jitter=0``, KV2-FC-502)

Written here rather than taken from ``tenacity`` or ``stamina``: both own the retry loop
(decorators that call and sleep), while the store's loop also honours a deadline and a
stop event and the daemon never sleeps at all (it schedules the next attempt on its own
clock); what both need is this one pure function.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

__all__ = ["READ_BASE", "READ_CAP", "READ_JITTER", "backoff", "pause"]

# 2**30 times any base already passes every cap in use; the bound keeps a long outage
# (thousands of failures) from overflowing a float.
_MAX_EXPONENT = 30


def backoff(
    failures: int,
    *,
    base: float,
    cap: float,
    rng: random.Random,
    jitter: float = 0.25,
    retry_after: float | None = None,
) -> float:
    """The wait after the ``failures``-th consecutive failure (1 for the first).

    Exponential from ``base`` to ``cap``, jittered down by at most ``jitter`` (a fraction
    of the ceiling, 0..1); ``retry_after`` (seconds) is a floor.
    """
    exponent = max(0, min(failures - 1, _MAX_EXPONENT))
    ceiling = min(cap, base * 2.0**exponent)
    delay = ceiling * rng.uniform(1.0 - jitter, 1.0)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


# KV2-INV-054: the store's retries of one request, waits drawn from [d/2, d].
READ_BASE = 0.25
READ_CAP = 60.0
READ_JITTER = 0.5


def pause(
    sleep: Callable[[float], None] | None, stop: threading.Event | None
) -> Callable[[float], bool]:
    """How a retry loop waits: a function that waits ``delay`` seconds and answers True
    when the stop event fired (a stop ends the wait early and stops the retries).

    ``sleep`` None is the real wait: on the stop event, so that a daemon stop interrupts it
    at once, or ``time.sleep`` when there is none. A given ``sleep`` (a test's recorder or a
    fake clock's advance) is called instead, and the stop event is checked after it.
    """
    if sleep is None:
        if stop is not None:
            return stop.wait

        def real(delay: float) -> bool:
            time.sleep(delay)
            return False

        return real
    injected = sleep

    def scripted(delay: float) -> bool:
        injected(delay)
        return stop is not None and stop.is_set()

    return scripted
