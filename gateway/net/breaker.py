"""Per-upstream circuit breaker: closed → open → half-open → closed, as an explicit state machine.

Sans-IO: callers pass `now` (monotonic seconds), so tests drive time and the same object works under any
clock. Only connection-level failures count (could not connect, handshake failed, link dropped): a platform
answer with infcode -1 is a healthy upstream saying no.

Outcomes arrive late: an answer to a request sent before the link went dark can come back (TCP retransmits it)
after the breaker has opened. Each use therefore holds a `Ticket` naming what the breaker had seen when it was
taken; an outcome whose ticket predates a later failure is stale and changes nothing (it neither closes a
half-open breaker nor counts as health). In half-open only the trial's own outcome decides.
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


@dataclass(frozen=True)
class Ticket:
    """One use of an upstream (a request or a probe), taken right before it starts."""

    upstream: str
    #: the breaker's failure count when the use began: a failure seen since makes its success stale
    epoch: int
    #: this use is the half-open trial
    trial: bool = False


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
        #: every failure seen, ever: a ticket's epoch is compared with it
        self.epoch = 0
        #: monotonic time since which every outcome was a success (None: the last outcome was a failure). Failback
        #: waits on this, not on the breaker closing: a primary that fails again while closed starts over.
        self.healthy_since: float | None = 0.0

    def _move(self, to: BreakerState, now: float) -> None:
        if to not in _MOVES[self.state]:
            raise IllegalTransition(f"breaker {self.name}: {self.state.value} -> {to.value}")
        self.state = to
        if to is BreakerState.OPEN:
            self.opened_at = now
            self.trial_in_flight = False
        if to is BreakerState.CLOSED:
            self.healthy_since = now
            self.cooldown = self.policy.cooldown

    def available(self, now: float) -> bool:
        """Would allow() say yes now? (No side effects: ordering candidates must not consume a trial.)"""
        if self.state is BreakerState.CLOSED:
            return True
        if self.state is BreakerState.OPEN:
            return now - self.opened_at >= self.cooldown
        return not self.trial_in_flight

    def ticket(self, now: float) -> Ticket | None:
        """May a use start now? In half-open, only one trial at a time: its ticket says so."""
        if self.state is BreakerState.OPEN and now - self.opened_at >= self.cooldown:
            self._move(BreakerState.HALF_OPEN, now)
            self.successes = 0
        if self.state is BreakerState.CLOSED:
            return Ticket(self.name, self.epoch)
        if self.state is BreakerState.HALF_OPEN and not self.trial_in_flight:
            self.trial_in_flight = True
            return Ticket(self.name, self.epoch, trial=True)
        return None

    def allow(self, now: float) -> bool:
        return self.ticket(now) is not None

    def stale(self, ticket: Ticket) -> bool:
        """Did a failure (or the opening it caused) come after this use began?"""
        return ticket.epoch != self.epoch

    def _decides(self, ticket: Ticket | None) -> bool:
        """Does this outcome count? Without a ticket it is fresh (a caller that knows no better)."""
        if ticket is None:
            return True
        if self.state is BreakerState.HALF_OPEN:
            return ticket.trial and not self.stale(ticket)
        return not self.stale(ticket)

    def success(self, now: float, ticket: Ticket | None = None) -> bool:
        """Count a success; False when it was stale and changed nothing."""
        if not self._decides(ticket):
            return False
        self.failures = 0
        if self.state is BreakerState.HALF_OPEN:
            self.trial_in_flight = False
            self.successes += 1
            if self.successes >= self.policy.successes_to_close:
                self._move(BreakerState.CLOSED, now)
        elif self.state is BreakerState.CLOSED and self.healthy_since is None:
            self.healthy_since = now
        return True

    def failure(self, now: float, ticket: Ticket | None = None) -> bool:
        """Count a failure; False when a half-open breaker's non-trial use reported it (the trial decides)."""
        if self.state is BreakerState.HALF_OPEN and not self._decides(ticket):
            return False
        self.epoch += 1
        self.healthy_since = None
        if self.state is BreakerState.HALF_OPEN:
            self.cooldown = min(self.cooldown * 2, self.policy.cooldown_max)
            self._move(BreakerState.OPEN, now)
        elif self.state is BreakerState.CLOSED:
            self.failures += 1
            if self.failures >= self.policy.failures_to_open:
                self._move(BreakerState.OPEN, now)
        return True

    def trip(self, now: float) -> None:
        """Open at once: the link is known dead (no route, or the kernel gave up on a connection)."""
        self.epoch += 1
        self.healthy_since = None
        if self.state is not BreakerState.OPEN:
            self._move(BreakerState.OPEN, now)

    def doubt(self) -> None:
        """Slow, not failed (a connect lost the race to the next upstream): not healthy for failback, not counted
        towards opening."""
        self.healthy_since = None

    def release(self, ticket: Ticket) -> None:
        """A use that ended with no outcome (it never started): its trial slot is free again."""
        if ticket.trial and self.state is BreakerState.HALF_OPEN and not self.stale(ticket):
            self.trial_in_flight = False

    def healthy_for(self, now: float) -> float:
        """How long every outcome has been a success with the breaker closed (0 when it is not closed)."""
        if self.state is not BreakerState.CLOSED or self.healthy_since is None:
            return 0.0
        return now - self.healthy_since
