"""A connection for one request from the first upstream that gives one, racing the next when a connect hangs.

On a silent drop (packets vanish, no RST) a connect to the dead upstream waits its whole connect timeout before
failing; every request would wait that long before trying the backup. Instead the next upstream in line starts
connecting once the attempts before it have gone `race_after` seconds without a connection (or at once when
they all failed), and the first connection made carries the request. Racing connects is safe for every
transaction class: nothing is sent until a connection is chosen.

An attempt that lost the race is not abandoned: it runs to its own end in the background and reports to the
breaker, so a dead upstream still gathers the failures that open its breaker (and later requests skip it),
while a slow one that connects gives its connection to the keep-alive pool when the request allowed reuse.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.net.breaker import Ticket
from gateway.net.connections import Connection, KeepAlivePool
from gateway.net.pool import UpstreamFailover
from gateway.net.transport import UpstreamTarget, UpstreamUnreachable

#: the default head start of each upstream over the next one in line (seconds)
RACE_AFTER = 1.0

_Attempt = tuple[Ticket, float]  # the ticket, and the loop time the connect started


class NoConnection(UpstreamUnreachable):
    """Every upstream tried refused or failed to connect: nothing was sent."""


class Dialer:
    def __init__(self, pool: UpstreamFailover, connections: KeepAlivePool, *, race_after: float = RACE_AFTER) -> None:
        self.pool = pool
        self.connections = connections
        self.race_after = race_after

    async def connect(
        self, targets: Sequence[UpstreamTarget], *, reuse: bool, deadline: float
    ) -> tuple[Ticket, Connection]:
        """The first connection made, with the ticket to report its use by. Raises NoConnection when every
        target failed (the messages joined), TimeoutError when the loop time `deadline` passed first."""
        waiting = list(targets)
        running: dict[asyncio.Task[Connection], _Attempt] = {}
        errors: list[str] = []

        def next_ticket() -> tuple[UpstreamTarget, Ticket] | None:
            while waiting:
                target = waiting.pop(0)
                if (ticket := self.pool.acquire(target)) is not None:
                    return target, ticket
            return None

        def start(target: UpstreamTarget, ticket: Ticket) -> None:
            task = asyncio.create_task(self.connections.get(target, reuse=reuse), name=f"connect-{target.name}")
            running[task] = (ticket, loop.time())

        def start_next() -> None:
            if (first := next_ticket()) is not None:
                start(*first)

        loop = asyncio.get_running_loop()
        if deadline <= loop.time():
            raise TimeoutError  # before anything is chosen: nothing was sent
        first = next_ticket()
        if first is None:
            raise NoConnection("every upstream's circuit breaker is open")
        if reuse and (idle := self.connections.take_idle(first[0])) is not None:
            return first[1], idle  # kept alive from an earlier request: nothing to race
        start(*first)
        try:
            while running:
                left = deadline - loop.time()
                if left <= 0:
                    raise TimeoutError
                wait = min(left, self.race_after) if waiting else left
                done, _ = await asyncio.wait(running, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    start_next()  # the ones running have had their head start
                    continue
                won = self._outcomes(done, running, reuse, errors)
                if won is not None:
                    for earlier, began in running.values():
                        if loop.time() - began >= self.race_after:  # still connecting after its head start
                            self.pool.doubt(earlier)
                    return won
                if not running:
                    start_next()
            raise NoConnection("; ".join(errors) or "every upstream's circuit breaker is open")
        finally:
            for task, (ticket, _) in running.items():
                self._linger(task, ticket, reuse)

    def _outcomes(
        self,
        done: set[asyncio.Task[Connection]],
        running: dict[asyncio.Task[Connection], _Attempt],
        reuse: bool,
        errors: list[str],
    ) -> tuple[Ticket, Connection] | None:
        """Take the finished attempts out of `running`: the first connection made, failures told to the pool."""
        won: tuple[Ticket, Connection] | None = None
        for task in done:
            ticket, _ = running.pop(task)
            exc = task.exception()
            if exc is None and won is None:
                won = (ticket, task.result())
            elif exc is None:
                self._linger(task, ticket, reuse)  # two at once: the second is simply not needed
            elif isinstance(exc, UpstreamUnreachable):
                self.pool.report(ticket, ok=False, cause=exc.message)
                errors.append(exc.message)
            else:
                self.pool.release(ticket)
                raise exc
        return won

    def _linger(self, task: asyncio.Task[Connection], ticket: Ticket, reuse: bool) -> None:
        self.connections.adopt(self._settle(task, ticket, reuse))

    async def _settle(self, task: asyncio.Task[Connection], ticket: Ticket, reuse: bool) -> None:
        """A connect nobody waits for any more: its outcome still tells the breaker about its upstream."""
        try:
            conn = await task
        except UpstreamUnreachable as exc:
            self.pool.report(ticket, ok=False, cause=exc.message)
            return
        except asyncio.CancelledError:
            task.cancel()
            self.pool.release(ticket)
            raise
        self.pool.report(ticket, ok=True)
        await self.connections.put(conn, keep=reuse)
