"""A gateway's lease on the rows it owns in a database shared by a pair of 前置机 (see pg_outbox's module doc).

The lease lives in outbox_node, stamped in the database's clock and renewed every third of its length. Whether
it still holds is judged by this gateway alone, by its monotonic clock, counted from the moment its last
successful renewal was asked and less a margin: so it stops sending before the other gateway can have seen the
lease lapse, whatever the clocks of the two hosts say.

With the lease goes a slot: the slice of the msgid sequence (platform/msgids.py) this gateway mints its own
msgids in (冲正, check queries, sign-in, reconciliation), one no other live gateway holds, so that the two
gateways of a pair never mint the same msgid in the same second (they did: one sent a 冲正 and the other a check
query under one msgid). Slots are taken under a lock in the database; a gateway whose lease lapsed and whose slot
another took meanwhile moves to a free one when it renews.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from gateway.relay.pg_sql import RENEW, TAKEN_SLOTS
from gateway.relay.repository import OutboxUnavailable

log = structlog.get_logger("gateway.relay.outbox")

#: the part of a lease a gateway does not count on: its renewal may have been delayed that long on the way
LEASE_MARGIN = 0.2
#: msgid slices: the two gateways of a pair, and the leases of restarted ones that have not lapsed yet
SLOTS = 4
#: the advisory lock under which a gateway looks for a free slot and takes it
SLOT_LOCK = 0x79626773  # "ybgs"

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
        #: the msgid slice held (None before the first renewal); on_slot hears of a move to another
        self.slot: int | None = None
        self.on_slot: Callable[[int], None] | None = None
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
        slot = await self._run(self._renewal)
        self._valid_until = asked + self.seconds * (1 - LEASE_MARGIN)
        if slot != self.slot:
            if self.slot is not None:
                log.warning("outbox_msgid_slice_moved", node=self.node, slot=slot, was=self.slot)
            self.slot = slot
            if self.on_slot is not None:
                self.on_slot(slot)

    async def _renewal(self, conn: Any) -> int:
        # A renewal that hangs (a stalled server) is a failed one: the next is due a third of the lease later.
        limit = self.seconds / 3
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SLOT_LOCK, timeout=limit)
        taken = {r[0] for r in await conn.fetch(TAKEN_SLOTS, self.node, timeout=limit)}
        slot = self.slot if self.slot is not None and self.slot not in taken else _free(taken)
        await conn.execute(RENEW, self.node, self.seconds, slot, timeout=limit)
        return slot

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


def _free(taken: set[int]) -> int:
    for slot in range(SLOTS):
        if slot not in taken:
            return slot
    raise OutboxUnavailable(
        f"every msgid slice ({SLOTS}) is held by a live gateway on this database: more gateways share it than a "
        "pair (and its restarts)"
    )
