"""A gateway's lease on the rows it owns in a database shared by a pair of 前置机 (see pg_outbox's module doc).

The lease lives in outbox_node, stamped in the database's clock and renewed every third of its length. Whether
it still holds is judged by this gateway alone, by its monotonic clock, counted from the moment its last
successful renewal was asked and less a margin: so it stops sending before the other gateway can have seen the
lease lapse, whatever the clocks of the two hosts say.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from gateway.relay.pg_sql import RENEW
from gateway.relay.repository import OutboxUnavailable

log = structlog.get_logger("gateway.relay.outbox")

#: the part of a lease a gateway does not count on: its renewal may have been delayed that long on the way
LEASE_MARGIN = 0.2

#: runs one statement in a transaction of the outbox's pool; OutboxUnavailable when the database does not answer
Run = Callable[[Callable[[Any], Awaitable[Any]]], Awaitable[Any]]


#: between a node's name and the nonce of one of its starts, in an owner name
SEPARATOR = "/"


def node_name(name: str | None) -> str:
    """The node's name: configured (relay.outbox.node), else the host's."""
    return name or socket.gethostname()


def node_id(name: str | None) -> str:
    """This start's owner name: the node's name and a nonce, so that rows a previous run of the same node left
    are orphans once its lease lapsed, not rows of the running one."""
    return f"{node_name(name)}{SEPARATOR}{secrets.token_hex(4)}"


class Lease:
    def __init__(self, node: str | None, seconds: float, run: Run) -> None:
        self.name = node_name(node)
        self.node = node_id(node)
        self.seconds = seconds
        self._run = run
        self._valid_until = 0.0  # loop time until which the lease surely holds
        self._heartbeat: asyncio.Task[None] | None = None

    @property
    def holds(self) -> bool:
        return asyncio.get_running_loop().time() < self._valid_until

    async def start(self) -> None:
        await self.renew()
        self._heartbeat = asyncio.create_task(self._renew_loop(), name="outbox-lease")
        log.info("outbox_lease_held", node=self.node, lease_s=self.seconds)

    async def stop(self) -> None:
        """Stop renewing and give the lease up: what this gateway leaves unfinished is the other one's to settle
        at once, not after the lease."""
        if self._heartbeat is None:
            return
        self._heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._heartbeat
        self._heartbeat = None
        self._valid_until = 0.0
        with contextlib.suppress(OutboxUnavailable):
            await self._run(lambda conn: conn.execute("DELETE FROM outbox_node WHERE node = $1", self.node))

    async def renew(self) -> None:
        asked = asyncio.get_running_loop().time()
        # A renewal that hangs (a stalled server) is a failed one: the next is due a third of the lease later.
        await self._run(lambda conn: conn.execute(RENEW, self.node, self.seconds, timeout=self.seconds / 3))
        self._valid_until = asked + self.seconds * (1 - LEASE_MARGIN)

    async def _renew_loop(self) -> None:
        failing = False
        while True:
            await asyncio.sleep(self.seconds / 3)
            try:
                await self.renew()
            except OutboxUnavailable as exc:
                if not failing:  # once per episode: the outbox's own warning names each failed call
                    log.error(  # noqa: TRY400 - the reason is the message; a traceback adds nothing
                        "outbox_lease_not_renewed", node=self.node, error=exc.message
                    )
                failing = True
                continue
            if failing:
                log.info("outbox_lease_renewed", node=self.node)
            failing = False
