"""The circuit breaker as a state machine: explicit moves, driven time, and a hypothesis walk of its rules."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.net.breaker import Breaker, BreakerPolicy, BreakerState, IllegalTransition

from conftest import fuzz_examples

P = BreakerPolicy(failures_to_open=3, cooldown=5, cooldown_max=20, successes_to_close=2)


def test_opens_after_consecutive_failures_only() -> None:
    b = Breaker("p", P)
    b.failure(0)
    b.failure(1)
    b.success(2)  # a success resets the count
    b.failure(3)
    b.failure(4)
    assert b.state is BreakerState.CLOSED
    b.failure(5)
    assert b.state is BreakerState.OPEN
    assert not b.allow(6)


def test_half_open_allows_one_trial_and_closes_after_successes() -> None:
    b = Breaker("p", P)
    for t in range(3):
        b.failure(t)
    assert not b.allow(6.9)
    assert b.allow(7.0) and b.state is BreakerState.HALF_OPEN
    assert not b.allow(7.1)  # one trial at a time
    b.success(7.2)
    assert b.state is BreakerState.HALF_OPEN
    assert b.allow(7.3)
    b.success(7.4)
    assert b.state is BreakerState.CLOSED
    assert b.healthy_for(10.4) == pytest.approx(3.0)


def test_failed_trial_doubles_the_cooldown_up_to_the_cap() -> None:
    b = Breaker("p", P)
    for t in range(3):
        b.failure(t)
    opened = 2.0
    expected = [10, 20, 20]
    for cooldown in expected:
        prev = b.cooldown
        assert b.allow(opened + prev)
        b.failure(opened + prev)
        opened += prev
        assert b.state is BreakerState.OPEN and b.cooldown == cooldown
    assert not b.allow(opened + 19.9)


def test_illegal_moves_raise() -> None:
    b = Breaker("p", P)
    with pytest.raises(IllegalTransition):
        b._move(BreakerState.HALF_OPEN, 0)


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["allow", "ok", "fail"]), st.floats(0, 30)), max_size=60))
def test_random_walks_keep_the_invariants(steps: list[tuple[str, float]]) -> None:
    b = Breaker("p", P)
    now = 0.0
    for op, dt in steps:
        now += dt
        if op == "allow":
            predicted = b.available(now)
            allowed = b.allow(now)
            assert allowed == predicted
            if b.state is BreakerState.OPEN:
                assert not allowed
        elif op == "ok":
            b.success(now)
        else:
            b.failure(now)
        assert P.cooldown <= b.cooldown <= P.cooldown_max
        assert b.failures < P.failures_to_open or b.state is not BreakerState.CLOSED
        assert not (b.trial_in_flight and b.state is not BreakerState.HALF_OPEN)
