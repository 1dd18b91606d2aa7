"""The daemon's backoff: exponential with jitter, Retry-After as a floor.

One function for the three waits the daemon backs off on: a failed template's restart
(KV2-FC-161), a failed login (``auto_auth.method`` ``min_backoff``/``max_backoff``,
KV2-FC-162) and a failed token renewal. The store's request retries use the same shape.
"""

from __future__ import annotations

import random


def backoff(
    attempt: int,
    *,
    base: float,
    cap: float,
    rng: random.Random,
    retry_after: float | None = None,
) -> float:
    """Exponential from ``base`` to ``cap`` with 25 % downward jitter; Retry-After is a floor."""
    ceiling = min(cap, base * 2.0 ** max(0, min(attempt - 1, 30)))
    delay = ceiling * rng.uniform(0.75, 1.0)
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay
