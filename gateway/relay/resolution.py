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
import json
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.platform.catalogue import Catalogue, TxClass, TxInfo
from gateway.platform.envelope import RequestEnvelope, decode_request
from gateway.platform.msgids import MsgidMaker
from gateway.relay import settleclock
from gateway.relay.checking import Verdict, judge, query_envelope
from gateway.relay.forwarder import AmbiguousOutcome
from gateway.relay.outcomes import NothingToResolve
from gateway.relay.repository import MsgidConflict, NotInDoubt, Outbox, OutboxUnavailable, reversal_client
from gateway.relay.rules import IfAbsent, Plan, plan_for, rule_for
from gateway.relay.schema import Row
from gateway.relay.states import IllegalMove, State
from gateway.relay.timing import RelayTiming

log = structlog.get_logger("gateway.relay")

#: the platform's words for "the original transaction does not exist" in a 2601 answer
NOT_FOUND_MARKERS = ("不存在", "未找到", "无需冲正")
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
        self._busy: set[str] = set()  # an attempt is between storing its message and recording its answer
        #: ops decisions being made, for HIS requests that wait on the row meanwhile
        self.deciding: dict[str, asyncio.Future[None]] = {}
        self._stopping = False
        self._born = time.monotonic()

    # -- the class rule -------------------------------------------------------------------------------------

    async def settle(self, row: Row, envelope: RequestEnvelope, info: TxInfo) -> Row:
        """An in-doubt row: what its class calls for (the same rule for the live path, ops and recovery)."""
        plan = plan_for(info)
        if plan is Plan.REVERSE:
            self._start(row, self._reverse(row, envelope), "reverse")
        elif plan is Plan.CHECK:
            self._start(row, self._check(row, envelope, info), "check")
        elif plan is Plan.ASK_AGAIN:
            # Repeating a query is harmless: a definite "no answer" lets the HIS simply ask again.
            return await self.outbox.move(row.msgid, State.FAILED, outcome=f"{NO_ANSWER}: {row.outcome or ''}")
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
        task.add_done_callback(lambda _t, m=row.msgid: self._ended(m))

    def _ended(self, msgid: str) -> None:
        self.tasks.pop(msgid, None)
        self._wake.pop(msgid, None)

    def _going_on(self, msgid: str) -> bool:
        return not self._stopping and msgid not in self._fenced

    async def _nap(self, msgid: str, seconds: float) -> None:
        """A pause that a fence or a stop cuts short."""
        wake = self._wake.get(msgid)
        if wake is None or seconds <= 0:
            await asyncio.sleep(max(0.0, seconds))
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await wake.wait()

    def _settle_left(self, row: Row) -> float:
        """Seconds until the original of an in-doubt row can no longer reach the platform: relay.reversal_settle
        after the doubt began, on a clock no wall-clock step moves (settleclock). A row with no usable stamp
        (an earlier boot, an older outbox) is timed from this process's start."""
        elapsed = settleclock.seconds_since(row.doubt_clock)
        if elapsed is None:
            elapsed = time.monotonic() - self._born
        return self.timing.reversal_settle - elapsed

    async def _current(self, msgid: str) -> Row:
        current = await self.outbox.get(msgid)
        assert current is not None
        return current

    # -- 冲正 -----------------------------------------------------------------------------------------------

    def _reversal_envelope(self, original: RequestEnvelope) -> RequestEnvelope:
        now = datetime.now()
        msgid = self.msgids.make(str(original.fields.get("fixmedins_code") or original.msgid[:12]), now)
        fields = dict(original.fields) | {
            "infno": self.catalogue.reversal_infno,
            "msgid": msgid,
            "inf_time": f"{now:%Y-%m-%d %H:%M:%S}",
            "input": {"data": {"psn_no": original.psn_no or "", "omsgid": original.msgid, "oinfno": original.infno}},
        }
        return decode_request(json.dumps(fields, ensure_ascii=False).encode("utf-8"))

    async def _reverse(self, row: Row, original: RequestEnvelope) -> Row:
        """冲正 until the platform gives a definite answer; survives the HIS's deadline, bounded by stop()."""
        attempt = 0
        while self._going_on(row.msgid):
            attempt += 1
            self._busy.add(row.msgid)
            try:
                outcome = await self._reverse_once(row, original)
            except OutboxUnavailable as exc:
                # The outbox cannot write (disk full, read-only): nothing of this step is decided; a later 2601
                # (same omsgid) asks again and settles any this one left unfinished.
                log.warning("reversal_not_stored", msgid=row.msgid, error=exc.message)
                outcome = "pause"
            finally:
                self._busy.discard(row.msgid)
            if isinstance(outcome, Row):
                return outcome
            if outcome == "again":
                continue
            if outcome == "early":
                early = self._settle_left(row)
                log.warning("reversal_found_nothing_yet", msgid=row.msgid, ask_again_in_s=round(early, 1))
                await self._nap(row.msgid, early)
                continue
            await self._nap(row.msgid, self.timing.resolve_pause(attempt))
        return await self._current(row.msgid)

    async def _reverse_once(self, row: Row, original: RequestEnvelope) -> Row | str:
        """One 2601: the final row, or what to do next ("again" at once, "pause", "early": before settle)."""
        rev = self._reversal_envelope(original)
        try:
            await self.outbox.accept(
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
            return await self._current(row.msgid)  # decided meanwhile (by ops): no 2601 may leave
        await self.outbox.move(rev.msgid, State.SENDING, attempts=1)
        try:
            answer = await self.sender.submit(rev, asyncio.get_running_loop().time() + 30)
        except UpstreamError as exc:
            lost = isinstance(exc, (AmbiguousOutcome, UpstreamTimeout))
            await self.outbox.move(rev.msgid, State.IN_DOUBT if lost else State.FAILED, outcome=exc.message)
            return "pause"
        await self.outbox.move(
            rev.msgid,
            State.ANSWERED,
            response=answer.response.body,
            upstream=answer.upstream,
            outcome=f"infcode {answer.response.infcode}",
        )
        if answer.response.ok:
            final = await self.outbox.move(row.msgid, State.REVERSED, outcome=f"reversed by 2601 msgid {rev.msgid}")
            log.warning("reversed", msgid=row.msgid, infno=row.infno, reversal=rev.msgid)
            self.on_event("reversed", {"msgid": row.msgid, "infno": row.infno})
            await self._close_lost_reversals(final, rev.msgid)
            return final
        err = answer.response.err_msg or ""
        if any(marker in err for marker in NOT_FOUND_MARKERS):
            # "Nothing to reverse" is only the truth once the original can no longer arrive: a slow platform or
            # a proxy's queue may still deliver it after this 冲正, and it would be booked with the HIS told to
            # retry. Until the settle time has passed since the row went in doubt, ask again.
            if self._settle_left(row) > 0:
                return "early"
            final = await self.outbox.move(
                row.msgid, State.FAILED, outcome=f"the platform never booked it (2601: {err})"
            )
            log.warning("never_booked", msgid=row.msgid, infno=row.infno)
            await self._close_lost_reversals(final, rev.msgid)
            return final
        log.warning("reversal_refused", msgid=row.msgid, err_msg=err)
        return "pause"

    async def _close_lost_reversals(self, original: Row, answered_by: str | None) -> None:
        """Earlier 2601s of the same original whose own answers were lost (or that a full disk or a restart cut
        short) are settled by the outcome of the original: the platform reverses an original once, and asking
        again (same omsgid) told what became of it."""
        by = f"2601 {answered_by}" if answered_by else "its final state"
        for lost in await self.outbox.reversals_of(original.msgid):
            if lost.state.final:
                continue
            if lost.state is State.ACCEPTED:
                await self.outbox.move(lost.msgid, State.FAILED, outcome="not sent")
                continue
            if lost.state is State.SENDING:
                await self.outbox.move(lost.msgid, State.IN_DOUBT, outcome="its send was cut short")
            if original.state is State.REVERSED:
                to, words = State.CONFIRMED, f"the reversal took effect ({by})"
            elif original.state is State.FAILED:
                to, words = State.FAILED, f"nothing to reverse (the original was never booked: {by})"
            else:
                continue  # booked by ops' word with no 2601 unsettled: none can be in doubt here
            await self.outbox.move(lost.msgid, to, outcome=f"{words}; this 2601's own answer was lost")
            log.info("lost_reversal_settled", msgid=lost.msgid, original=original.msgid, state=to.value)

    async def settle_orphaned_reversals(self) -> None:
        """At start: 2601s left unfinished whose original is already final (their answer was lost, then a later
        2601 settled the original; or they were cut short) are settled by the original's outcome."""
        for row in await self.outbox.unfinished():
            if plan_for(self.info_of(row)) is not Plan.BY_ORIGINAL:
                continue
            if not (row.client or "").startswith(reversal_client("")):
                continue
            original = await self.outbox.get((row.client or "")[len(reversal_client("")) :])
            if original is not None and original.state.final:
                await self._close_lost_reversals(original, None)

    # -- resolution by query --------------------------------------------------------------------------------

    async def _check(self, row: Row, original: RequestEnvelope, info: TxInfo) -> Row:
        """Ask the platform whether it holds the request. Held: confirmed. Not held once the settle time has
        passed: a check-first request is sent again (same msgid: the platform never had it), a money-moving one
        is reported not processed. Anything else stays in doubt for ops."""
        spec = info.check
        assert spec is not None
        loop = asyncio.get_running_loop()
        attempt = resends = 0
        while self._going_on(row.msgid):
            attempt += 1
            # The same rule as a 冲正 that finds nothing: until the settle time has passed, the original may
            # still reach the platform after the query, so "not held" would not yet be the truth.
            await self._nap(row.msgid, self._settle_left(row))
            if not self._going_on(row.msgid):
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
                log.warning("check_unanswered", msgid=row.msgid, query=spec.infno, reason=exc.message, attempt=attempt)
                await self._nap(row.msgid, self.timing.resolve_pause(attempt))
                continue
            finding = judge(spec, original, answer.response)
            log.warning(
                "checked", msgid=row.msgid, infno=row.infno, verdict=finding.verdict.value, detail=finding.detail
            )
            if finding.verdict is Verdict.HELD:
                final = await self._final(
                    row, State.CONFIRMED, f"the platform holds it ({finding.detail}); its answer was lost"
                )
                self.on_event("confirmed_by_query", {"msgid": row.msgid, "infno": row.infno})
                return final
            if finding.verdict is not Verdict.ABSENT:
                self.on_event("left_in_doubt", {"msgid": row.msgid, "infno": row.infno})
                return await self._note(row, f"checked: {finding.detail}")
            if rule_for(info).if_absent is IfAbsent.NOT_PROCESSED:
                log.warning("never_booked", msgid=row.msgid, infno=row.infno)
                return await self._final(row, State.FAILED, f"the platform never booked it ({finding.detail})")
            if resends >= self.timing.max_attempts:
                return await self._note(row, f"checked: {finding.detail}; {resends} resends left no answer")
            resends += 1
            self._busy.add(row.msgid)
            try:
                row = await self._resend(row, original)
            finally:
                self._busy.discard(row.msgid)
            if row.state.final:
                return row
        return await self._current(row.msgid)

    async def _final(self, row: Row, to: State, outcome: str) -> Row:
        """A move the resolution decided, unless ops decided first (the row is final already)."""
        try:
            return await self.outbox.move(row.msgid, to, outcome=outcome)
        except IllegalMove:
            return await self._current(row.msgid)

    async def _note(self, row: Row, outcome: str) -> Row:
        return await self._final(row, State.IN_DOUBT, outcome)

    async def _resend(self, row: Row, original: RequestEnvelope) -> Row:
        """Send a check-first request again once the platform has shown it never received it."""
        attempt = row.attempts + 1
        try:
            await self.outbox.move(row.msgid, State.SENDING, attempts=attempt)
        except IllegalMove:  # ops decided meanwhile
            return await self._current(row.msgid)
        try:
            answer = await self.sender.submit(original, asyncio.get_running_loop().time() + 30)
        except (AmbiguousOutcome, UpstreamTimeout) as exc:
            # the settle time starts again from this send
            return await self.outbox.move(
                row.msgid, State.IN_DOUBT, outcome=exc.message, doubt_clock=settleclock.stamp()
            )
        except UpstreamError as exc:
            return await self.outbox.move(row.msgid, State.FAILED, outcome=f"not sent: {exc.message}")
        log.warning("resent_after_check", msgid=row.msgid, infno=row.infno, attempt=attempt)
        return await self.outbox.move(
            row.msgid,
            State.ANSWERED,
            response=answer.response.body,
            upstream=answer.upstream,
            outcome=f"infcode {answer.response.infcode} (sent again after the platform showed it never had it)",
        )

    # -- ops ------------------------------------------------------------------------------------------------

    async def decide(self, row: Row, action: str, reason: str, wait: float) -> Row:
        """Ops checked with the platform: `booked` or `not_booked`, with the reason kept in the row."""
        if not reason.strip():
            raise NothingToResolve("say why (what the platform showed): --reason is required")
        to = State.CONFIRMED if action == "booked" else State.FAILED
        words = "booked" if action == "booked" else "not booked"
        msgid = row.msgid
        running = self.tasks.get(msgid)
        self._fenced.add(msgid)
        self.deciding[msgid] = asyncio.get_running_loop().create_future()
        try:
            if running is not None:
                wake = self._wake.get(msgid)
                if wake is not None and msgid not in self._busy:
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
                    if current is not None and current.state is State.IN_DOUBT:
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
