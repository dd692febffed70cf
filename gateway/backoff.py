"""The one backoff of the gateway: exponential, capped, with jitter.

Every retry loop (the relay's attempts within a HIS's deadline, its 冲正s and queries that outlive it, storing an
outcome the outbox refused, the MQTT publisher's reconnects) waits by this, so that callers that failed together
(many cashier stations behind one broken link) do not come back in step.
"""

from __future__ import annotations

import random
from collections.abc import Callable

#: beyond this many doublings every pause is the ceiling anyway; the exponent stops here so it cannot overflow
_MAX_DOUBLINGS = 60


def backoff(attempt: int, *, first: float, ceiling: float, rng: Callable[[], float] = random.random) -> float:
    """The pause after failed attempt `attempt` (1: the first): `first` doubled per attempt up to `ceiling`, then
    drawn uniformly from its upper half ("equal jitter": never less than half, so a retry is never immediate)."""
    if attempt < 1:
        raise ValueError("attempts count from 1")
    top = min(ceiling, first * 2.0 ** min(attempt - 1, _MAX_DOUBLINGS))
    return top * (0.5 + rng() / 2)
