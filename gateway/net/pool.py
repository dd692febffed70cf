"""Which upstream gets the next request: primary first, backup when the primary is broken, and back again.

Failover is fast because a connection failure moves the request on at once (nothing was sent), a connect that
hangs is raced by the next upstream (net/dialer.py), and a kept connection the kernel gave up on opens the
breaker outright. Failback is deliberate: the primary must have answered every probe and request for
`failback_after` seconds (any failure starts the clock again), so a flapping link does not bounce traffic; and
only outcomes of uses that began after the last failure count (an old answer arriving late changes nothing).

Every breaker move and every switch is one structured log line (upstream, from, to, cause), and the snapshot
carries what ops need to see why: role, active, breaker, last success and last failure with its cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from gateway.net.breaker import Breaker, BreakerPolicy, BreakerState, Ticket
from gateway.net.transport import Transport, UpstreamTarget, UpstreamUnreachable

log = structlog.get_logger("gateway.pool")


@dataclass
class UpstreamHealth:
    """What was last seen of one upstream, in wall-clock seconds (for people, never for decisions)."""

    last_success: float | None = None
    last_failure: float | None = None
    last_failure_cause: str = ""
    handshakes_full: int = 0
    handshakes_resumed: int = 0


class UpstreamFailover:
    def __init__(
        self,
        targets: list[UpstreamTarget],
        *,
        policy: BreakerPolicy | None = None,
        failback_after: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        if not targets:
            raise ValueError("an upstream pool needs at least one upstream")
        self.targets = sorted(targets, key=lambda t: t.role != "primary")
        self.breakers = {t.name: Breaker(t.name, policy) for t in self.targets}
        for breaker in self.breakers.values():
            breaker.healthy_since = clock()  # healthy as far as we know, from now
        self.health = {t.name: UpstreamHealth() for t in self.targets}
        self.failback_after = failback_after
        self.clock = clock
        self.wall = wall
        self.on_change = on_change
        self.active = self.targets[0].name
        self.switches = 0

    def _primary(self, target: UpstreamTarget) -> bool:
        return target.role == "primary"

    def candidates(self) -> list[UpstreamTarget]:
        """Upstreams to try for the next request, in order; empty when every breaker refuses."""
        now = self.clock()
        preferred = [t for t in self.targets if self._primary(t)]
        others = [t for t in self.targets if not self._primary(t)]
        # Stay on a backup until the primary has been healthy long enough.
        if self.active not in {t.name for t in preferred}:
            settled = [t for t in preferred if self.breakers[t.name].healthy_for(now) >= self.failback_after]
            unsettled = [t for t in preferred if t not in settled]
            order = settled + others + unsettled
        else:
            order = preferred + others
        return [t for t in order if self.breakers[t.name].available(now)]

    def acquire(self, target: UpstreamTarget) -> Ticket | None:
        """Right before a use: a ticket to report its outcome with (claims the half-open trial where there is one)."""
        breaker = self.breakers[target.name]
        before = breaker.state
        ticket = breaker.ticket(self.clock())
        self._moved(target.name, before, "cool-down over: one trial")
        return ticket

    def release(self, ticket: Ticket) -> None:
        """A use that never started (its connection was not needed after all)."""
        self.breakers[ticket.upstream].release(ticket)

    def report(self, ticket: Ticket, ok: bool, *, cause: str = "", served: bool = False) -> None:
        """A connection-level outcome (could we reach it, for TLCP handshake, and exchange on it). `served`: a
        request was answered over it, which makes it the active upstream when that is a real switch."""
        name = ticket.upstream
        breaker = self.breakers[name]
        before = breaker.state
        now = self.clock()
        if ok:
            if not breaker.success(now, ticket):
                log.info("late_success_ignored", upstream=name, breaker=breaker.state.value)
                return
            self.health[name].last_success = self.wall()
            self._moved(name, before, "trial succeeded")
            if served:
                self._use(name)
            return
        if breaker.failure(now, ticket):
            self._failed(name, cause)
        self._moved(name, before, cause)

    def doubt(self, ticket: Ticket) -> None:
        """This use has not connected within the race head start: the upstream is not healthy for failback."""
        self.breakers[ticket.upstream].doubt()

    def trip(self, name: str, cause: str) -> None:
        """Open a breaker at once: the route to it vanished, or the kernel gave up on a connection to it."""
        breaker = self.breakers[name]
        before = breaker.state
        breaker.trip(self.clock())
        self._failed(name, cause)
        self._moved(name, before, cause)

    def handshake(self, name: str, resumed: bool) -> None:
        health = self.health.get(name)
        if health is None:
            return
        if resumed:
            health.handshakes_resumed += 1
        else:
            health.handshakes_full += 1

    def _failed(self, name: str, cause: str) -> None:
        health = self.health[name]
        health.last_failure, health.last_failure_cause = self.wall(), cause

    def _moved(self, name: str, before: BreakerState, cause: str) -> None:
        after = self.breakers[name].state
        if after is not before:
            log.warning("breaker", upstream=name, cause=cause, **{"from": before.value, "to": after.value})

    def _use(self, name: str) -> None:
        if name == self.active:
            return
        old, self.active = self.active, name
        self.switches += 1
        target = next(t for t in self.targets if t.name == name)
        if self._primary(target) and self.breakers[name].healthy_for(self.clock()) >= self.failback_after:
            cause = f"failback: {name} healthy for {self.failback_after:g} s"
        else:
            cause = f"{old}: {self.health[old].last_failure_cause or 'not available'}"
        log.warning("upstream_switched", cause=cause, **{"from": old, "to": name})
        if self.on_change is not None:
            self.on_change(old, name)

    # -- probes ---------------------------------------------------------------------------------------------

    async def _probe(self, transport: Transport, target: UpstreamTarget) -> None:
        ticket = self.acquire(target)
        if ticket is None:
            return
        try:
            _, writer = await transport.open(target)
        except UpstreamUnreachable as exc:
            self.report(ticket, ok=False, cause=f"probe: {exc.message}")
            return
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
        self.report(ticket, ok=True)

    async def probe_once(self, transport: Transport) -> None:
        """Connect to every upstream whose breaker lets us (closed, or due a trial), all at once (a hung connect
        to one must not delay the others' probes); feed each result back."""
        await asyncio.gather(*(self._probe(transport, t) for t in self.targets))

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
                "last_success": self.health[t.name].last_success,
                "last_failure": self.health[t.name].last_failure,
                "last_failure_cause": self.health[t.name].last_failure_cause,
                "tlcp_handshakes": {
                    "full": self.health[t.name].handshakes_full,
                    "resumed": self.health[t.name].handshakes_resumed,
                },
            }
            for t in self.targets
        ]
