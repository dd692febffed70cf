"""How long ago a row went in doubt: across restarts of the gateway, and deaf to steps of the wall clock.

The settle rule (relay.reversal_settle) asks whether the original request has had time to reach the platform.
The wall clock cannot answer that: stepped forward (NTP after a long drift, an operator's `date`), it would cut
the wait short, and a settlement still on its way would be reported never booked while the HIS is told to retry;
stepped back, it would hold resolution up for as long. CLOCK_BOOTTIME never steps, keeps counting through a
suspend, and is one clock for every process of a boot, so a stamp written before a kill -9 still reads right
after the restart. A stamp from an earlier boot says nothing about now: the caller times such a row from its
own start instead, which is later than the truth and never earlier.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@functools.cache
def boot_id() -> str:
    return _BOOT_ID.read_text().strip()


def stamp() -> str:
    """The moment, as stored with the row: "<boot id> <seconds since boot>"."""
    return f"{boot_id()} {time.clock_gettime(time.CLOCK_BOOTTIME):.3f}"


def seconds_since(stamped: str | None) -> float | None:
    """Seconds since `stamped`; None when it is missing, unreadable or from another boot."""
    if not stamped:
        return None
    boot, _, seconds = stamped.partition(" ")
    if boot != boot_id():
        return None
    try:
        then = float(seconds)
    except ValueError:
        return None
    return time.clock_gettime(time.CLOCK_BOOTTIME) - then
