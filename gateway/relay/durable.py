"""The exactly-once relay: the outbox first, then the platform, and an answer the HIS gets once.

- accept: the request is on disk before anything else happens; the same msgid later gets the stored
  outcome (or waits for the one in flight), never a second send.
- money-moving work for a person waits until that person's earlier unfinished money-moving requests
  are settled, so a reversal never races a new settlement.
- a request that was not sent may be tried again (any class); one whose outcome is unknown is re-sent only
  when its class is safe. A reversible money-moving transaction with an unknown outcome is undone by
  冲正 (2601, omsgid = its msgid) in a background task that outlives the HIS's deadline; anything else stays
  in doubt for ops (`ybgate outbox`), and the HIS is told so (gateway/relay/resolution.py).
- once a request may have left, the HIS never hears "not accepted": an outcome the outbox cannot store (a full
  or read-only state disk) is "outcome unknown", kept in memory and stored as soon as the outbox writes again,
  without a restart; asking again with the same msgid waits for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import structlog

from gateway.errors import GatewayError, UpstreamError, UpstreamTimeout
from gateway.platform.catalogue import Catalogue, TxInfo
from gateway.platform.envelope import RequestEnvelope
from gateway.platform.msgids import MsgidMaker
from gateway.relay import settleclock
from gateway.relay.answer import RelayAnswer
from gateway.relay.forwarder import AmbiguousOutcome
from gateway.relay.outcomes import NothingToResolve, OutcomeUnknown, told
from gateway.relay.recovery import settle_left
from gateway.relay.repository import NotInDoubt, Outbox, OutboxUnavailable
from gateway.relay.resolution import Resolver
from gateway.relay.rules import rule_for
from gateway.relay.schema import Row
from gateway.relay.shared import UNDER_WAY, until_settled
from gateway.relay.states import Reason, RowState
from gateway.relay.storing import Storing
from gateway.relay.timing import RelayTiming

log = structlog.get_logger("gateway.relay")

LEASE_LAPSED = "this gateway's lease on the shared outbox lapsed (database unreachable): not sent from here"
#: pauses between tries to store an outcome the outbox refused (disk full, read-only), seconds


class Sender(Protocol):
    async def submit(self, envelope: RequestEnvelope, deadline: float) -> RelayAnswer: ...


class DurableRelay:
    def __init__(
        self,
        outbox: Outbox,
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
        shared_poll: float | None = None,
    ) -> None:
        self.outbox = outbox
        self.sender = sender
        self.catalogue = catalogue
        self.timing = RelayTiming(max_attempts, backoff, backoff_max, resolve_backoff_max, min_attempt, reversal_settle)
        self.on_event = on_event or (lambda kind, detail: None)
        #: the outbox is shared with another gateway: how often to look at a row it is sending (shared.py)
        self.shared_poll = shared_poll
        self._inflight: dict[str, asyncio.Future[Row]] = {}
        #: outcomes the outbox could not store yet, each retried by a task of its own until it can
        self.storing = Storing(outbox)
        self._unstored = self.storing.pending
        self._store = self.storing.move
        self._msgids = msgids or MsgidMaker()
        self.resolver = Resolver(outbox, sender, catalogue, self._msgids, self.timing, on_event=self.on_event)

    # -- the HIS-facing entry -------------------------------------------------------------------------------

    async def submit(self, envelope: RequestEnvelope, deadline: float, *, client: str | None = None) -> RelayAnswer:
        """`client` (who sent it) is kept with the row for ops and the audit log."""
        info = self.catalogue.classify(envelope.infno)
        loop = asyncio.get_running_loop()
        wall_deadline = time.time() + (deadline - loop.time())
        try:
            accepted = await self.outbox.accept(
                msgid=envelope.msgid,
                infno=envelope.infno,
                tx_class=info.tx_class,
                psn_no=envelope.psn_no,
                body=envelope.body,
                deadline=wall_deadline,
                send=True,
                client=client,
                completed=envelope.completed,
            )
        except OutboxUnavailable as exc:
            # The commit group it joined was refused (disk full); the msgid may be one accepted before and asked
            # again, which must never hear "nothing was accepted".
            return await self._refused_or_known(envelope.msgid, deadline, exc)
        if not accepted.new:
            return await self._replay(accepted.row, deadline)
        done: asyncio.Future[Row] = loop.create_future()
        self._inflight[envelope.msgid] = done
        try:
            row, fresh = await self._process(accepted.row, envelope, info, deadline)
        except OutboxUnavailable as exc:
            # Accepted, and possibly sent: never "nothing was accepted" from here on.
            done.set_exception(exc)
            done.exception()
            raise self._not_stored(envelope.msgid, exc) from None
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

    async def _refused_or_known(self, msgid: str, deadline: float, refused: OutboxUnavailable) -> RelayAnswer:
        """After accept was refused: a msgid the outbox does not hold hears that nothing was accepted; one it holds
        is a repeat and gets its stored outcome. Looked up read-only beside the writer, whose commit groups keep
        failing while the disk is full; when a lookup fails, nobody can say, and that is "outcome unknown"."""
        try:
            held = await self.outbox.holds(msgid)
        except OutboxUnavailable as exc:
            raise self._not_stored(msgid, exc) from None
        if not held:
            raise refused
        try:
            row = await self.outbox.get(msgid)
        except OutboxUnavailable as exc:
            raise self._not_stored(msgid, exc) from None
        if row is None:  # pruned in between: it was final long ago, and what it was is gone
            raise self._not_stored(msgid, refused)
        return await self._replay(row, deadline)

    async def _replay(self, row: Row, deadline: float) -> RelayAnswer:
        """The same msgid again: its stored outcome, or the one in flight — never a second send."""
        log.info("msgid_replayed", msgid=row.msgid, state=row.state.value)
        if not row.state.final:
            await self._wait_for(row.msgid, deadline)
            try:
                row = await self.outbox.get(row.msgid) or row
                if self.shared_poll is not None and self._deciding(row.msgid) is None:
                    row = await until_settled(self.outbox, row, deadline, self.shared_poll)
            except OutboxUnavailable as exc:
                raise self._not_stored(row.msgid, exc) from None
        return await self._answer(row, deadline)

    async def _wait_for(self, msgid: str, deadline: float) -> None:
        """Until the deadline, for whatever is still deciding `msgid`: its first send, its resolution, an ops
        decision being made, or the storing of an outcome the outbox refused."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout_at(deadline):
                while (waiting := self._deciding(msgid)) is not None:
                    with contextlib.suppress(GatewayError):
                        await asyncio.shield(waiting)

    def _deciding(self, msgid: str) -> asyncio.Future[Any] | None:
        for candidate in (
            self._inflight.get(msgid),
            self.resolver.deciding.get(msgid),
            self.resolver.tasks.get(msgid),
            self._unstored.get(msgid),
        ):
            if candidate is not None and not candidate.done():
                return candidate
        return None

    def _not_stored(self, msgid: str, exc: GatewayError) -> OutcomeUnknown:
        log.error("outcome_not_stored", msgid=msgid, error=exc.message)
        return OutcomeUnknown(
            "结果未知：网关暂时无法保存结果（状态目录或数据库写入失败），请勿重复提交，稍后用同一msgid再次查询 "
            "(outcome unknown: the gateway could not store it yet; do not resend; ask again with the same msgid)"
        )

    async def _answer(self, row: Row, deadline: float) -> RelayAnswer:
        if row.state is RowState.IN_DOUBT and row.msgid in self.resolver.tasks:
            await self._wait_for(row.msgid, deadline)
            try:
                row = await self.outbox.get(row.msgid) or row
            except OutboxUnavailable as exc:
                raise self._not_stored(row.msgid, exc) from None
        if row.msgid in self._unstored and not row.state.final:
            raise self._not_stored(row.msgid, OutboxUnavailable("the outcome is not stored yet"))
        return told(row, resolving=row.msgid in self.resolver.tasks)

    # -- sending --------------------------------------------------------------------------------------------

    async def _process(
        self, row: Row, envelope: RequestEnvelope, info: TxInfo, deadline: float
    ) -> tuple[Row, RelayAnswer | None]:
        """Send `row` (accepted, or already claimed for its first attempt by accept) by its class's rules; the
        final row, with the platform's answer when one came. OutboxUnavailable from here on means an outcome
        waits to be stored (see _store)."""
        msgid = envelope.msgid
        rule = rule_for(info)
        if row.state is RowState.ACCEPTED and rule.ordered and envelope.psn_no:
            try:
                blocker = await self._wait_for_person(envelope.psn_no, msgid, deadline)
            except OutboxUnavailable:
                # Nothing was sent and nothing may be without the person's order: the row ends not sent (stored
                # in the background when the outbox cannot take it now), never left accepted with nobody on it.
                cause = "not sent: the outbox could not be read to keep this person's transactions in order"
                return await self._store(msgid, RowState.FAILED, outcome=cause, reason=Reason.NOT_SENT), None
            if blocker is not None:
                cause = f"not sent: an earlier transaction for this person ({blocker}) is still unresolved"
                return await self._store(msgid, RowState.FAILED, outcome=cause, reason=Reason.ORDER), None
        attempt = row.attempts
        first_cause = ""
        claimed = row.state is RowState.SENDING
        while True:
            if not claimed:
                attempt += 1
                # Never sent without this record: a failure to store it stops here, the row to end not sent.
                await self._store(msgid, RowState.SENDING, attempts=attempt, instead=RowState.FAILED)
            claimed = False
            try:
                if not self.outbox.may_send:
                    raise UpstreamError(LEASE_LAPSED)
                answer = await self.sender.submit(envelope, self._attempt_deadline(info, deadline))
            except (AmbiguousOutcome, UpstreamTimeout) as exc:
                row = await self._store(
                    msgid,
                    RowState.IN_DOUBT,
                    outcome=exc.message,
                    doubt_clock=settleclock.stamp(),
                    then=self._settler(envelope, info),
                )
                self.on_event("in_doubt", {"msgid": msgid, "infno": envelope.infno})
                if rule.resend and self._time_for_another(attempt, deadline):
                    await asyncio.sleep(self.timing.pause(attempt))
                    continue
                return await self.resolver.settle(row, envelope, info), None
            except UpstreamError as exc:
                # Nothing was sent: any transaction may be tried again while there is time.
                first_cause = first_cause or exc.message  # later attempts often only say "breaker open"
                if self._time_for_another(attempt, deadline):
                    await self._store(msgid, RowState.ACCEPTED, outcome=exc.message, instead=RowState.FAILED)
                    await asyncio.sleep(self.timing.pause(attempt))
                    continue
                last = "" if exc.message == first_cause else f" (last attempt: {exc.message})"
                failed = await self._store(
                    msgid, RowState.FAILED, outcome=f"not sent: {first_cause}{last}", reason=Reason.NOT_SENT
                )
                return failed, None
            else:
                answered = await self._store(
                    msgid,
                    RowState.ANSWERED,
                    response=answer.response.body,
                    upstream=answer.upstream,
                    outcome=f"infcode {answer.response.infcode}",
                )
                return answered, answer

    # -- resolution after a background store ----------------------------------------------------------------

    def _settler(self, envelope: RequestEnvelope, info: TxInfo) -> Callable[[Row], Awaitable[Row]]:
        return lambda row: self.resolver.settle(row, envelope, info)

    def _attempt_deadline(self, info: TxInfo, deadline: float) -> float:
        """A resendable request gets part of the time per attempt, so a dead connection leaves time to retry
        elsewhere; anything else waits the whole deadline for its one send."""
        if not rule_for(info).resend:
            return deadline
        now = asyncio.get_running_loop().time()
        return min(deadline, now + max(self.timing.min_attempt, (deadline - now) / 2))

    def _time_for_another(self, attempt: int, deadline: float) -> bool:
        remaining = deadline - asyncio.get_running_loop().time()
        # the longest pause the jitter could give, so a retry is only planned when it can still be made
        return attempt < self.timing.max_attempts and remaining > self.timing.longest_pause(attempt) + 0.05

    async def _wait_for_person(self, psn_no: str, msgid: str, deadline: float) -> str | None:
        """Wait until this person's earlier unfinished money-moving rows are final; the msgid still blocking
        at the deadline, if any."""
        while True:
            earlier = await self.outbox.in_doubt_for(psn_no, before=msgid)
            if not earlier:
                return None
            first = earlier[0]
            waiting = self._inflight.get(first.msgid) or self.resolver.tasks.get(first.msgid)
            remaining = deadline - asyncio.get_running_loop().time() - 0.05
            if remaining <= 0:
                return first.msgid
            if waiting is None:
                if self.shared_poll is None or first.state not in UNDER_WAY:
                    return first.msgid
                # The other gateway of the pair is sending it: its row is the only news (as a repeat of its msgid
                # here waits, shared.py); in doubt, it is the other's to resolve and this one refuses as alone.
                if (await until_settled(self.outbox, first, deadline - 0.05, self.shared_poll)).state in UNDER_WAY:
                    return first.msgid
                continue
            try:
                async with asyncio.timeout(remaining):
                    await asyncio.shield(waiting)
            except TimeoutError:
                return first.msgid
            except BaseException:  # noqa: BLE001 - only waiting for it to end, however it ended
                await asyncio.sleep(0)

    # -- ops ------------------------------------------------------------------------------------------------

    async def resolve(self, msgid: str, action: str, reason: str = "", wait: float = 30.0) -> Row:
        """Resolve an in-doubt row for ops (`ybgate outbox resolve`).

        auto: by the class rule now — a reversible money-moving transaction is reversed by 冲正 (waiting up
        to `wait` for the platform's answer), one with a check query is looked up; anything else has no
        automatic resolution. not_booked / booked: ops checked with the platform and state the outcome, with a
        reason kept in the row; that decision stops a resolution in progress first (resolution.py)."""
        row = await self.outbox.get(msgid)
        if row is None:
            raise NothingToResolve(f"no request with msgid {msgid} in the outbox")
        if msgid in self._unstored:
            raise NothingToResolve(
                f"{msgid}: its outcome is waiting to be stored (the outbox cannot write: is the state disk full or "
                "read-only?); it is stored as soon as the outbox writes again"
            )
        if row.state is not RowState.IN_DOUBT:
            raise NothingToResolve(f"{msgid} is {row.state.value}, not in doubt: nothing to resolve ({row.outcome})")
        if action in ("booked", "not_booked"):
            try:
                return await self.resolver.decide(row, action, reason, wait)
            except NotInDoubt as exc:
                raise NothingToResolve(exc.message) from None
        if action != "auto":
            raise NothingToResolve(f"unknown action {action!r}: auto, booked or not_booked")
        return await self.resolver.resolve_now(row, wait)

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def recover(self) -> dict[str, int]:
        """Settle what a previous run left unfinished (recovery.settle_left), before any new work."""
        counts = await settle_left(self.outbox, self.resolver, await self.outbox.unfinished(), "the gateway restarted")
        if any(counts.values()):
            log.warning("recovered", **counts)
        return counts

    async def takeover(self) -> dict[str, int]:
        """Claim and settle, by the same rules, the rows of a gateway of the pair whose lease lapsed."""
        if not (orphans := await self.outbox.orphans()):
            return {}
        counts = await settle_left(self.outbox, self.resolver, orphans, "the gateway that owned it stopped")
        log.warning("outbox_takeover", msgids=[r.msgid for r in orphans][:20], **counts)
        return counts

    async def stop(self, grace: float = 5.0) -> None:
        self.storing.stop()
        await self.resolver.stop(grace)
