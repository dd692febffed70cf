"""The simulator's settable clock: tests and ops move the platform's day without touching the machine's."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from gateway.sim.errors import PLATFORM_TZ


class SettableClock:
    """Real time plus an offset; setting it moves the offset, so it keeps running from the time set."""

    def __init__(self, source: Callable[[], float] = time.time) -> None:
        self._source = source
        self.offset = 0.0
        self._pinned: float | None = None

    def __call__(self) -> float:
        return self._source() + self.offset if self._pinned is None else self._pinned

    @contextlib.contextmanager
    def pinned(self, at: float) -> Iterator[float]:
        """Stand still at `at` while one message is processed: its every reading of the time is the one the
        journal keeps, so replaying it gives the same booked_at, sign-in time and file numbers."""
        self._pinned = at
        try:
            yield at
        finally:
            self._pinned = None

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
