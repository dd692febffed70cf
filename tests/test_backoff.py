"""The one backoff helper (gateway/backoff.py) that every retry loop waits by."""

from __future__ import annotations

import pytest

from gateway.backoff import backoff


def test_doubles_up_to_the_ceiling_within_the_jitter_band() -> None:
    low = [backoff(n, first=0.2, ceiling=2.0, rng=lambda: 0.0) for n in range(1, 8)]
    high = [backoff(n, first=0.2, ceiling=2.0, rng=lambda: 1.0) for n in range(1, 8)]
    assert high == pytest.approx([0.2, 0.4, 0.8, 1.6, 2.0, 2.0, 2.0])
    assert low == pytest.approx([h / 2 for h in high])  # never less than half: a retry is never immediate


def test_jitter_spreads_callers_that_failed_together() -> None:
    pauses = {backoff(3, first=1.0, ceiling=30.0) for _ in range(200)}
    assert len(pauses) > 100 and min(pauses) >= 2.0 and max(pauses) <= 4.0


def test_a_long_outage_does_not_overflow() -> None:
    assert backoff(10_000, first=0.5, ceiling=5.0, rng=lambda: 1.0) == 5.0
    with pytest.raises(ValueError, match="from 1"):
        backoff(0, first=0.5, ceiling=5.0)


def test_every_retry_loop_uses_it() -> None:
    """The four loops that had a formula of their own: none is left."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "gateway"
    for module in ("relay/timing.py", "relay/storing.py", "health/mqtt.py"):
        text = (root / module).read_text(encoding="utf-8")
        assert "backoff(" in text and "random" not in text and "* 2" not in text, module


def test_the_relay_plans_a_retry_against_the_longest_pause_it_can_draw() -> None:
    """DurableRelay plans another attempt only when the longest pause still leaves time before the HIS's deadline;
    it compared with a random draw of its own, so the pause actually taken could be longer than the one checked."""
    from gateway.relay.timing import RelayTiming

    timing = RelayTiming(backoff=0.2, backoff_max=2.0)
    for attempt in range(1, 8):
        longest = timing.longest_pause(attempt)
        assert longest == pytest.approx(min(2.0, 0.2 * 2 ** (attempt - 1)))
        assert all(timing.pause(attempt) <= longest for _ in range(100))
