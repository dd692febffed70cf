"""The 专网 link and route watch as a part (netlink, only where an interface is configured): gauges, a log line
and an event for each change. What a lost route means for the upstreams is the upstreams part's to decide."""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from gateway.app.events import EventSink
from gateway.health.metrics import Metrics

if TYPE_CHECKING:
    from gateway.health.link import LinkMonitor, LinkState

log = structlog.get_logger("gateway.daemon")


class LinkWatch:
    name = "link"

    def __init__(self, interface: str, hosts: list[str], metrics: Metrics, events: EventSink) -> None:
        self.interface, self.hosts, self.metrics, self.events = interface, hosts, metrics, events
        self.monitor: LinkMonitor | None = None

    @property
    def state(self) -> LinkState | None:
        return self.monitor.state if self.monitor is not None else None

    async def start(self) -> None:
        # pyroute2 only where a link is watched: it is a tenth of the daemon's resident memory
        from gateway.health.link import LinkMonitor

        self.monitor = LinkMonitor(self.interface, self.hosts, self._changed)
        await self.monitor.start()

    async def stop(self) -> None:
        if self.monitor is not None:
            await self.monitor.stop()

    def _changed(self, new: LinkState, old: LinkState | None) -> None:
        self.metrics.link_up.labels(new.interface).set(1 if new.up else 0)
        for address, via in new.routes.items():
            self.metrics.route_ok.labels(address).set(1 if via == new.interface else 0)
        if old is None:
            log.info("link_state", interface=new.interface, exists=new.exists, up=new.up, routes=new.routes)
            return
        if old.up != new.up:
            kind = "link_up" if new.up else "link_down"
            log.warning(kind, interface=new.interface, exists=new.exists)
            self.events.emit(kind, {"interface": new.interface})
        for address, via in new.routes.items():
            if old.routes.get(address) != via:
                kind = "route_restored" if via == new.interface else "route_lost"
                log.warning(kind, upstream=address, via=via, interface=new.interface)
                self.events.emit(kind, {"upstream": address, "via": via})
