"""The exactly-once relay: the outbox first, then the platform, and an answer the HIS gets once.

- accept: the request is on disk before anything else happens; the same msgid later gets the stored
  outcome (or waits for the one in flight), never a second send.
- money-moving work for a person waits until that person's earlier unfinished money-moving requests
  are settled, so a reversal never races a new settlement.
- a request that was not sent may be tried again (any class); one whose outcome is unknown is re-sent only
  when its class is safe. A reversible money-moving transaction with an unknown outcome is undone by
  冲正 (2601, omsgid = its msgid) in a background task that outlives the HIS's deadline; anything else stays
  in doubt for ops (`ybgate outbox`), and the HIS is told so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import structlog

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.platform.catalogue import Catalogue, TxClass, TxInfo
from gateway.platform.envelope import RequestEnvelope, decode_request, decode_response
from gateway.platform.msgids import MsgidMaker
from gateway.relay import settleclock
from gateway.relay.checking import Verdict, judge, query_envelope
from gateway.relay.forwarder import AmbiguousOutcome, RelayAnswer
from gateway.relay.outbox import MsgidConflict, Row, SqliteOutbox
from gateway.relay.outcomes import BookedWithoutAnswer, NothingToResolve, NotProcessed, OutcomeUnknown, Reversed
from gateway.relay.states import State

log = structlog.get_logger("gateway.relay")

#: the platform's words for "the original transaction does not exist" in a 2601 answer
NOT_FOUND_MARKERS = ("不存在", "未找到", "无需冲正")
NO_ANSWER = "no answer in time (safe to ask again with a new msgid)"


class Sender(Protocol):
    async def submit(self, envelope: RequestEnvelope, deadline: float) -> RelayAnswer: ...


class DurableRelay:
    def __init__(
        self,
        outbox: SqliteOutbox,
        sender: Sender,
        catalogue: Catalogue,
        *,
        max_attempts: int = 4,
        backoff: float = 0.2,
        backoff_max: float = 2.0,
        resolve_backoff_max: float = 30.0,
        min_attempt: float = 1.0,
        reversal_settle: float = 60.0,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        msgids: MsgidMaker | None = None,
    ) -> None:
        self.outbox = outbox
        self.reversal_settle = reversal_settle
        self.sender = sender
        self.catalogue = catalogue
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.backoff_max = backoff_max
        self.resolve_backoff_max = resolve_backoff_max
        self.min_attempt = min_attempt
        self.on_event = on_event or (lambda kind, detail: None)
        self._inflight: dict[str, asyncio.Future[Row]] = {}
        self._resolving: dict[str, asyncio.Task[Row]] = {}
        self._msgids = msgids or MsgidMaker()
        self._stopping = False
        self._born = time.monotonic()

    # -- the HIS-facing entry -------------------------------------------------------------------------------

    async def submit(self, envelope: RequestEnvelope, deadline: float, *, client: str | None = None) -> RelayAnswer:
        """`client` (who sent it) is kept with the row for ops and the audit log."""
        info = self.catalogue.classify(envelope.infno)
        loop = asyncio.get_running_loop()
        wall_deadline = time.time() + (deadline - loop.time())
        accepted = await self.outbox.accept(
            msgid=envelope.msgid,
            infno=envelope.infno,
            tx_class=info.tx_class.value,
            psn_no=envelope.psn_no,
            body=envelope.body,
            deadline=wall_deadline,
            send=True,
            client=client,
        )
        if not accepted.new:
            return await self._replay(accepted.row, deadline)
        done: asyncio.Future[Row] = loop.create_future()
        self._inflight[envelope.msgid] = done
        try:
            row, fresh = await self._process(accepted.row, envelope, info, deadline)
        except BaseException as exc:
            done.set_exception(exc)
            done.exception()  # retrieved here, so a future nobody else awaits does not warn
            raise
        else:
            done.set_result(row)
        finally:
            self._inflight.pop(envelope.msgid, None)
        if fresh is not None:
            return fresh  # the answer as it came (and its latency): no second decode of the stored copy
        return await self._answer(row, deadline)

    async def _replay(self, row: Row, deadline: float) -> RelayAnswer:
        """The same msgid again: its stored outcome, or the one in flight — never a second send."""
        log.info("msgid_replayed", msgid=row.msgid, state=row.state.value)
        if not row.state.final:
            waiting = self._inflight.get(row.msgid) or self._resolving.get(row.msgid)
            if waiting is not None:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        row = await asyncio.shield(waiting)
            fresh = await self.outbox.get(row.msgid)
            row = fresh or row
        return await self._answer(row, deadline)

    async def _answer(self, row: Row, deadline: float) -> RelayAnswer:
        if row.state is State.IN_DOUBT and row.msgid in self._resolving:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout_at(deadline):
                    row = await asyncio.shield(self._resolving[row.msgid])
        if row.state is State.ANSWERED:
            assert row.response is not None
            return RelayAnswer(decode_response(row.response), row.upstream or "", None)
        if row.state is State.REVERSED:
            raise Reversed(
                f"结算结果未知，已自动冲正，未扣费；可使用新的msgid重新办理 (outcome was unknown, reversed by "
                f"2601, nothing charged; retry with a new msgid). {row.outcome or ''}".strip()
            )
        if row.state is State.FAILED and (row.outcome or "").startswith(NO_ANSWER):
            raise UpstreamTimeout(f"平台未在时限内应答，可用新的msgid重新查询 ({row.outcome})")
        if row.state is State.FAILED:
            raise NotProcessed(
                f"未被医保平台处理，可使用新的msgid重新办理 (not processed; retry with a new msgid): "
                f"{row.outcome or ''}".strip()
            )
        if row.state is State.CONFIRMED:
            raise BookedWithoutAnswer(
                "平台已办理（经查询或运维核实），但网关未收到平台应答；请勿重复提交，结果请向平台查询 "
                "(booked, confirmed by query or by ops; the platform's answer never arrived; do not resend; "
                f"query the platform for details). "
                f"{row.outcome or ''}".strip()
            )
        if row.msgid in self._resolving:
            raise OutcomeUnknown(
                f"结果未知，网关正在冲正或查询核实，请勿重复提交；稍后用同一msgid查询 (outcome unknown, being "
                "resolved by 冲正 or query; "
                f"do not resend; ask again with the same msgid). {row.outcome or ''}".strip()
            )
        raise OutcomeUnknown(
            f"结果未知，请先查询平台再决定是否重发 (outcome unknown; query the platform before resending; ops: "
            f"ybgate outbox resolve {row.msgid}). {row.outcome or ''}".strip()
        )

    # -- sending --------------------------------------------------------------------------------------------

    async def _process(
        self, row: Row, envelope: RequestEnvelope, info: TxInfo, deadline: float
    ) -> tuple[Row, RelayAnswer | None]:
        """Send `row` (accepted, or already claimed for its first attempt by accept) by its class's rules; the
        final row, with the platform's answer when one came."""
        if row.state is State.ACCEPTED and info.tx_class is TxClass.MONEY_MOVING and envelope.psn_no:
            blocker = await self._wait_for_person(envelope.psn_no, envelope.msgid, deadline)
            if blocker is not None:
                failed = await self.outbox.move(
                    envelope.msgid,
                    State.FAILED,
                    outcome=(f"not sent: an earlier transaction for this person ({blocker}) is still unresolved"),
                )
                return failed, None
        attempt = row.attempts
        first_cause = ""
        claimed = row.state is State.SENDING
        while True:
            if not claimed:
                attempt += 1
                await self.outbox.move(envelope.msgid, State.SENDING, attempts=attempt)
            claimed = False
            try:
                answer = await self.sender.submit(envelope, self._attempt_deadline(info, deadline))
            except (AmbiguousOutcome, UpstreamTimeout) as exc:
                row = await self.outbox.move(
                    envelope.msgid, State.IN_DOUBT, outcome=exc.message, doubt_clock=settleclock.stamp()
                )
                self.on_event("in_doubt", {"msgid": envelope.msgid, "infno": envelope.infno})
                if info.may_resend and self._time_for_another(attempt, deadline):
                    await asyncio.sleep(self._pause(attempt))
                    continue
                return await self._resolve(row, envelope, info), None
            except UpstreamError as exc:
                # Nothing was sent: any transaction may be tried again while there is time.
                first_cause = first_cause or exc.message  # later attempts often only say "breaker open"
                if self._time_for_another(attempt, deadline):
                    await self.outbox.move(envelope.msgid, State.ACCEPTED, outcome=exc.message)
                    await asyncio.sleep(self._pause(attempt))
                    continue
                last = "" if exc.message == first_cause else f" (last attempt: {exc.message})"
                failed = await self.outbox.move(envelope.msgid, State.FAILED, outcome=f"not sent: {first_cause}{last}")
                return failed, None
            else:
                answered = await self.outbox.move(
                    envelope.msgid,
                    State.ANSWERED,
                    response=answer.response.body,
                    upstream=answer.upstream,
                    outcome=f"infcode {answer.response.infcode}",
                )
                return answered, answer

    def _attempt_deadline(self, info: TxInfo, deadline: float) -> float:
        """A resendable request gets part of the time per attempt, so a dead connection leaves time to retry
        elsewhere; anything else waits the whole deadline for its one send."""
        if not info.may_resend:
            return deadline
        now = asyncio.get_running_loop().time()
        return min(deadline, now + max(self.min_attempt, (deadline - now) / 2))

    def _time_for_another(self, attempt: int, deadline: float) -> bool:
        remaining = deadline - asyncio.get_running_loop().time()
        return attempt < self.max_attempts and remaining > self._pause(attempt) + 0.05

    def _pause(self, attempt: int) -> float:
        # Exponential backoff with full jitter: retries from many cashier stations do not arrive in step.
        return min(self.backoff_max, self.backoff * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)  # noqa: S311

    async def _wait_for_person(self, psn_no: str, msgid: str, deadline: float) -> str | None:
        """Wait until this person's earlier unfinished money-moving rows are final; the msgid still blocking
        at the deadline, if any."""
        while True:
            earlier = await self.outbox.in_doubt_for(psn_no, before=msgid)
            if not earlier:
                return None
            first = earlier[0]
            waiting = self._inflight.get(first.msgid) or self._resolving.get(first.msgid)
            remaining = deadline - asyncio.get_running_loop().time() - 0.05
            if waiting is None or remaining <= 0:
                return first.msgid
            try:
                async with asyncio.timeout(remaining):
                    await asyncio.shield(waiting)
            except TimeoutError:
                return first.msgid
            except BaseException:  # noqa: BLE001 - only waiting for it to end, however it ended
                await asyncio.sleep(0)

    # -- resolution -----------------------------------------------------------------------------------------

    async def _resolve(self, row: Row, envelope: RequestEnvelope, info: TxInfo) -> Row:
        if info.tx_class is TxClass.MONEY_MOVING and info.reversible:
            self._start_reversal(row, envelope)
        elif info.check is not None and info.tx_class is not TxClass.SAFE:
            self._start_check(row, envelope, info)
        elif info.tx_class is TxClass.SAFE:
            # Repeating a query is harmless: a definite "no answer" lets the HIS simply ask again.
            return await self.outbox.move(row.msgid, State.FAILED, outcome=f"{NO_ANSWER}: {row.outcome or ''}")
        else:
            log.warning("left_in_doubt", msgid=row.msgid, infno=row.infno, tx_class=info.tx_class.value)
            self.on_event("left_in_doubt", {"msgid": row.msgid, "infno": row.infno})
        return row

    def _start_reversal(self, row: Row, envelope: RequestEnvelope) -> None:
        if row.msgid in self._resolving:
            return
        task = asyncio.create_task(self._reverse(row, envelope), name=f"reverse-{row.msgid}")
        self._resolving[row.msgid] = task
        task.add_done_callback(lambda _t, m=row.msgid: self._resolving.pop(m, None))

    def _settle_left(self, row: Row) -> float:
        """Seconds until the original of an in-doubt row can no longer reach the platform: relay.reversal_settle
        after the doubt began, on a clock no wall-clock step moves (settleclock). A row with no usable stamp
        (an earlier boot, an older outbox) is timed from this process's start."""
        elapsed = settleclock.seconds_since(row.doubt_clock)
        if elapsed is None:
            elapsed = time.monotonic() - self._born
        return self.reversal_settle - elapsed

    def _start_check(self, row: Row, envelope: RequestEnvelope, info: TxInfo) -> None:
        if row.msgid in self._resolving:
            return
        task = asyncio.create_task(self._check(row, envelope, info), name=f"check-{row.msgid}")
        self._resolving[row.msgid] = task
        task.add_done_callback(lambda _t, m=row.msgid: self._resolving.pop(m, None))

    async def _check(self, row: Row, original: RequestEnvelope, info: TxInfo) -> Row:
        """Resolution by query: ask the platform whether it holds the request. Held: confirmed. Not held once
        the settle time has passed: a check-first request is sent again (same msgid: the platform never had
        it), a money-moving one is reported not processed. Anything else stays in doubt for ops."""
        spec = info.check
        assert spec is not None
        loop = asyncio.get_running_loop()
        attempt = resends = 0
        while not self._stopping:
            attempt += 1
            # The same rule as a 冲正 that finds nothing: until the settle time has passed, the original may
            # still reach the platform after the query, so "not held" would not yet be the truth.
            early = self._settle_left(row)
            if early > 0:
                await asyncio.sleep(early)
            now = datetime.now()
            code = str(original.fields.get("fixmedins_code") or original.msgid[:12])
            try:
                query = query_envelope(spec, original, self._msgids.make(code, now), now)
            except GatewayError as exc:  # the original lacks what the query needs: nothing to ask
                self.on_event("left_in_doubt", {"msgid": row.msgid, "infno": row.infno})
                return await self.outbox.move(row.msgid, State.IN_DOUBT, outcome=f"no query possible: {exc.message}")
            try:
                answer = await self.sender.submit(query, loop.time() + 30)
            except UpstreamError as exc:
                log.warning("check_unanswered", msgid=row.msgid, query=spec.infno, reason=exc.message, attempt=attempt)
                await asyncio.sleep(min(self.resolve_backoff_max, self.backoff * 2**attempt))
                continue
            finding = judge(spec, original, answer.response)
            log.warning(
                "checked", msgid=row.msgid, infno=row.infno, verdict=finding.verdict.value, detail=finding.detail
            )
            if finding.verdict is Verdict.HELD:
                final = await self.outbox.move(
                    row.msgid, State.CONFIRMED, outcome=f"the platform holds it ({finding.detail}); its answer was lost"
                )
                self.on_event("confirmed_by_query", {"msgid": row.msgid, "infno": row.infno})
                return final
            if finding.verdict is not Verdict.ABSENT:
                self.on_event("left_in_doubt", {"msgid": row.msgid, "infno": row.infno})
                return await self.outbox.move(row.msgid, State.IN_DOUBT, outcome=f"checked: {finding.detail}")
            if info.tx_class is not TxClass.CHECK_FIRST:
                final = await self.outbox.move(
                    row.msgid, State.FAILED, outcome=f"the platform never booked it ({finding.detail})"
                )
                log.warning("never_booked", msgid=row.msgid, infno=row.infno)
                return final
            if resends >= self.max_attempts:
                return await self.outbox.move(
                    row.msgid, State.IN_DOUBT, outcome=f"checked: {finding.detail}; {resends} resends left no answer"
                )
            resends += 1
            row = await self._resend(row, original)
            if row.state.final:
                return row
        current = await self.outbox.get(row.msgid)
        assert current is not None
        return current

    async def _resend(self, row: Row, original: RequestEnvelope) -> Row:
        """Send a check-first request again once the platform has shown it never received it."""
        attempt = row.attempts + 1
        await self.outbox.move(row.msgid, State.SENDING, attempts=attempt)
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

    def _reversal_envelope(self, original: RequestEnvelope) -> RequestEnvelope:
        now = datetime.now()
        msgid = self._msgids.make(str(original.fields.get("fixmedins_code") or original.msgid[:12]), now)
        fields = dict(original.fields) | {
            "infno": self.catalogue.reversal_infno,
            "msgid": msgid,
            "inf_time": f"{now:%Y-%m-%d %H:%M:%S}",
            "input": {"data": {"psn_no": original.psn_no or "", "omsgid": original.msgid, "oinfno": original.infno}},
        }
        body = json.dumps(fields, ensure_ascii=False).encode("utf-8")
        return decode_request(body)

    async def _reverse(self, row: Row, original: RequestEnvelope) -> Row:
        """冲正 until the platform gives a definite answer; survives the HIS's deadline, bounded by stop()."""
        attempt = 0
        while not self._stopping:
            attempt += 1
            rev = self._reversal_envelope(original)
            loop = asyncio.get_running_loop()
            try:
                await self.outbox.accept(
                    msgid=rev.msgid,
                    infno=rev.infno,
                    tx_class=TxClass.RESOLVER.value,
                    psn_no=rev.psn_no,
                    body=rev.body,
                    deadline=None,
                    client=f"ybgate:reversal of {row.msgid}",
                )
            except MsgidConflict:
                continue  # that msgid is taken: the next one
            await self.outbox.move(rev.msgid, State.SENDING, attempts=1)
            try:
                answer = await self.sender.submit(rev, loop.time() + 30)
            except UpstreamError as exc:
                await self.outbox.move(
                    rev.msgid,
                    State.FAILED if not isinstance(exc, (AmbiguousOutcome, UpstreamTimeout)) else State.IN_DOUBT,
                    outcome=exc.message,
                )
                await asyncio.sleep(min(self.resolve_backoff_max, self.backoff * 2**attempt))
                continue
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
                return final
            err = answer.response.err_msg or ""
            if any(marker in err for marker in NOT_FOUND_MARKERS):
                # "Nothing to reverse" is only the truth once the original can no longer arrive: a slow
                # platform or a proxy's queue may still deliver it after this 冲正, and it would be booked with
                # the HIS told to retry. Until the settle time has passed since the row went in doubt, ask again.
                early = self._settle_left(row)
                if early > 0:
                    log.warning("reversal_found_nothing_yet", msgid=row.msgid, ask_again_in_s=round(early, 1))
                    await asyncio.sleep(early)
                    continue
                final = await self.outbox.move(
                    row.msgid, State.FAILED, outcome=f"the platform never booked it (2601: {err})"
                )
                log.warning("never_booked", msgid=row.msgid, infno=row.infno)
                return final
            log.warning("reversal_refused", msgid=row.msgid, err_msg=err, attempt=attempt)
            await asyncio.sleep(min(self.resolve_backoff_max, self.backoff * 2**attempt))
        current = await self.outbox.get(row.msgid)
        assert current is not None
        return current

    # -- ops ------------------------------------------------------------------------------------------------

    async def resolve(self, msgid: str, action: str, reason: str = "", wait: float = 30.0) -> Row:
        """Resolve an in-doubt row for ops (`ybgate outbox resolve`).

        auto: by the class rules now — a reversible money-moving transaction is reversed by 冲正 (waiting up
        to `wait` for the platform's answer); anything else has no automatic resolution.
        not_booked / booked: ops checked with the platform and state the outcome, with a reason kept in the
        row. not_booked tells the HIS to retry with a new msgid; booked tells it not to resend."""
        row = await self.outbox.get(msgid)
        if row is None:
            raise NothingToResolve(f"no request with msgid {msgid} in the outbox")
        if row.state is not State.IN_DOUBT:
            raise NothingToResolve(f"{msgid} is {row.state.value}, not in doubt: nothing to resolve ({row.outcome})")
        if action in ("booked", "not_booked"):
            if not reason.strip():
                raise NothingToResolve("say why (what the platform showed): --reason is required")
            to = State.CONFIRMED if action == "booked" else State.FAILED
            words = "booked" if action == "booked" else "not booked"
            final = await self.outbox.move(msgid, to, outcome=f"resolved by ops as {words}: {reason.strip()}")
            log.warning("resolved_by_ops", msgid=msgid, infno=row.infno, outcome=words)
            self.on_event("resolved_by_ops", {"msgid": msgid, "infno": row.infno, "outcome": words})
            return final
        if action != "auto":
            raise NothingToResolve(f"unknown action {action!r}: auto, booked or not_booked")
        info = self.catalogue.classify(row.infno)
        if info.tx_class is TxClass.MONEY_MOVING and info.reversible:
            self._start_reversal(row, decode_request(row.request))
        elif info.check is not None:
            self._start_check(row, decode_request(row.request), info)
        else:
            raise NothingToResolve(
                f"{msgid} ({row.infno}, {info.tx_class.value}) has no automatic resolution: check with the platform, "
                "then resolve it as booked or not_booked with the reason"
            )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                return await asyncio.shield(self._resolving[msgid])
        current = await self.outbox.get(msgid)
        assert current is not None
        return current

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """Settle what a previous run left unfinished, before new work: ACCEPTED was never sent (failed);
        SENDING may have left (in doubt); in-doubt reversible money-moving work is reversed."""
        counts = {"not_sent": 0, "in_doubt": 0, "reversing": 0, "checking": 0}
        for found in await self.outbox.unfinished():
            row = found
            if row.tx_class == TxClass.RESOLVER.value:
                # A 冲正 cut short: its original is still in doubt and gets a fresh 2601 below.
                if row.state is State.ACCEPTED:
                    await self.outbox.move(row.msgid, State.FAILED, outcome="not sent: the gateway restarted first")
                elif row.state is State.SENDING:
                    await self.outbox.move(row.msgid, State.IN_DOUBT, outcome="the gateway restarted mid-send")
                continue
            if row.state is State.ACCEPTED:
                await self.outbox.move(row.msgid, State.FAILED, outcome="not sent: the gateway restarted first")
                counts["not_sent"] += 1
                continue
            if row.state is State.SENDING:
                row = await self.outbox.move(
                    row.msgid, State.IN_DOUBT, outcome="the gateway restarted mid-send", doubt_clock=settleclock.stamp()
                )
            info = self.catalogue.classify(row.infno)
            if info.tx_class is TxClass.MONEY_MOVING and info.reversible:
                self._start_reversal(row, decode_request(row.request))
                counts["reversing"] += 1
            elif info.check is not None and info.tx_class is not TxClass.SAFE:
                self._start_check(row, decode_request(row.request), info)
                counts["checking"] += 1
            elif info.tx_class is TxClass.SAFE:
                await self.outbox.move(
                    row.msgid,
                    State.FAILED,
                    outcome=f"{NO_ANSWER}: the gateway restarted",
                )
            else:
                counts["in_doubt"] += 1
        if any(counts.values()):
            log.warning("recovered", **counts)
        return counts

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        tasks = list(self._resolving.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError, UpstreamError):
                    await task
