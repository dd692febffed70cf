"""When reconciliation runs: once a day after the cutoff (platform time), for the day `lag_days` before;
a missed day (the daemon was down at the cutoff) is caught up on start; an incomplete run is repeated."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import structlog

from gateway.recon import report as reports
from gateway.recon.local import PLATFORM_TZ
from gateway.recon.run import Reconciler

log = structlog.get_logger("gateway.recon")

#: wake at least this often: a clock step (NTP, manual) must not make the schedule sleep past a cutoff
MAX_SLEEP = 600.0


class ReconSchedule:
    def __init__(
        self,
        reconciler: Reconciler,
        directory: Path,
        *,
        cutoff: str = "02:00",
        lag_days: int = 1,
        retry_interval: float = 600.0,
        max_attempts: int = 6,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.reconciler = reconciler
        self.directory = directory
        hour, minute = (int(x) for x in cutoff.split(":"))
        self.cutoff = (hour, minute)
        self.lag_days = lag_days
        self.retry_interval = retry_interval
        self.max_attempts = max_attempts
        self.clock = clock
        self.attempts: Counter[date] = Counter()

    def _cut(self, now: float) -> tuple[datetime, datetime]:
        local = datetime.fromtimestamp(now, PLATFORM_TZ)
        return local, local.replace(hour=self.cutoff[0], minute=self.cutoff[1], second=0, microsecond=0)

    def target(self, now: float) -> date:
        """The latest day whose cutoff has passed at `now`."""
        local, cut = self._cut(now)
        today = local.date() if local >= cut else local.date() - timedelta(days=1)
        return today - timedelta(days=self.lag_days)

    def due(self, now: float) -> date | None:
        day = self.target(now)
        if self.attempts[day] >= self.max_attempts:
            return None
        doc = reports.read(self.directory, day)
        if doc is not None and doc.get("status") != reports.INCOMPLETE:
            return None
        return day

    def until_next(self, now: float) -> float:
        local, cut = self._cut(now)
        if cut <= local:
            cut += timedelta(days=1)
        return max(1.0, (cut - local).total_seconds())

    async def run_forever(self) -> None:
        while True:
            wait = self.until_next(self.clock())
            day = self.due(self.clock())
            if day is not None:
                self.attempts[day] += 1
                try:
                    report = await self.reconciler.run(day)
                except Exception:  # a bug or a full disk must not end the daily schedule
                    log.exception("recon_run_failed", date=day.isoformat(), attempt=self.attempts[day])
                    wait = min(wait, self.retry_interval)
                else:
                    if report.status == reports.INCOMPLETE:
                        wait = min(wait, self.retry_interval)
            await asyncio.sleep(min(wait, MAX_SLEEP))
