"""Settling rows nobody is working on any more: those a previous run of this gateway left unfinished (at start),
and those the other gateway of a pair left when its lease lapsed (takeover). One rule for both, from the class
table (rules.py): never sent → failed; in flight → in doubt, then resolved by its class's plan."""

from __future__ import annotations

import structlog

from gateway.platform.envelope import decode_request
from gateway.relay import settleclock
from gateway.relay.repository import Outbox
from gateway.relay.resolution import NO_ANSWER, Resolver
from gateway.relay.rules import Plan, plan_for
from gateway.relay.schema import Row
from gateway.relay.states import IllegalMove, Reason, RowState

log = structlog.get_logger("gateway.relay")


async def settle_left(outbox: Outbox, resolver: Resolver, unfinished: list[Row], why: str) -> dict[str, int]:
    """Settle `unfinished` (rows this gateway owns and no task of its works on); `why` says what stopped them.
    A row moved meanwhile by a gateway that still held it (its lease had lapsed, not its life) is left to it."""
    counts = {"not_sent": 0, "in_doubt": 0, "reversing": 0, "checking": 0}
    # 冲正s cut short first, before any resolution starts: a fresh 2601 for their original settles them
    # too (Reversals.close_lost), and a row read before that would then be moved a second time.
    plans = {row.msgid: plan_for(resolver.info_of(row)) for row in unfinished}
    for row in unfinished:
        if plans[row.msgid] is not Plan.BY_ORIGINAL:
            continue
        try:
            if row.state is RowState.ACCEPTED:
                await outbox.move(row.msgid, RowState.FAILED, outcome=f"not sent: {why} first", reason=Reason.NOT_SENT)
            elif row.state is RowState.SENDING:
                await outbox.move(row.msgid, RowState.IN_DOUBT, outcome=f"{why} mid-send")
        except IllegalMove as exc:
            log.warning("left_row_moved_meanwhile", msgid=row.msgid, move=str(exc))
    for found in unfinished:
        row = found
        plan = plans[row.msgid]
        if plan is Plan.BY_ORIGINAL:
            continue
        try:
            if row.state is RowState.ACCEPTED:
                await outbox.move(row.msgid, RowState.FAILED, outcome=f"not sent: {why} first", reason=Reason.NOT_SENT)
                counts["not_sent"] += 1
                continue
            if row.state is RowState.SENDING:
                row = await outbox.move(
                    row.msgid, RowState.IN_DOUBT, outcome=f"{why} mid-send", doubt_clock=settleclock.stamp()
                )
            if plan is Plan.ASK_AGAIN:
                await outbox.move(row.msgid, RowState.FAILED, outcome=f"{NO_ANSWER}: {why}", reason=Reason.NO_ANSWER)
                continue
        except IllegalMove as exc:
            log.warning("left_row_moved_meanwhile", msgid=row.msgid, move=str(exc))
            continue
        await resolver.settle(row, decode_request(row.request), resolver.info_of(row))
        counts[{Plan.REVERSE: "reversing", Plan.CHECK: "checking", Plan.OPS: "in_doubt"}[plan]] += 1
    await resolver.reversals.settle_orphans(unfinished)
    return counts
