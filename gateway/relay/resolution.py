"""Resolution of requests whose outcome is unknown: the class rule, the background work, and ops decisions.

What is done for each kind of transaction is gateway/relay/rules.py's table; the live path, ops (`ybgate outbox
resolve`) and recovery after a restart all come here through `settle`, which reads it.

An ops decision wins over a resolution in progress, and no 冲正 may leave once a row is final:
- a 2601 is stored (and so may be sent) only while its original is still in doubt, checked in the same outbox
  transaction that stores it;
- an ops decision first fences the row (the running resolution stops before its next step, waking from any
  pause), waits for an attempt already under way, and is then written only if the row is still in doubt and no
  2601 of it is unfinished: a 2601 whose own answer was lost may have reversed the original, and only asking
  the platform again (same omsgid) can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Unpack

import structlog

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.platform.catalogue import Catalogue, TxInfo
from gateway.platform.envelope import RequestEnvelope, decode_request
from gateway.platform.msgids import MsgidMaker
from gateway.relay import settleclock
from gateway.relay.checking import Verdict, judge, query_envelope
from gateway.relay.forwarder import AmbiguousOutcome
from gateway.relay.outcomes import NothingToResolve
from gateway.relay.repository import Outbox, OutboxUnavailable
from gateway.relay.reversal import Reversals
from gateway.relay.rules import IfAbsent, Plan, plan_for, rule_for
from gateway.relay.schema import Change, Row
from gateway.relay.states import IllegalMove, Reason, RowState
from gateway.relay.timing import RelayTiming

log = structlog.get_logger("gateway.relay")

NO_ANSWER = "no answer in time (safe to ask again with a new msgid)"


class Resolver:
    def __init__(
        self,
        outbox: Outbox,
        sender: Any,
        catalogue: Catalogue,
        msgids: MsgidMaker,
        timing: RelayTiming,
        *,
        on_event: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.outbox = outbox
        self.sender = sender
        self.catalogue = catalogue
        self.msgids = msgids
        self.timing = timing
        self.on_event = on_event
        self.tasks: dict[str, asyncio.Task[Row]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._fenced: set[str] = set()
        self.busy: set[str] = set()  # an attempt is between storing its message and recording its answer
        #: ops decisions being made, for HIS requests that wait on the row meanwhile
        self.deciding: dict[str, asyncio.Future[None]] = {}
        self._stopping = False
        self._born = time.monotonic()
        self.reversals = Reversals(self)

    # -- the class rule -------------------------------------------------------------------------------------

    async def settle(self, row: Row, envelope: RequestEnvelope, info: TxInfo) -> Row:
        """An in-doubt row: what its class calls for (the same rule for the live path, ops and recovery)."""
        plan = plan_for(info)
        if plan is Plan.REVERSE:
            self._start(row, self.reversals.run(row, envelope), "reverse")
        elif plan is Plan.CHECK:
            self._start(row, self._check(row, envelope, info), "check")
        elif plan is Plan.ASK_AGAIN:
            # Repeating a query is harmless: a definite "no answer" lets the HIS simply ask again.
            return await self.outbox.move(
                row.msgid, RowState.FAILED, outcome=f"{NO_ANSWER}: {row.outcome or ''}", reason=Reason.NO_ANSWER
            )
        else:
            # OPS, or a 2601 a HIS sent itself (BY_ORIGINAL settles only the gateway's own, at start)
            log.warning("left_in_doubt", msgid=row.msgid, infno=row.infno, tx_class=info.tx_class.value)
            self.on_event("left_in_doubt", {"msgid": row.msgid, "infno": row.infno})
        return row

    def info_of(self, row: Row) -> TxInfo:
        """A stored row's kind: the class it was accepted under (what the HIS was promised), the catalogue's
        reversibility and check query for its infno."""
        return dataclasses.replace(self.catalogue.classify(row.infno), tx_class=row.tx_class)

    def _start(self, row: Row, work: Any, kind: str) -> None:
        if row.msgid in self.tasks:
            work.close()
            return
        self._wake[row.msgid] = asyncio.Event()
        task = asyncio.create_task(work, name=f"{kind}-{row.msgid}")
        self.tasks[row.msgid] = task
        msgid = row.msgid
        task.add_done_callback(lambda _t: self._ended(msgid))

    def _ended(self, msgid: str) -> None:
        self.tasks.pop(msgid, None)
        self._wake.pop(msgid, None)

    def going_on(self, msgid: str) -> bool:
        return not self._stopping and msgid not in self._fenced

    async def nap(self, msgid: str, seconds: float) -> None:
        """A pause that a fence or a stop cuts short."""
        wake = self._wake.get(msgid)
        if wake is None or seconds <= 0:
            await asyncio.sleep(max(0.0, seconds))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()

    def settle_left(self, row: Row) -> float:
        """Seconds until the original of an in-doubt row can no longer reach the platform: relay.reversal_settle
        after the doubt began, on a clock no wall-clock step moves (settleclock). A row with no usable stamp
        (an earlier boot, an older outbox) is timed from this process's start."""
        elapsed = settleclock.seconds_since(row.doubt_clock)
        if elapsed is None:
            elapsed = time.monotonic() - self._born
        return self.timing.reversal_settle - elapsed

    async def current(self, msgid: str) -> Row:
        current = await self.outbox.get(msgid)
        assert current is not None
        return current

    # -- resolution by query --------------------------------------------------------------------------------

    async def _check(self, row: Row, original: RequestEnvelope, info: TxInfo) -> Row:
        """Ask the platform whether it holds the request. Held: confirmed. Not held once the settle time has
        passed: a check-first request is sent again (same msgid: the platform never had it), a money-moving one
        is reported not processed. Anything else stays in doubt for ops."""
        spec = info.check
        assert spec is not None
        loop = asyncio.get_running_loop()
        attempt = resends = 0
        while self.going_on(row.msgid):
            attempt += 1
            # The same rule as a 冲正 that finds nothing: until the settle time has passed, the original may
            # still reach the platform after the query, so "not held" would not yet be the truth.
            await self.nap(row.msgid, self.settle_left(row))
            if not self.going_on(row.msgid):
                break
            now = datetime.now()
            code = str(original.fields.get("fixmedins_code") or original.msgid[:12])
            try:
                query = query_envelope(spec, original, self.msgids.make(code, now), now)
            except GatewayError as exc:  # the original lacks what the query needs: nothing to ask
                self.on_event("left_in_doubt", {"msgid": row.msgid, "infno": row.infno})
                return await self._note(row, f"no query possible: {exc.message}")
            try:
                answer = await self.sender.submit(query, loop.time() + 30)
            except UpstreamError as exc:
                log.warning(
                    "check_unanswered",
                    msgid=row.msgid,
                    query=spec.infno,
                    query_msgid=query.msgid,
                    reason=exc.message,
                    attempt=attempt,
                )
                await self.nap(row.msgid, self.timing.resolve_pause(attempt))
                continue
            finding = judge(spec, original, answer.response)
            log.warning(
                "checked",
                msgid=row.msgid,
                infno=row.infno,
                query_msgid=query.msgid,
                verdict=finding.verdict.value,
                detail=finding.detail,
            )
            # The query's own msgid goes into what is kept (the row's outcome, and so its audit entry): the
            # platform's records show a query from this hospital under it, and an auditor matching them finds
            # which decision it made.
            found = f"{finding.detail}, asked as {query.msgid}"
            if finding.verdict is Verdict.HELD:
                held = f"the platform holds it ({found}); its answer was lost"
                final = await self._final(row, RowState.CONFIRMED, held)
                self.on_event("confirmed_by_query", {"msgid": row.msgid, "infno": row.infno})
                return final
            if finding.verdict is not Verdict.ABSENT:
                self.on_event("left_in_doubt", {"msgid": row.msgid, "infno": row.infno})
                return await self._note(row, f"checked: {found}")
            if rule_for(info).if_absent is IfAbsent.NOT_PROCESSED:
                log.warning("never_booked", msgid=row.msgid, infno=row.infno)
                never = f"the platform never booked it ({found})"
                return await self._final(row, RowState.FAILED, never, Reason.NOT_BOOKED)
            if resends >= self.timing.max_attempts:
                return await self._note(row, f"checked: {found}; {resends} resends left no answer")
            resends += 1
            self.busy.add(row.msgid)
            try:
                row = await self._resend(row, original)
            except OutboxUnavailable as exc:
                # Its send could not be recorded (disk full, read-only): nothing was sent; check again later.
                resends -= 1
                log.warning("resend_not_stored", msgid=row.msgid, error=exc.message)
                await self.nap(row.msgid, self.timing.resolve_pause(attempt))
                continue
            finally:
                self.busy.discard(row.msgid)
            if row.state.final:
                return row
        return await self.current(row.msgid)

    async def _final(self, row: Row, to: RowState, outcome: str, reason: Reason | None = None) -> Row:
        moved: Change = {"outcome": outcome}
        if reason is not None:
            moved["reason"] = reason
        return await self._keep(row.msgid, to, **moved)

    async def _keep(self, msgid: str, to: RowState, **fields: Unpack[Change]) -> Row:
        """A move the resolution decided, unless ops decided first (the row is final already). When the outbox
        cannot store it (disk full, read-only), the decision is kept and stored as soon as it writes again."""
        attempt = 0
        while True:
            try:
                return await self.outbox.move(msgid, to, **fields)
            except IllegalMove:
                return await self.current(msgid)
            except OutboxUnavailable as exc:
                if not self.going_on(msgid):
                    raise
                attempt += 1
                log.warning("resolution_not_stored", msgid=msgid, state=to.value, error=exc.message)
                await self.nap(msgid, self.timing.resolve_pause(attempt))

    async def _note(self, row: Row, outcome: str) -> Row:
        return await self._final(row, RowState.IN_DOUBT, outcome)

    async def _resend(self, row: Row, original: RequestEnvelope) -> Row:
        """Send a check-first request again once the platform has shown it never received it."""
        attempt = row.attempts + 1
        try:
            await self.outbox.move(row.msgid, RowState.SENDING, attempts=attempt)
        except IllegalMove:  # ops decided meanwhile
            return await self.current(row.msgid)
        try:
            answer = await self.sender.submit(original, asyncio.get_running_loop().time() + 30)
        except (AmbiguousOutcome, UpstreamTimeout) as exc:
            # the settle time starts again from this send
            return await self._keep(row.msgid, RowState.IN_DOUBT, outcome=exc.message, doubt_clock=settleclock.stamp())
        except UpstreamError as exc:
            return await self._keep(
                row.msgid, RowState.FAILED, outcome=f"not sent: {exc.message}", reason=Reason.NOT_SENT
            )
        log.warning("resent_after_check", msgid=row.msgid, infno=row.infno, attempt=attempt)
        return await self._keep(
            row.msgid,
            RowState.ANSWERED,
            response=answer.response.body,
            upstream=answer.upstream,
            outcome=f"infcode {answer.response.infcode} (sent again after the platform showed it never had it)",
        )

    # -- ops ------------------------------------------------------------------------------------------------

    async def resolve_now(self, row: Row, wait: float) -> Row:
        """Ops' `resolve --auto` of an in-doubt row: its class's resolution now, waiting up to `wait` for it."""
        info = self.info_of(row)
        if plan_for(info) in (Plan.OPS, Plan.BY_ORIGINAL):
            raise NothingToResolve(
                f"{row.msgid} ({row.infno}, {info.tx_class.value}) has no automatic resolution: check with the "
                "platform, then resolve it as booked or not_booked with the reason"
            )
        settled = await self.settle(row, decode_request(row.request), info)
        task = self.tasks.get(row.msgid)
        if task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    return await asyncio.shield(task)
        return await self.outbox.get(row.msgid) or settled

    async def decide(self, row: Row, action: str, reason: str, wait: float) -> Row:
        """Ops checked with the platform: `booked` or `not_booked`, with the reason kept in the row."""
        if not reason.strip():
            raise NothingToResolve("say why (what the platform showed): --reason is required")
        to = RowState.CONFIRMED if action == "booked" else RowState.FAILED
        words = "booked" if action == "booked" else "not booked"
        msgid = row.msgid
        running = self.tasks.get(msgid)
        self._fenced.add(msgid)
        self.deciding[msgid] = asyncio.get_running_loop().create_future()
        try:
            if running is not None:
                wake = self._wake.get(msgid)
                if wake is not None and msgid not in self.busy:
                    wake.set()
                try:
                    async with asyncio.timeout(wait):
                        await asyncio.shield(running)
                except TimeoutError:
                    raise NothingToResolve(
                        f"{msgid}: a 冲正 or query for it is under way and has not answered in {wait:.0f} s; "
                        "ask again when it has"
                    ) from None
            final = await self.outbox.decide(msgid, to, f"resolved by ops as {words}: {reason.strip()}")
        finally:
            self._fenced.discard(msgid)
            try:
                if running is not None and msgid not in self.tasks:
                    current = await self.outbox.get(msgid)
                    if current is not None and current.state is RowState.IN_DOUBT:
                        # A refused decision leaves the row in doubt: its resolution goes on.
                        await self.settle(current, decode_request(current.request), self.info_of(current))
            finally:
                self.deciding.pop(msgid).set_result(None)  # HIS requests waiting on the row look again
        log.warning("resolved_by_ops", msgid=msgid, infno=row.infno, outcome=words)
        self.on_event("resolved_by_ops", {"msgid": msgid, "infno": row.infno, "outcome": words})
        return final

    async def stop(self, grace: float) -> None:
        self._stopping = True
        for wake in self._wake.values():
            wake.set()
        tasks = list(self.tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, UpstreamError):
                    await task
