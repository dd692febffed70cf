"""The relay as a part: the forwarder over the upstreams, sign-in on the HIS's behalf where configured, and the
durable relay over the outbox. What a previous run left unfinished is settled when it starts, before any new
request is taken; on stop it finishes what is in flight within the deadline."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import Gauge

from gateway.app.assembly import session_operator
from gateway.app.parts import Common
from gateway.app.upstreams import Upstreams
from gateway.config import Config
from gateway.health.metrics import Metrics
from gateway.platform.msgids import MsgidMaker
from gateway.platform.signing import ProfileCodec
from gateway.relay.durable import DurableRelay, Sender
from gateway.relay.forwarder import Forwarder
from gateway.relay.outbox import SqliteOutbox
from gateway.relay.pg_outbox import PgOutbox
from gateway.relay.repository import OutboxUnavailable
from gateway.relay.rules import rule_for
from gateway.relay.session import SignInSession

log = structlog.get_logger("gateway.daemon")


class RelayPart:
    name = "relay"

    def __init__(
        self,
        cfg: Config,
        common: Common,
        *,
        codecs: dict[str, ProfileCodec],
        upstreams: Upstreams,
        outbox: SqliteOutbox | PgOutbox,
        msgids: MsgidMaker,
    ) -> None:
        self.events, self.deadline, metrics = common.events, common.deadline, common.metrics
        # One platform behind every upstream: the primary's profile says how its transactions are classed.
        primary = next(u for u in cfg.upstreams if u.role == "primary")
        catalogue = codecs[primary.name].profile.catalogue
        # Keep-alive reuse only where a resend is harmless: a stale connection can swallow a request.
        forwarder = Forwarder(
            upstreams.pool,
            upstreams.connections,
            lambda e: rule_for(catalogue.classify(e.infno)).resend,
            codecs=codecs,
            on_skew=skew_gauges(metrics),
            race_after=cfg.failover.race_after,
        )
        sender: Sender = forwarder
        self.session: SignInSession | None = None
        if cfg.session is not None and cfg.session.sign_in:
            self.session = SignInSession(
                forwarder,
                session_operator(cfg.session),
                max_age=cfg.session.max_age,
                on_event=self._event,
                msgids=msgids,
            )
            sender = self.session
        self.relay = DurableRelay(
            outbox,
            sender,
            catalogue,
            reversal_settle=cfg.relay.reversal_settle,
            on_event=self._event,
            msgids=msgids,
            shared_poll=0.05 if cfg.relay.outbox.backend == "postgresql" else None,
        )
        #: on a shared database, how often to look for rows of a gateway whose lease lapsed
        self.takeover_every = cfg.relay.outbox.lease / 4 if cfg.relay.outbox.backend == "postgresql" else None
        self._takeover: asyncio.Task[None] | None = None

    def _event(self, kind: str, detail: dict[str, Any]) -> None:
        self.events.emit(kind, detail, source="relay")

    async def start(self) -> None:
        await self.relay.recover()
        if self.takeover_every is not None:
            self._takeover = asyncio.create_task(self._take_over(self.takeover_every), name="outbox-takeover")

    async def _take_over(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.relay.takeover()
            except OutboxUnavailable as exc:  # the outbox logs and counts it; the next round tries again
                log.warning("outbox_takeover_deferred", error=exc.message)

    async def stop(self) -> None:
        if self._takeover is not None:
            self._takeover.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._takeover
        await self.relay.stop(grace=self.deadline.left(0.5))


def skew_gauges(metrics: Metrics) -> Callable[[str, float], None]:
    """Sets ybgate_platform_clock_skew_seconds{upstream} on every answer, through one label child per upstream
    (labels() checks and locks on every call)."""
    children: dict[str, Gauge] = {}

    def on_skew(upstream: str, skew: float) -> None:
        child = children.get(upstream)
        if child is None:
            child = children[upstream] = metrics.clock_skew.labels(upstream)
        child.set(round(skew, 3))

    return on_skew
