"""Per-upstream circuit breaker: closed → open → half-open → closed, as an explicit state machine.

Sans-IO: callers pass `now` (monotonic seconds), so tests drive time and the same object works under any
clock. Only connection-level failures count (could not connect, handshake failed, link dropped): a platform
answer with infcode -1 is a healthy upstream saying no.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class BreakerState(enum.Enum):
    CLOSED = "closed"  # traffic flows; failures are counted
    OPEN = "open"  # traffic is refused until the cool-down ends
    HALF_OPEN = "half_open"  # one trial request at a time decides


class IllegalTransition(RuntimeError):
    """A move the table does not allow: a bug in the caller, never an operational condition."""


_MOVES = {
    BreakerState.CLOSED: {BreakerState.OPEN},
    BreakerState.OPEN: {BreakerState.HALF_OPEN},
    BreakerState.HALF_OPEN: {BreakerState.CLOSED, BreakerState.OPEN},
}


@dataclass(frozen=True)
class BreakerPolicy:
    failures_to_open: int = 3  # consecutive failures that open the breaker
    cooldown: float = 5.0  # seconds open before a trial
    cooldown_max: float = 60.0  # the cool-down doubles after each failed trial, up to this
    successes_to_close: int = 2  # consecutive trial successes that close it again


class Breaker:
    def __init__(self, name: str, policy: BreakerPolicy | None = None) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.successes = 0
        self.opened_at = 0.0
        self.cooldown = self.policy.cooldown
        self.trial_in_flight = False
        #: monotonic time of the last move into CLOSED (failback waits for the primary to stay healthy)
        self.closed_since = 0.0

    def _move(self, to: BreakerState, now: float) -> None:
        if to not in _MOVES[self.state]:
            raise IllegalTransition(f"breaker {self.name}: {self.state.value} -> {to.value}")
        self.state = to
        if to is BreakerState.OPEN:
            self.opened_at = now
        if to is BreakerState.CLOSED:
            self.closed_since = now
            self.cooldown = self.policy.cooldown

    def available(self, now: float) -> bool:
        """Would allow() say yes now? (No side effects: ordering candidates must not consume a trial.)"""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return now - self.opened_at >= self.cooldown
        return not self.trial_in_flight

    def allow(self, now: float) -> bool:
        """May a request be sent now? In half-open, only one trial at a time."""
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.cooldown:
            self._move(BreakerState.HALF_OPEN, now)
            self.successes = 0
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.HALF_OPEN and not self.trial_in_flight:
            self.trial_in_flight = True
            return True
        return False

    def success(self, now: float) -> None:
        self.failures = 0
        if self.state is BreakerState.HALF_OPEN:
            self.trial_in_flight = False
            self.successes += 1
            if self.successes >= self.policy.successes_to_close:
                self._move(BreakerState.CLOSED, now)

    def failure(self, now: float) -> None:
        if self.state is BreakerState.HALF_OPEN:
            self.trial_in_flight = False
            self.cooldown = min(self.cooldown * 2, self.policy.cooldown_max)
            self._move(BreakerState.OPEN, now)
            return
        if self.state is BreakerState.CLOSED:
            self.failures += 1
            if self.failures >= self.policy.failures_to_open:
                self._move(BreakerState.OPEN, now)

    def healthy_for(self, now: float) -> float:
        """How long it has been closed (0 when it is not)."""
        return now - self.closed_since if self.state is BreakerState.CLOSED else 0.0
