"""The circuit breaker as a state machine (explicit moves, driven time, a hypothesis walk of its rules), and the
upstream pool on top of it with an injected clock: failback after continuous health, late answers ignored."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.net.breaker import Breaker, BreakerPolicy, BreakerState, IllegalTransition
from gateway.net.pool import UpstreamFailover
from gateway.net.transport import UpstreamTarget

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


# -- the pool: failback only after continuous health, late answers change nothing -----------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pair(clock: Clock, failback_after: float = 10.0) -> tuple[UpstreamFailover, UpstreamTarget, UpstreamTarget]:
    primary, backup = UpstreamTarget("p", "10.0.0.1", 1), UpstreamTarget("b", "10.0.0.2", 1, role="backup")
    pool = UpstreamFailover([primary, backup], policy=P, failback_after=failback_after, clock=clock)
    return pool, primary, backup


def serve(pool: UpstreamFailover, target: UpstreamTarget) -> None:
    ticket = pool.acquire(target)
    assert ticket is not None
    pool.report(ticket, ok=True, served=True)


def fail(pool: UpstreamFailover, target: UpstreamTarget, cause: str = "connect timed out") -> None:
    ticket = pool.acquire(target)
    assert ticket is not None
    pool.report(ticket, ok=False, cause=cause)


def fail_over(pool: UpstreamFailover, primary: UpstreamTarget, backup: UpstreamTarget, clock: Clock) -> None:
    for _ in range(P.failures_to_open):
        fail(pool, primary)
    assert pool.breakers["p"].state is BreakerState.OPEN
    serve(pool, backup)
    assert pool.active == "b"
    clock.now += P.cooldown
    for _ in range(P.successes_to_close):  # the probes' trials
        ticket = pool.acquire(primary)
        assert ticket is not None and ticket.trial
        pool.report(ticket, ok=True)
    assert pool.breakers["p"].state is BreakerState.CLOSED


def test_failback_waits_until_the_primary_has_been_healthy_for_failback_after() -> None:
    clock = Clock()
    pool, primary, backup = pair(clock)
    fail_over(pool, primary, backup, clock)
    clock.now += 9.9
    assert pool.candidates()[0] is backup
    clock.now += 0.1
    assert pool.candidates()[0] is primary
    serve(pool, primary)
    assert pool.active == "p" and pool.switches == 2


def test_a_primary_that_fails_again_while_closed_starts_its_failback_clock_over() -> None:
    """The old pool counted failback_after from the breaker's closing: a primary that went dark again 2 s later
    (one failed probe, too few to open the breaker) still got traffic back 8 s after that."""
    clock = Clock()
    pool, primary, backup = pair(clock)
    fail_over(pool, primary, backup, clock)
    clock.now += 2
    fail(pool, primary, "probe: connect timed out")
    assert pool.breakers["p"].state is BreakerState.CLOSED  # one failure: still closed
    clock.now += 8.5  # 10.5 s after closing
    assert pool.candidates()[0] is backup
    ticket = pool.acquire(primary)  # a probe answers again
    assert ticket is not None
    pool.report(ticket, ok=True)
    clock.now += 9.9
    assert pool.candidates()[0] is backup
    clock.now += 0.1
    assert pool.candidates()[0] is primary


def test_a_flapping_primary_never_gets_traffic_back() -> None:
    clock = Clock()
    pool, primary, backup = pair(clock)
    fail_over(pool, primary, backup, clock)
    for _ in range(20):  # up 6 s, down once, for a minute
        for _ in range(6):
            clock.now += 1
            ticket = pool.acquire(primary)
            if ticket is not None:
                pool.report(ticket, ok=True)
            assert pool.candidates()[0] is backup
            serve(pool, backup)
        fail(pool, primary, "probe: connect timed out")
    assert pool.active == "b" and pool.switches == 1


def test_a_late_answer_neither_closes_a_half_open_breaker_nor_switches() -> None:
    """An answer to a request sent before the cut, delivered by TCP retransmission after the link came back:
    the old pool counted it as the half-open trial's success and made the primary active at once."""
    clock = Clock()
    pool, primary, backup = pair(clock)
    before_cut = pool.acquire(primary)
    assert before_cut is not None
    for _ in range(P.failures_to_open):
        fail(pool, primary)
    serve(pool, backup)
    clock.now += P.cooldown
    trial = pool.acquire(primary)
    assert trial is not None and trial.trial
    for _ in range(3):
        pool.report(before_cut, ok=True, served=True)
    assert pool.breakers["p"].state is BreakerState.HALF_OPEN and pool.breakers["p"].trial_in_flight
    assert pool.active == "b" and pool.switches == 1
    assert pool.health["p"].last_success is None
    # and in closed, a late answer does not count as health either
    for _ in range(P.successes_to_close):
        pool.report(trial, ok=True)
        trial = pool.acquire(primary) or trial
    assert pool.breakers["p"].state is BreakerState.CLOSED
    old = pool.acquire(primary)
    assert old is not None
    fail(pool, primary)
    pool.report(old, ok=True, served=True)
    assert pool.breakers["p"].healthy_for(clock.now + 100) == 0 and pool.active == "b"


def test_the_switch_counter_counts_real_switches_only() -> None:
    clock = Clock()
    pool, primary, backup = pair(clock, failback_after=1)
    in_flight = [pool.acquire(primary) for _ in range(4)]
    fail_over(pool, primary, backup, clock)
    for ticket in in_flight:  # late answers between backup answers
        assert ticket is not None
        pool.report(ticket, ok=True, served=True)
        serve(pool, backup)
    clock.now += 1
    serve(pool, primary)
    serve(pool, primary)
    assert pool.switches == 2


def test_a_trip_opens_at_once_and_names_its_cause() -> None:
    clock = Clock()
    pool, primary, _ = pair(clock)
    pool.trip("p", "p stopped answering: the kernel gave up on the connection")
    assert pool.breakers["p"].state is BreakerState.OPEN
    snap = {s["name"]: s for s in pool.snapshot()}["p"]
    assert snap["breaker"] == "open" and "kernel gave up" in str(snap["last_failure_cause"])
    assert pool.candidates() == [t for t in pool.targets if t.name == "b"]
    assert primary not in pool.candidates()


@settings(max_examples=fuzz_examples(300), deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["take", "ok", "fail", "late"]), st.floats(0, 10)), max_size=60))
def test_stale_outcomes_never_move_a_breaker(steps: list[tuple[str, float]]) -> None:
    b = Breaker("p", P)
    now, tickets = 0.0, []
    for op, dt in steps:
        now += dt
        if op == "take":
            ticket = b.ticket(now)
            if ticket is not None:
                tickets.append(ticket)
        elif op in ("ok", "late") and tickets:
            ticket = tickets.pop(0 if op == "late" else -1)
            before = (b.state, b.successes, b.failures, b.healthy_since)
            counted = b.success(now, ticket)
            if b.stale(ticket):
                assert not counted and (b.state, b.successes, b.failures, b.healthy_since) == before
        elif op == "fail":
            b.failure(now, tickets.pop() if tickets else None)
        assert b.healthy_for(now) == 0 or b.state is BreakerState.CLOSED
