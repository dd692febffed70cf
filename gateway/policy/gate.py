"""The policy in force: one reference swapped whole on reload, plus the rate buckets that go with it.

Sans-IO like the engine: the caller passes the local time and the monotonic time. A request sees either the
old policy or the new one, never a mix, because `check` reads `self._state` once.
"""

from __future__ import annotations

from dataclasses import dataclass

from .engine import Caller, Decision, LocalTime, Policy, RateLimiter


@dataclass(frozen=True)
class _State:
    policy: Policy
    limiter: RateLimiter


class Gate:
    def __init__(self, policy: Policy) -> None:
        self._state = _State(policy, RateLimiter(policy))

    @property
    def policy(self) -> Policy:
        return self._state.policy

    def swap(self, policy: Policy) -> None:
        """Put a fully validated policy in force. Rate buckets start full again: limits may have changed."""
        self._state = _State(policy, RateLimiter(policy))

    def check(self, caller: Caller, infno: str, when: LocalTime, now: float) -> Decision:
        state = self._state
        decision = state.policy.decide(caller, infno, when)
        if not decision.allowed:
            return decision
        client = state.policy.client_for(caller)
        assert client is not None  # allowed implies a client matched
        return state.limiter.take(client, infno, now) or decision
