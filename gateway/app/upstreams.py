"""The upstreams as a part: the transport to each (TLCP with the identity, or plain TCP in development), the pool
that fails over between them with its breakers and probes, and the kept-alive connections. It owns the reactions
that concern the upstreams: a lost route to one trips its breaker at once, and a certificate rotation reaches new
TLCP connections.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from gateway.app.assembly import tlcp_configs, upstream_targets
from gateway.app.events import Event, EventSink
from gateway.app.parts import Deadline, TaskPart
from gateway.config import Config
from gateway.identity import LoadedIdentity
from gateway.net.breaker import BreakerPolicy
from gateway.net.connections import KeepAlivePool
from gateway.net.pool import UpstreamFailover
from gateway.net.tlcp_transport import TlcpTransport
from gateway.net.transport import Transport

log = structlog.get_logger("gateway.daemon")


class Upstreams:
    name = "upstreams"

    def __init__(self, cfg: Config, transport: Transport, events: EventSink, deadline: Deadline) -> None:
        self.cfg, self.transport, self.events = cfg, transport, events
        f = cfg.failover
        self.pool = UpstreamFailover(
            upstream_targets(cfg),
            policy=BreakerPolicy(f.failures_to_open, f.cooldown, f.cooldown_max, f.successes_to_close),
            failback_after=f.failback_after,
            on_change=lambda old, new: events.emit("upstream_switched", {"was": old, "to": new}),
        )
        self.connections = KeepAlivePool(transport)
        self._probes = TaskPart("probes", lambda: self.pool.probe_loop(transport, f.probe_interval), deadline)
        self._unsubscribe = events.subscribe(self._route_lost)

    async def start(self) -> None:
        await self._probes.start()

    async def stop(self) -> None:
        self._unsubscribe()
        await self.connections.close()
        await self._probes.stop()

    def _route_lost(self, event: Event) -> None:
        if event.kind != "route_lost":
            return
        # No route: fail over now rather than after the next requests time out.
        for u in self.cfg.upstreams:
            if u.host == event.detail["upstream"]:
                via = event.detail.get("via")
                self.pool.trip(u.name, f"route to {u.host} lost (via {via or 'nothing'})")

    @property
    def tlcp(self) -> TlcpTransport | None:
        routes = getattr(self.transport, "routes", {})
        return next((t for t in routes.values() if isinstance(t, TlcpTransport)), None)

    def prepare_identity(self, ident: LoadedIdentity) -> Callable[[], None]:
        """The TLCP settings for a rotated identity, built now (raising on what `certs check` refuses), and what
        switches new connections to them."""
        tlcp = self.tlcp
        if tlcp is None:
            return lambda: None
        configs = tlcp_configs(self.cfg, ident)  # the upstreams' TLCP settings need a restart: cfg is current

        def switch() -> None:
            tlcp.configs = configs  # one assignment: a new connection sees the old set or the new one
            log.info("identity_reloaded", upstreams=sorted(configs))

        return switch

    def snapshot(self) -> list[dict[str, object]]:
        by_name = {s["name"]: s for s in self.pool.snapshot()}
        return [by_name[u.name] for u in self.cfg.upstreams]
