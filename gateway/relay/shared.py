"""Waiting for a row another gateway is deciding, in an outbox shared by a pair of 前置机 (PostgreSQL).

A gateway knows only its own sends: a request whose msgid another node accepted and is sending has no future
here to wait on. Its row in the shared outbox is the only news, so it is looked at every `every` seconds until it
leaves ACCEPTED/SENDING (answered, failed, or in doubt: the owner's resolution goes on from there) or the HIS's
deadline comes.
"""

from __future__ import annotations

import asyncio
import contextlib

from gateway.relay.repository import Outbox
from gateway.relay.schema import Row
from gateway.relay.states import RowState

#: the states in which the sending node is still expected to write the outcome shortly
UNDER_WAY = (RowState.ACCEPTED, RowState.SENDING)


async def until_settled(outbox: Outbox, row: Row, deadline: float, every: float) -> Row:
    """The row as soon as it is no longer under way, or as it is at the deadline (loop time)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout_at(deadline):
            while row.state in UNDER_WAY:
                await asyncio.sleep(every)
                row = await outbox.get(row.msgid) or row
    return row
