"""Periodic health checks: outbox depth and in-doubt ages, certificate expiry.

The figures are refreshed on an interval and kept here; /metrics computes ages at scrape time from them,
the status document and the MQTT health message show them, and expiry warnings go out as events once per
threshold crossed (see certwatch).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from gateway.errors import GatewayError
from gateway.health.certwatch import CertFigure, ExpiryWatch
from gateway.health.metrics import Metrics, OutboxFigures

log = structlog.get_logger("gateway.health")


class InDoubt(Protocol):
    @property
    def msgid(self) -> str: ...
    @property
    def infno(self) -> str: ...
    @property
    def created(self) -> float: ...
    @property
    def outcome(self) -> str | None: ...


class Summary(OutboxFigures, Protocol):
    @property
    def in_doubt(self) -> tuple[InDoubt, ...]: ...


class HealthChecks:
    def __init__(
        self,
        metrics: Metrics,
        outbox_summary: Callable[[], Awaitable[Summary]],
        cert_figures: Callable[[], list[CertFigure]] | None,
        event: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.metrics = metrics
        self.outbox_summary = outbox_summary
        self.cert_figures = cert_figures
        self.event = event
        self.summary: Summary | None = None
        self.certs: list[dict[str, Any]] = []
        self.expiry = ExpiryWatch()
        metrics.add_outbox(lambda: self.summary)

    async def refresh_outbox(self) -> None:
        try:
            self.summary = await self.outbox_summary()
        except GatewayError as exc:
            log.warning("outbox_summary_failed", error=exc.message)

    def check_certs(self, now: dt.datetime | None = None) -> None:
        if self.cert_figures is None:
            return
        now = now or dt.datetime.now(dt.UTC)
        try:
            figures = self.cert_figures()
        except (OSError, ValueError) as exc:
            # A missing or garbled certificate file is for ops to hear about; the running tunnel keeps the
            # certificates it loaded.
            log.warning("cert_check_failed", error=str(exc))
            self.event("cert_check_failed", {"error": str(exc)})
            return
        self.metrics.cert_days_left.clear()  # a rotated certificate leaves no stale series behind
        for fig in figures:
            self.metrics.cert_days_left.labels(fig.label, fig.subject).set(round(fig.days_left(now), 3))
        self.certs = [
            {
                "cert": f.label,
                "subject": f.subject,
                "not_after": f"{f.not_after:%Y-%m-%d %H:%M}",
                "days_left": round(f.days_left(now), 1),
            }
            for f in figures
        ]
        for warning in self.expiry.check(figures, now):
            self.metrics.cert_warnings.labels(str(warning.threshold)).inc()
            log.warning(
                "cert_expiring",
                cert=warning.label,
                subject=warning.subject,
                days_left=round(warning.days_left, 2),
                message=warning.message,
            )
            self.event(
                "cert_expiring",
                {
                    "cert": warning.label,
                    "subject": warning.subject,
                    "not_after": f"{warning.not_after:%Y-%m-%dT%H:%M:%SZ}",
                    "days_left": round(warning.days_left, 2),
                    "threshold_days": warning.threshold,
                    "message": warning.message,
                },
            )

    async def run(self, interval: float, cert_interval: float) -> None:
        """Outbox figures every `interval`; certificate files every `cert_interval`, starting now."""
        next_cert = 0.0
        while True:
            if time.monotonic() >= next_cert:
                self.check_certs()
                next_cert = time.monotonic() + cert_interval
            slept_from = time.monotonic()
            await asyncio.sleep(interval)
            # A timer that fires late means the loop was busy or blocked: the same stall that, past
            # WatchdogSec, gets the daemon killed by systemd. Reported so it is seen before that happens.
            self.metrics.loop_lag.set(round(max(0.0, time.monotonic() - slept_from - interval), 4))
            await self.refresh_outbox()

    def status(self) -> dict[str, Any]:
        """The outbox and certificate parts of the status document."""
        s = self.summary
        now = time.time()
        outbox = None
        if s is not None:
            outbox = {
                "counts": s.counts,
                "oldest_unfinished_age_s": None if s.oldest_unfinished is None else round(now - s.oldest_unfinished, 1),
                "oldest_in_doubt_age_s": None if s.oldest_in_doubt is None else round(now - s.oldest_in_doubt, 1),
                "in_doubt": [
                    {"msgid": i.msgid, "infno": i.infno, "age_s": round(now - i.created, 1), "outcome": i.outcome}
                    for i in s.in_doubt
                ],
            }
        return {"outbox": outbox, "certs": self.certs}
