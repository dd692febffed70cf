"""An ops decision wins over a resolution in progress, atomically (#28: `outbox resolve --booked` while a 冲正 was
running; seconds later the running task sent a new 2601 and the platform reversed a settlement the HIS had been
told was booked), and a 冲正 whose own answer was lost is settled by asking again (#20)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.crypto import sm3
from gateway.http1.unix_client import request
from gateway.platform.catalogue import TxClass
from gateway.relay.outbox import NotInDoubt, SqliteOutbox, reversal_client
from gateway.relay.states import RowState
from gateway.sim.server import Simulator

from conftest import Gateway, fresh


async def resolve(gateway: Gateway, msgid: str, action: str, reason: str = "") -> tuple[int, dict[str, Any]]:
    body = json.dumps({"msgid": msgid, "action": action, "reason": reason}).encode()
    reply = await request("POST", "/outbox/resolve", body, unix_socket=str(gateway.config.control_socket))
    return reply.status, json.loads(reply.body)


async def until(check: Any) -> None:
    async with asyncio.timeout(15):
        while not await check():  # noqa: ASYNC110 - polling state other tasks and the simulator write
            await asyncio.sleep(0.02)


def reversals_at_platform(gateway: Gateway) -> int:
    return sum(1 for m in gateway.sim.ledger.messages if m.infno == "2601")


async def settlement_in_doubt(gateway: Gateway) -> tuple[dict[str, Any], asyncio.Task[Any]]:
    """A settlement the platform booked whose answer was lost: in doubt, its 冲正 under way."""
    sign_no = await gateway.sign_in()
    gateway.sim.faults.set("2207", {"kind": "drop_after", "times": 1})
    doc = fresh("2207_settle_request.json", sign_no=sign_no)
    his = asyncio.create_task(gateway.post(doc))
    return doc, his


async def test_ops_booked_stops_the_running_reversal(gateway: Gateway) -> None:
    gateway.sim.faults.set("2601", {"kind": "refuse"})  # the platform refuses every 冲正 for now
    doc, his = await settlement_in_doubt(gateway)
    msgid = str(doc["msgid"])

    async def refused_once() -> bool:
        return reversals_at_platform(gateway) >= 1

    await until(refused_once)
    status, result = await resolve(gateway, msgid, "booked", "3101 shows it settled")
    assert status == 200 and result["state"] == "confirmed", result
    relay = gateway.daemon.relay
    assert relay is not None and msgid not in relay.resolver.tasks  # the old code: still running, 2601s to come
    sent = reversals_at_platform(gateway)
    gateway.sim.faults.clear("2601")  # a 2601 would now reverse it: none may leave
    outbox = gateway.daemon.outbox
    assert outbox is not None
    with pytest.raises(NotInDoubt):  # and none can be stored, so none can be sent
        await outbox.accept(
            msgid="H44030000001202601010000009999",
            infno="2601",
            tx_class=TxClass.RESOLVER,
            psn_no=None,
            body=b"{}",
            deadline=None,
            only_while_in_doubt=msgid,
        )
    cashier = json.loads((await his).body)
    assert cashier["gateway_error"] == "booked_no_answer"
    assert [s.state for s in gateway.sim.ledger.by_msgid(msgid)] == ["booked"]
    assert reversals_at_platform(gateway) == sent


async def test_ops_decision_waits_for_a_reversal_in_flight(gateway: Gateway) -> None:
    """A 2601 on its way when ops decide: its answer counts. It reversed the settlement, so "booked" is refused
    and everyone hears "reversed" (the old code confirmed it at once, then the 2601 reversed it)."""
    gateway.sim.faults.set("2601", {"kind": "delay", "delay": 1.0, "times": 1})
    doc, his = await settlement_in_doubt(gateway)
    msgid = str(doc["msgid"])
    outbox = gateway.daemon.outbox
    assert outbox is not None

    async def reversal_on_its_way() -> bool:
        return any(r.state is RowState.SENDING for r in await outbox.reversals_of(msgid))

    await until(reversal_on_its_way)
    status, result = await resolve(gateway, msgid, "booked", "looked booked a moment ago")
    assert status == 409 and "is reversed meanwhile" in result["error"], result
    assert [s.state for s in gateway.sim.ledger.by_msgid(msgid)] == ["reversed"]
    assert json.loads((await his).body)["gateway_error"] == "reversed"
    assert (await outbox.get(msgid)).state is RowState.REVERSED  # type: ignore[union-attr]


async def test_a_lost_reversal_answer_is_settled_by_asking_again(gateway: Gateway) -> None:
    """The first 2601 is booked but its answer lost: ops may not decide (that 2601 may have reversed it); the
    gateway asks again (same omsgid), and the answer settles the original and the lost 2601 alike."""
    gateway.sim.faults.set("2601", {"kind": "drop_after", "times": 1})
    doc, his = await settlement_in_doubt(gateway)
    msgid = str(doc["msgid"])
    outbox = gateway.daemon.outbox
    assert outbox is not None

    async def first_reversal_lost() -> bool:
        return any(r.state is RowState.IN_DOUBT for r in await outbox.reversals_of(msgid))

    await until(first_reversal_lost)
    gateway.sim.faults.set("2601", {"kind": "refuse"})  # hold the next ones off while ops try to decide
    status, result = await resolve(gateway, msgid, "booked", "the platform shows the settlement")
    assert status == 409 and "its answer was lost" in result["error"], result
    gateway.sim.faults.clear("2601")
    assert json.loads((await his).body)["gateway_error"] == "reversed"

    async def all_final() -> bool:
        return all(r.state.final for r in await outbox.reversals_of(msgid))

    await until(all_final)
    states = [r.state for r in await outbox.reversals_of(msgid)]
    assert (
        states[0] is RowState.CONFIRMED and states[-1] is RowState.ANSWERED
    )  # the old code: the first stayed in doubt
    assert [s.state for s in gateway.sim.ledger.by_msgid(msgid)] == ["reversed"]


async def accept_reversal(box: SqliteOutbox, msgid: str, original: str) -> None:
    """A 2601 for `original` as the resolver stores it, accepted and no further."""
    await box.accept(
        msgid=msgid,
        infno="2601",
        tx_class=TxClass.RESOLVER,
        psn_no="P",
        body=b"{}",
        deadline=None,
        client=reversal_client(original),
    )


async def test_lost_reversals_of_a_final_original_are_settled_at_start(sim: Simulator, short_tmp: Any) -> None:
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform)
    box = SqliteOutbox(config.state_dir / "outbox.db", digest=sm3)
    await box.start()
    original, lost = "H44030000001202601010000000001", "H44030000001202601010000009001"
    await box.accept(msgid=original, infno="2207", tx_class=TxClass.MONEY_MOVING, psn_no="P", body=b"{}", deadline=None)
    await accept_reversal(box, lost, original)
    for mid in (original, lost):
        await box.move(mid, RowState.SENDING)
        await box.move(mid, RowState.IN_DOUBT)
    await box.move(original, RowState.REVERSED, outcome="reversed by 2601 msgid H44030000001202601010000009002")
    await box.stop()
    daemon = Daemon(config)
    await daemon.start()
    try:
        assert daemon.outbox is not None
        row = await daemon.outbox.get(lost)
        assert row is not None and row.state is RowState.CONFIRMED and "the reversal took effect" in (row.outcome or "")
    finally:
        await daemon.stop(grace=1.0)


async def test_a_restart_with_a_cut_reversal_behind_other_work_starts(sim: Simulator, short_tmp: Any) -> None:
    """Found by the crash harness (`ybgate bench crash`): a gateway killed while a 2601 was accepted but not sent
    refused to start again ("IllegalMove: failed -> failed"). Recovery started the original's fresh 冲正 while
    still walking the rows it had read; that 2601's answer settled the cut one, and the walk then moved it again.
    Here the cut 2601 sits behind enough other unfinished work that the fresh 冲正 answers first (the old code
    fails daemon.start)."""
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform)
    box = SqliteOutbox(config.state_dir / "outbox.db", digest=sm3)
    await box.start()
    signin = sim.platform.process(fresh("9001_signin_request.json"))
    doc = fresh("2207_settle_request.json") | {"sign_no": signin["output"]["signinoutb"]["sign_no"]}
    original = str(doc["msgid"])
    assert str(sim.platform.process(doc)["infcode"]) == "0"  # the platform booked it; its answer was lost
    body = json.dumps(doc, ensure_ascii=False).encode()
    await box.accept(msgid=original, infno="2207", tx_class=TxClass.MONEY_MOVING, psn_no="P", body=body, deadline=None)
    await box.move(original, RowState.SENDING)
    for n in range(300):  # queries cut mid-send by the same kill: each is two moves at recovery
        query = f"H44030000001202601010000{n:06d}"
        await box.accept(msgid=query, infno="1101", tx_class=TxClass.SAFE, psn_no="Q", body=b"{}", deadline=None)
        await box.move(query, RowState.SENDING)
    cut = "H44030000001202601019999999001"
    await accept_reversal(box, cut, original)
    await box.stop()
    daemon = Daemon(config)
    await daemon.start()
    try:
        outbox = daemon.outbox
        assert outbox is not None

        async def reversed_() -> bool:
            row = await outbox.get(original)
            return row is not None and row.state is RowState.REVERSED

        await until(reversed_)
        row = await outbox.get(cut)
        assert row is not None and row.state is RowState.FAILED, row
        assert [s.state for s in sim.ledger.by_msgid(original)] == ["reversed"]
    finally:
        await daemon.stop(grace=1.0)
