"""What the simulated platform's handlers raise, and the clock it speaks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

#: the platform speaks Beijing time whatever zone the machine running the simulator is in
PLATFORM_TZ = timezone(timedelta(hours=8))


class PlatformError(Exception):
    """A business refusal: becomes infcode -1 with the Chinese err_msg the platform would send."""

    def __init__(self, err_msg: str, infcode: int = -1) -> None:
        super().__init__(err_msg)
        self.err_msg = err_msg
        self.infcode = infcode


def platform_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, PLATFORM_TZ).strftime("%Y-%m-%d %H:%M:%S")


def platform_date(ts: float) -> str:
    return datetime.fromtimestamp(ts, PLATFORM_TZ).strftime("%Y-%m-%d")
