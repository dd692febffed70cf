"""The simulator's settable clock: tests and ops move the platform's day without touching the machine's."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from gateway.sim.errors import PLATFORM_TZ


class SettableClock:
    """Real time plus an offset; setting it moves the offset, so it keeps running from the time set."""

    def __init__(self, source: Callable[[], float] = time.time) -> None:
        self._source = source
        self.offset = 0.0

    def __call__(self) -> float:
        return self._source() + self.offset

    def set(self, spec: dict[str, Any]) -> float:
        """{"now": epoch seconds or "yyyy-MM-dd HH:mm:ss" (platform time)} or {"advance": seconds}."""
        if set(spec) == {"advance"} and isinstance(spec["advance"], int | float):
            self.offset += float(spec["advance"])
        elif set(spec) == {"now"} and isinstance(spec["now"], int | float):
            self.offset = float(spec["now"]) - self._source()
        elif set(spec) == {"now"} and isinstance(spec["now"], str):
            try:
                at = datetime.strptime(spec["now"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=PLATFORM_TZ)
            except ValueError:
                raise ValueError(f"now must be yyyy-MM-dd HH:mm:ss, got {spec['now']!r}") from None
            self.offset = at.timestamp() - self._source()
        else:
            raise ValueError('body must be {"now": epoch | "yyyy-MM-dd HH:mm:ss"} or {"advance": seconds}')
        return self()

    def reset(self) -> float:
        self.offset = 0.0
        return self()
