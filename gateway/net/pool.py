"""Which upstream gets the next request: primary first, backup when the primary is broken, and back again.

Failover is fast because a connection failure moves the request on at once (nothing was sent) and opens the
primary's breaker after a few failures. Failback is deliberate: the primary must have been healthy (breaker
closed, fed by probes) for `failback_after` seconds, so a flapping link does not bounce traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from gateway.net.breaker import Breaker, BreakerPolicy, BreakerState
from gateway.net.transport import Transport, UpstreamTarget, UpstreamUnreachable

log = structlog.get_logger("gateway.pool")


class UpstreamPool:
    def __init__(
        self,
        targets: list[UpstreamTarget],
        *,
        policy: BreakerPolicy | None = None,
        failback_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        if not targets:
            raise ValueError("an upstream pool needs at least one upstream")
        self.targets = sorted(targets, key=lambda t: t.role != "primary")
        self.breakers = {t.name: Breaker(t.name, policy) for t in self.targets}
        for breaker in self.breakers.values():
            breaker.closed_since = clock()  # healthy as far as we know, from now
        self.failback_after = failback_after
        self.clock = clock
        self.on_change = on_change
        self.active = self.targets[0].name
        self._probe_task: asyncio.Task[None] | None = None

    def candidates(self) -> list[UpstreamTarget]:
        """Upstreams to try for the next request, in order; empty when every breaker refuses."""
        now = self.clock()
        preferred = [t for t in self.targets if t.role == "primary"]
        others = [t for t in self.targets if t.role != "primary"]
        # Stay on a backup until the primary has been healthy long enough.
        if self.active not in {t.name for t in preferred}:
            settled = [t for t in preferred if self.breakers[t.name].healthy_for(now) >= self.failback_after]
            unsettled = [t for t in preferred if t not in settled]
            order = settled + others + unsettled
        else:
            order = preferred + others
        return [t for t in order if self.breakers[t.name].available(now)]

    def acquire(self, target: UpstreamTarget) -> bool:
        """Right before a connection attempt: claims the half-open trial slot where there is one."""
        return self.breakers[target.name].allow(self.clock())

    def report(self, target: UpstreamTarget, ok: bool) -> None:
        """A connection-level outcome: could we reach it (and, for TLCP, handshake)?"""
        now = self.clock()
        breaker = self.breakers[target.name]
        before = breaker.state
        if ok:
            breaker.success(now)
            self._use(target.name)
        else:
            breaker.failure(now)
        if breaker.state is not before:
            log.warning("breaker", upstream=target.name, state=breaker.state.value, was=before.value)

    def trip(self, name: str) -> None:
        """Open a breaker at once (the link monitor saw the route to it vanish)."""
        breaker = self.breakers[name]
        now = self.clock()
        while breaker.state is BreakerState.CLOSED:
            breaker.failure(now)

    def _use(self, name: str) -> None:
        if name != self.active:
            old, self.active = self.active, name
            log.warning("upstream_switched", to=name, was=old)
            if self.on_change is not None:
                self.on_change(old, name)

    # -- probes ---------------------------------------------------------------------------------------------

    async def probe_once(self, transport: Transport) -> None:
        """Connect to every upstream whose breaker lets us (closed, or due a trial); feed the result back."""
        for target in self.targets:
            breaker = self.breakers[target.name]
            if not breaker.allow(self.clock()):
                continue
            try:
                _, writer = await transport.open(target)
            except UpstreamUnreachable:
                breaker.failure(self.clock())
                continue
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            breaker.success(self.clock())

    async def probe_loop(self, transport: Transport, interval: float) -> None:
        while True:
            await self.probe_once(transport)
            await asyncio.sleep(interval)

    def snapshot(self) -> list[dict[str, object]]:
        now = self.clock()
        return [
            {
                "name": t.name,
                "role": t.role,
                "active": t.name == self.active,
                "breaker": self.breakers[t.name].state.value,
                "healthy_for_s": round(self.breakers[t.name].healthy_for(now), 1),
            }
            for t in self.targets
        ]
