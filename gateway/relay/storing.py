"""Moves of a row the outbox refused to store (a full or read-only disk, a database restarting): each is retried
by a task of its own until the outbox takes it, while the HIS hears "outcome unknown" and may ask again."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from gateway.backoff import backoff
from gateway.relay.repository import Outbox, OutboxUnavailable
from gateway.relay.schema import Row
from gateway.relay.states import IllegalMove, Reason, RowState

log = structlog.get_logger("gateway.relay")

STORE_RETRY_FIRST, STORE_RETRY_MAX = 0.5, 5.0

Then = Callable[[Row], Awaitable[Row]]


class Storing:
    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        #: msgid -> the task storing its outcome
        self.pending: dict[str, asyncio.Task[Row | None]] = {}
        self._stopping = False

    async def move(
        self, msgid: str, to: RowState, *, instead: RowState | None = None, then: Then | None = None, **fields: Any
    ) -> Row:
        """Move a row; when the outbox cannot store it, keep trying in the background and raise
        OutboxUnavailable for the HIS to hear "outcome unknown". `instead`: the state to store in the background
        when this move was a step before a send that must not happen now (the request ends not sent); `then`:
        what follows once the background store succeeded (resolution of an in-doubt row)."""
        try:
            return await self.outbox.move(msgid, to, **fields)
        except OutboxUnavailable:
            if instead is not None:
                outcome = f"not sent: the outbox could not record the attempt ({to.value})"
                to, fields = instead, {"outcome": outcome, "reason": Reason.NOT_SENT}
            if msgid not in self.pending:
                task = asyncio.create_task(self._keep_storing(msgid, to, fields, then), name=f"store-{msgid}")
                self.pending[msgid] = task
                task.add_done_callback(lambda _t: self.pending.pop(msgid, None))
            raise

    async def _keep_storing(self, msgid: str, to: RowState, fields: dict[str, Any], then: Then | None) -> Row | None:
        tries = 0
        while not self._stopping:
            tries += 1
            await asyncio.sleep(backoff(tries, first=STORE_RETRY_FIRST, ceiling=STORE_RETRY_MAX))
            try:
                row = await self.outbox.move(msgid, to, **fields)
            except OutboxUnavailable:
                continue
            except IllegalMove:
                # An earlier try's commit may have reached the database as the connection to it died: then the
                # row is already where this was to move it. Anything else moved it (the other gateway of a pair
                # settled it after this one's lease lapsed): not this one's to store any more.
                now = await self._current(msgid)
                if now is None:
                    continue
                if now.state is not to:
                    log.warning("outcome_not_stored_moved_on", msgid=msgid, state=now.state.value, to=to.value)
                    return None
                row = now
            log.warning("outcome_stored_late", msgid=msgid, state=to.value)
            return await then(row) if then is not None else row
        return None  # stopping: the row stays as the outbox has it, and the next start settles it

    async def _current(self, msgid: str) -> Row | None:
        try:
            return await self.outbox.get(msgid)
        except OutboxUnavailable:
            return None

    def stop(self) -> None:
        self._stopping = True
        for task in list(self.pending.values()):
            task.cancel()  # the outbox keeps what it has; the next start settles those rows
