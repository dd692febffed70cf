"""The settle clock: a stamp reads back as the seconds since it was taken, within this boot only."""

from __future__ import annotations

import time

from gateway.relay import settleclock


def test_a_stamp_reads_back_as_the_time_since() -> None:
    stamped = settleclock.stamp()
    time.sleep(0.05)
    elapsed = settleclock.seconds_since(stamped)
    assert elapsed is not None and 0.049 <= elapsed < 5  # the stamp keeps milliseconds


def test_a_stamp_of_another_boot_or_none_says_nothing() -> None:
    boot, _, seconds = settleclock.stamp().partition(" ")
    other = ("0" if boot[0] != "0" else "1") + boot[1:]
    assert settleclock.seconds_since(f"{other} {seconds}") is None
    assert settleclock.seconds_since(None) is None
    assert settleclock.seconds_since("") is None
    assert settleclock.seconds_since(f"{boot} soon") is None
    assert settleclock.seconds_since(boot) is None
