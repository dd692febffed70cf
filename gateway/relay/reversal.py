"""冲正 (2601) of in-doubt transactions: until the platform answers definitely, never once their row is final,
and the 2601s whose own answers were lost settled by what became of their original.

A 2601 is stored (and so may be sent) only while its original is still in doubt, checked in the same outbox
transaction that stores it; the Resolver (gateway/relay/resolution.py) runs this work, fences it for ops
decisions and stops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import structlog

from gateway.errors import UpstreamError, UpstreamTimeout
from gateway.platform.catalogue import Catalogue, TxClass, TxInfo
from gateway.platform.envelope import RequestEnvelope
from gateway.platform.msgids import MsgidMaker
from gateway.relay.checking import nothing_to_reverse, reversal_envelope
from gateway.relay.forwarder import AmbiguousOutcome
from gateway.relay.repository import MsgidConflict, NotInDoubt, Outbox, OutboxUnavailable, reversal_client
from gateway.relay.rules import Plan, plan_for
from gateway.relay.schema import Change, Row
from gateway.relay.states import Reason, RowState
from gateway.relay.timing import RelayTiming

log = structlog.get_logger("gateway.relay")


class Steps(Protocol):
    """What a resolution's work needs from the Resolver that runs it."""

    outbox: Outbox
    sender: Any
    catalogue: Catalogue
    msgids: MsgidMaker
    timing: RelayTiming
    on_event: Callable[[str, dict[str, Any]], None]
    busy: set[str]  # an attempt is between storing its message and recording its answer

    def going_on(self, msgid: str) -> bool: ...
    async def nap(self, msgid: str, seconds: float) -> None: ...
    def settle_left(self, row: Row) -> float: ...
    async def current(self, msgid: str) -> Row: ...
    def info_of(self, row: Row) -> TxInfo: ...


class Reversals:
    def __init__(self, steps: Steps) -> None:
        self.steps = steps

    def _envelope(self, original: RequestEnvelope) -> RequestEnvelope:
        now = datetime.now()
        msgid = self.steps.msgids.make(str(original.fields.get("fixmedins_code") or original.msgid[:12]), now)
        return reversal_envelope(original, self.steps.catalogue.reversal_infno, msgid, now)

    async def run(self, row: Row, original: RequestEnvelope) -> Row:
        """冲正 until the platform gives a definite answer; survives the HIS's deadline, bounded by stop()."""
        attempt = 0
        while self.steps.going_on(row.msgid):
            attempt += 1
            self.steps.busy.add(row.msgid)
            try:
                outcome = await self._once(row, original)
            except OutboxUnavailable as exc:
                # The outbox cannot write (disk full, read-only): nothing of this step is decided; a later 2601
                # (same omsgid) asks again and settles any this one left unfinished.
                log.warning("reversal_not_stored", msgid=row.msgid, error=exc.message)
                outcome = "pause"
            finally:
                self.steps.busy.discard(row.msgid)
            if isinstance(outcome, Row):
                return outcome
            if outcome == "again":
                continue
            if outcome == "early":
                early = self.steps.settle_left(row)
                log.warning("reversal_found_nothing_yet", msgid=row.msgid, ask_again_in_s=round(early, 1))
                await self.steps.nap(row.msgid, early)
                continue
            await self.steps.nap(row.msgid, self.steps.timing.resolve_pause(attempt))
        return await self.steps.current(row.msgid)

    async def _once(self, row: Row, original: RequestEnvelope) -> Row | str:
        """One 2601: the final row, or what to do next ("again" at once, "pause", "early": before settle)."""
        rev = self._envelope(original)
        try:
            await self.steps.outbox.accept(
                msgid=rev.msgid,
                infno=rev.infno,
                tx_class=TxClass.RESOLVER,
                psn_no=rev.psn_no,
                body=rev.body,
                deadline=None,
                client=reversal_client(row.msgid),
                only_while_in_doubt=row.msgid,
            )
        except MsgidConflict:
            return "again"  # that msgid is taken (a HIS's): the next one
        except NotInDoubt:
            return await self.steps.current(row.msgid)  # decided meanwhile (by ops): no 2601 may leave
        await self.steps.outbox.move(rev.msgid, RowState.SENDING, attempts=1)
        try:
            answer = await self.steps.sender.submit(rev, asyncio.get_running_loop().time() + 30)
        except UpstreamError as exc:
            lost = isinstance(exc, (AmbiguousOutcome, UpstreamTimeout))
            if lost:
                await self.steps.outbox.move(rev.msgid, RowState.IN_DOUBT, outcome=exc.message)
            else:
                await self.steps.outbox.move(rev.msgid, RowState.FAILED, outcome=exc.message, reason=Reason.NOT_SENT)
            return "pause"
        await self.steps.outbox.move(
            rev.msgid,
            RowState.ANSWERED,
            response=answer.response.body,
            upstream=answer.upstream,
            outcome=f"infcode {answer.response.infcode}",
        )
        if answer.response.ok:
            final = await self.steps.outbox.move(
                row.msgid, RowState.REVERSED, outcome=f"reversed by 2601 msgid {rev.msgid}"
            )
            log.warning("reversed", msgid=row.msgid, infno=row.infno, reversal=rev.msgid)
            self.steps.on_event("reversed", {"msgid": row.msgid, "infno": row.infno})
            await self.close_lost(final, rev.msgid)
            return final
        err = answer.response.err_msg or ""
        if nothing_to_reverse(err):
            # "Nothing to reverse" is only the truth once the original can no longer arrive: a slow platform or
            # a proxy's queue may still deliver it after this 冲正, and it would be booked with the HIS told to
            # retry. Until the settle time has passed since the row went in doubt, ask again.
            if self.steps.settle_left(row) > 0:
                return "early"
            final = await self.steps.outbox.move(
                row.msgid,
                RowState.FAILED,
                outcome=f"the platform never booked it (2601: {err})",
                reason=Reason.NOT_BOOKED,
            )
            log.warning("never_booked", msgid=row.msgid, infno=row.infno)
            await self.close_lost(final, rev.msgid)
            return final
        log.warning("reversal_refused", msgid=row.msgid, err_msg=err)
        return "pause"

    async def close_lost(self, original: Row, answered_by: str | None) -> None:
        """Earlier 2601s of the same original whose own answers were lost (or that a full disk or a restart cut
        short) are settled by the outcome of the original: the platform reverses an original once, and asking
        again (same omsgid) told what became of it."""
        by = f"2601 {answered_by}" if answered_by else "its final state"
        for lost in await self.steps.outbox.reversals_of(original.msgid):
            if lost.state.final:
                continue
            if lost.state is RowState.ACCEPTED:
                await self.steps.outbox.move(lost.msgid, RowState.FAILED, outcome="not sent", reason=Reason.NOT_SENT)
                continue
            if lost.state is RowState.SENDING:
                await self.steps.outbox.move(lost.msgid, RowState.IN_DOUBT, outcome="its send was cut short")
            if original.state is RowState.REVERSED:
                to, words, reason = RowState.CONFIRMED, f"the reversal took effect ({by})", None
            elif original.state is RowState.FAILED:
                to, words = RowState.FAILED, f"nothing to reverse (the original was never booked: {by})"
                reason = Reason.NOT_BOOKED
            else:
                continue  # booked by ops' word with no 2601 unsettled: none can be in doubt here
            moved: Change = {"outcome": f"{words}; this 2601's own answer was lost"}
            if reason is not None:
                moved["reason"] = reason
            await self.steps.outbox.move(lost.msgid, to, **moved)
            log.info("lost_reversal_settled", msgid=lost.msgid, original=original.msgid, state=to.value)

    async def settle_orphans(self, left: list[Row]) -> None:
        """Of the rows a previous run (or the other gateway) `left` unfinished: 2601s whose original is already
        final (their answer was lost, then a later 2601 settled the original; or they were cut short) are settled
        by the original's outcome."""
        for row in left:
            if plan_for(self.steps.info_of(row)) is not Plan.BY_ORIGINAL:
                continue
            if not (row.client or "").startswith(reversal_client("")):
                continue
            original = await self.steps.outbox.get((row.client or "")[len(reversal_client("")) :])
            if original is not None and original.state.final:
                await self.close_lost(original, None)
