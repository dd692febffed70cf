"""The settle clock: a stamp reads back as the seconds since it was taken, within this boot only."""

from __future__ import annotations

import time

import pytest

from gateway.relay import settleclock


def test_a_stamp_reads_back_as_the_time_since(monkeypatch: pytest.MonkeyPatch) -> None:
    boot_clock = iter([1000.0004, 1012.5])  # the boot clock as stamp() and then seconds_since() read it

    def clock_gettime(clock: int) -> float:
        assert clock == time.CLOCK_BOOTTIME
        return next(boot_clock)

    monkeypatch.setattr(settleclock.time, "clock_gettime", clock_gettime)
    stamped = settleclock.stamp()
    assert stamped.endswith(" 1000.000")  # the stamp keeps milliseconds
    assert settleclock.seconds_since(stamped) == pytest.approx(12.5)


def test_a_stamp_is_the_boot_clock() -> None:
    before = time.clock_gettime(time.CLOCK_BOOTTIME)
    stamped = settleclock.stamp()
    after = time.clock_gettime(time.CLOCK_BOOTTIME)
    boot, _, seconds = stamped.partition(" ")
    assert boot == settleclock.boot_id()
    assert round(before, 3) <= float(seconds) <= round(after, 3)
    elapsed = settleclock.seconds_since(stamped)
    assert elapsed is not None and -0.0005 <= elapsed <= time.clock_gettime(time.CLOCK_BOOTTIME) - before + 0.0005


def test_a_stamp_of_another_boot_or_none_says_nothing() -> None:
    boot, _, seconds = settleclock.stamp().partition(" ")
    other = ("0" if boot[0] != "0" else "1") + boot[1:]
    assert settleclock.seconds_since(f"{other} {seconds}") is None
    assert settleclock.seconds_since(None) is None
    assert settleclock.seconds_since("") is None
    assert settleclock.seconds_since(f"{boot} soon") is None
    assert settleclock.seconds_since(boot) is None
