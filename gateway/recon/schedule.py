"""When reconciliation runs: once a day after the cutoff (platform time), for the day `lag_days` before;
a missed day (the daemon was down at the cutoff) is caught up on start; an incomplete run is repeated.

One rule says which day is closed (`closed_day`): the schedule's target, the CLI's default day, and whether a
run asked for by hand is final. A day run by hand before it closed is provisional: its report says so, and the
scheduled run replaces it once the day has closed (before, it counted as done and later settlements of that day
were never reconciled)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import date, datetime, timedelta
from pathlib import Path

import structlog

from gateway.recon import report as reports
from gateway.recon.local import PLATFORM_TZ
from gateway.recon.run import Reconciler

log = structlog.get_logger("gateway.recon")

#: wake at least this often: a clock step (NTP, manual) must not make the schedule sleep past a cutoff
MAX_SLEEP = 600.0


def closed_day(now: float, cutoff: str = "02:00", lag_days: int = 1) -> date:
    """The latest day (platform time) that can be reconciled for good at `now`: its cutoff has passed, and
    `lag_days` more days for the platform's books to settle."""
    hour, minute = (int(x) for x in cutoff.split(":"))
    local = datetime.fromtimestamp(now, PLATFORM_TZ)
    cut = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    today = local.date() if local >= cut else local.date() - timedelta(days=1)
    return today - timedelta(days=lag_days)


class NotYet(ValueError):
    """A day that cannot be reconciled at all yet (it has not begun)."""


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
        alone: Callable[[str], AbstractAsyncContextManager[bool]] | None = None,
    ) -> None:
        self.reconciler = reconciler
        #: whether this gateway runs the day now (one gateway of a pair at a time: Outbox.alone)
        self.alone = alone
        self.directory = directory
        self.cutoff_text = cutoff
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
        return closed_day(now, self.cutoff_text, self.lag_days)

    def due(self, now: float) -> date | None:
        day = self.target(now)
        if self.attempts[day] >= self.max_attempts:
            return None
        doc = reports.read(self.directory, day)
        if doc is not None and doc.get("status") != reports.INCOMPLETE and not doc.get("provisional"):
            return None
        return day

    async def run_now(self, day: date) -> reports.Report:
        """A run asked for by hand: final if the day has closed, provisional (replaced by the schedule) if not."""
        now = self.clock()
        if day > datetime.fromtimestamp(now, PLATFORM_TZ).date():
            raise NotYet(f"{day.isoformat()} has not begun (platform time): nothing to reconcile")
        closed = self.target(now)
        if day <= closed:
            return await self.reconciler.run(day)
        log.warning("recon_provisional", date=day.isoformat(), closed_through=closed.isoformat())
        return await self.reconciler.run(day, provisional=True)

    def until_next(self, now: float) -> float:
        local, cut = self._cut(now)
        if cut <= local:
            cut += timedelta(days=1)
        return max(1.0, (cut - local).total_seconds())

    async def run_alone(self, day: date) -> reports.Report | None:
        """The day's run, unless the other gateway of a pair is running one (None: this one's turn comes later)."""
        if self.alone is None:
            self.attempts[day] += 1
            return await self.reconciler.run(day)
        async with self.alone("recon") as mine:
            if not mine:
                log.info("recon_left_to_the_other_gateway", date=day.isoformat())
                return None
            self.attempts[day] += 1
            return await self.reconciler.run(day)

    async def run_forever(self) -> None:
        while True:
            wait = self.until_next(self.clock())
            day = self.due(self.clock())
            if day is not None:
                try:
                    report = await self.run_alone(day)
                except Exception:  # a bug or a full disk must not end the daily schedule
                    log.exception("recon_run_failed", date=day.isoformat(), attempt=self.attempts[day])
                    wait = min(wait, self.retry_interval)
                else:
                    if report is None or report.status == reports.INCOMPLETE:
                        wait = min(wait, self.retry_interval)
            await asyncio.sleep(min(wait, MAX_SLEEP))
