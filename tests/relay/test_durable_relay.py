"""The exactly-once relay through the real socket and simulator: replay by msgid, safe resends, per-person
ordering behind a 冲正 in progress, and recovery of in-doubt settlements after a restart."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.audit.log import audit_files
from gateway.crypto import sm3
from gateway.platform.catalogue import TxClass
from gateway.relay.outbox import SqliteOutbox
from gateway.relay.states import RowState
from gateway.sim.server import Simulator

from conftest import Gateway, fresh, until, ybgate_output


def infnos(sim: Simulator) -> list[str]:
    return [m.infno for m in sim.ledger.messages]


async def test_same_msgid_is_answered_from_the_outbox(gateway: Gateway) -> None:
    sign_no = await gateway.sign_in()
    doc = fresh("1101_query_request.json", sign_no=sign_no)
    first, second = await gateway.post(doc), await gateway.post(doc)
    assert first.status == second.status == 200 and first.body == second.body
    assert infnos(gateway.sim).count("1101") == 1


async def test_same_msgid_different_body_is_refused(gateway: Gateway) -> None:
    sign_no = await gateway.sign_in()
    doc = fresh("1101_query_request.json", sign_no=sign_no)
    await gateway.post(doc)
    other = await gateway.post(doc | {"opter": "0099"})
    assert other.status == 409
    assert json.loads(other.body)["gateway_error"] == "msgid_conflict"
    assert infnos(gateway.sim).count("1101") == 1


async def test_concurrent_duplicates_wait_for_the_one_in_flight(gateway: Gateway) -> None:
    sign_no = await gateway.sign_in()
    gateway.sim.faults.set("2207", {"kind": "delay", "delay": 0.5, "times": 1})
    doc = fresh("2207_settle_request.json", sign_no=sign_no)
    replies = await asyncio.gather(*(gateway.post(doc) for _ in range(5)))
    assert {r.status for r in replies} == {200} and len({r.body for r in replies}) == 1
    assert len(gateway.sim.ledger.by_msgid(doc["msgid"])) == 1


async def test_safe_transaction_is_resent_after_a_lost_answer(gateway: Gateway) -> None:
    sign_no = await gateway.sign_in()
    gateway.sim.faults.set("1101", {"kind": "drop_after", "times": 1})
    reply = await gateway.post(fresh("1101_query_request.json", sign_no=sign_no))
    assert reply.status == 200 and json.loads(reply.body)["output"]["baseinfo"]["psn_no"]
    assert infnos(gateway.sim).count("1101") == 2


async def test_new_settlement_waits_for_the_persons_reversal(gateway: Gateway) -> None:
    sign_no = await gateway.sign_in()
    gateway.sim.faults.set("2207", {"kind": "drop_after", "times": 1})
    gateway.sim.faults.set("2601", {"kind": "delay", "delay": 0.8, "times": 1})
    first = fresh("2207_settle_request.json", sign_no=sign_no)
    second = fresh("2207_settle_request.json", sign_no=sign_no)
    task = asyncio.create_task(gateway.post(first))
    await until(lambda: "2601" in infnos(gateway.sim))  # the first is being reversed now (its 2601 held 0.8 s)
    reply2 = await gateway.post(second)
    reply1 = await task
    assert json.loads(reply1.body)["gateway_error"] == "reversed"
    assert reply2.status == 200 and str(json.loads(reply2.body)["infcode"]) == "0"
    order = [(m.infno, m.msgid) for m in gateway.sim.ledger.messages if m.infno in ("2207", "2601")]
    assert order[0] == ("2207", first["msgid"]) and order[1][0] == "2601" and order[2] == ("2207", second["msgid"])
    assert [s.state for s in gateway.sim.ledger.by_msgid(first["msgid"])] == ["reversed"]
    assert [s.state for s in gateway.sim.ledger.by_msgid(second["msgid"])] == ["booked"]


async def test_recovery_after_a_crash_mid_settlement(sim: Simulator, short_tmp: Path) -> None:
    """The outbox a killed gateway left: one settlement mid-send (the platform booked it), one never sent."""
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform)
    sign_no = sim.platform.process(fresh("9001_signin_request.json"))["output"]["signinoutb"]["sign_no"]
    booked = fresh("2207_settle_request.json", sign_no=sign_no)
    unsent = fresh("2207_settle_request.json", sign_no=sign_no)
    box = SqliteOutbox(config.state_dir / "outbox.db", digest=sm3)
    await box.start()
    for doc in (booked, unsent):
        body = json.dumps(doc, ensure_ascii=False).encode()
        await box.accept(
            msgid=doc["msgid"],
            infno="2207",
            tx_class=TxClass.MONEY_MOVING,
            psn_no="44000000000000000012",
            body=body,
            deadline=None,
        )
    await box.move(booked["msgid"], RowState.SENDING, attempts=1)
    sim.platform.process(booked)  # it reached the platform before the crash
    await box.stop()

    daemon = Daemon(config)
    await daemon.start()
    try:
        gw = Gateway(daemon, config, sim)
        for _ in range(50):
            if [s.state for s in sim.ledger.by_msgid(booked["msgid"])] == ["reversed"]:
                break
            await asyncio.sleep(0.05)
        assert [s.state for s in sim.ledger.by_msgid(booked["msgid"])] == ["reversed"]
        retried = await gw.post(booked)  # the HIS asks again with the same msgid
        assert json.loads(retried.body)["gateway_error"] == "reversed"
        never = await gw.post(unsent)
        assert never.status == 502 and "restarted" in json.loads(never.body)["err_msg"]
        assert sim.ledger.by_msgid(unsent["msgid"]) == []  # never sent, not even on recovery
    finally:
        await daemon.stop(1)


async def test_recovery_resolves_check_first_uploads_by_query(sim: Simulator, short_tmp: Path) -> None:
    """Two fee uploads a killed gateway left mid-send: the platform took one, the other never arrived. On start
    the platform is asked (5204) for each: the one it holds is confirmed, the other is sent again, once. The
    decision names the query it rests on by the msgid the platform logged it under, in the row and its audit
    entry: the gateway's own messages are traceable too."""
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform)
    config = config.model_copy(update={"relay": config.relay.model_copy(update={"reversal_settle": 0.2})})
    sign_no = sim.platform.process(fresh("9001_signin_request.json"))["output"]["signinoutb"]["sign_no"]

    def upload(sn: str) -> dict[str, object]:
        line = {"feedetl_sn": sn, "mdtrt_id": "MD-RECOVERY-1", "psn_no": "44000000000000000012"}
        return fresh("2207_settle_request.json", infno="2204", sign_no=sign_no, input={"feedetail": [line]})

    taken, lost = upload("1"), upload("2")
    box = SqliteOutbox(config.state_dir / "outbox.db", digest=sm3)
    await box.start()
    for doc in (taken, lost):
        body = json.dumps(doc, ensure_ascii=False).encode()
        await box.accept(
            msgid=doc["msgid"], infno="2204", tx_class=TxClass.CHECK_FIRST, psn_no=None, body=body, deadline=None
        )
        await box.move(doc["msgid"], RowState.SENDING, attempts=1)
    sim.platform.process(taken)  # it reached the platform before the crash; `lost` did not
    await box.stop()

    daemon = Daemon(config)
    await daemon.start()
    try:
        assert daemon.outbox is not None
        async with asyncio.timeout(10):
            while True:
                rows = [await daemon.outbox.get(str(d["msgid"])) for d in (taken, lost)]
                if all(r is not None and r.state.final for r in rows):
                    break
                await asyncio.sleep(0.05)
        confirmed, answered = rows
        assert confirmed is not None and answered is not None
        assert confirmed.state is RowState.CONFIRMED and "5204 lists" in (confirmed.outcome or "")
        assert answered.state is RowState.ANSWERED
        held = [f["feedetl_sn"] for f in sim.ledger.fees]
        assert sorted(held) == ["1", "2"]  # each line once: the taken one was not sent again
        assert infnos(sim).count("5204") == 2
        answer = await Gateway(daemon, config, sim).post(taken)  # the HIS asks again: booked, do not resend
        assert json.loads(answer.body)["gateway_error"] == "booked_no_answer"
        queries = {m.msgid for m in sim.ledger.messages if m.infno == "5204"}
        asked = re.search(r"asked as (\w+)", confirmed.outcome or "")
        assert asked is not None and asked.group(1) in queries, (confirmed.outcome, queries)
    finally:
        await daemon.stop(1)
    audited = [
        entry
        for path in audit_files(config.audit_dir)
        for entry in map(json.loads, path.read_bytes().splitlines())
        if entry.get("msgid") == taken["msgid"] and entry.get("state") == "confirmed"
    ]
    assert len(audited) == 1 and asked.group(1) in audited[0]["outcome"]


async def test_outbox_cli_lists_and_shows_masked(gateway: Gateway, short_tmp: Path) -> None:
    sign_no = await gateway.sign_in()
    doc = fresh("1101_query_request.json", sign_no=sign_no)
    await gateway.post(doc)
    cfg = short_tmp / "c.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {gateway.config.state_dir}\n"
        "upstreams: [{name: s, host: 127.0.0.1, port: 1, transport: tcp}]\n"
    )

    async def cli(*args: str) -> tuple[int, str, str]:
        return await ybgate_output("outbox", *args, "--config", str(cfg))

    code, out, _ = await cli("list", "--state", "answered")
    assert code == 0 and doc["msgid"] in out and "1101" in out and "safe" in out
    local = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}"  # local time with its offset, not epoch seconds
    assert re.match(local + "  " + doc["msgid"], out), out
    code, out, _ = await cli("show", doc["msgid"])
    shown = json.loads(out)
    assert code == 0 and shown["state"] == "answered" and shown["response"]["output"]["baseinfo"]
    assert re.fullmatch(local, shown["created"]) and re.fullmatch(local, shown["updated"]), out
    assert shown["request"]["input"]["data"]["certno"] == "440***********1234"  # masked, as in logs
    assert "李四" not in out
    code, _, err = await cli("show", "H" * 30)
    assert code == 1 and "no request with msgid" in err


async def wait_for_state(gateway: Gateway, msgid: str, state: RowState) -> None:
    assert gateway.daemon.outbox is not None
    async with asyncio.timeout(10):
        while (row := await gateway.daemon.outbox.get(msgid)) is None or row.state is not state:  # noqa: ASYNC110 - polling the outbox another task writes
            await asyncio.sleep(0.02)


async def test_queued_settlements_for_a_person_go_in_order(gateway: Gateway) -> None:
    """Two settlements queued behind a 冲正 in progress wait for the earlier work only, not for each other: both
    are booked in the order they came (on the old code they blocked each other until the deadline)."""
    sign_no = await gateway.sign_in()
    gateway.sim.faults.set("2207", {"kind": "drop_after", "times": 1})
    gateway.sim.faults.set("2601", {"kind": "delay", "delay": 0.8, "times": 1})
    first, second, third = (fresh("2207_settle_request.json", sign_no=sign_no) for _ in range(3))
    task1 = asyncio.create_task(gateway.post(first))
    await wait_for_state(gateway, first["msgid"], RowState.IN_DOUBT)
    task2 = asyncio.create_task(gateway.post(second))
    await wait_for_state(gateway, second["msgid"], RowState.ACCEPTED)
    reply3 = await gateway.post(third)
    reply1, reply2 = await task1, await task2
    assert json.loads(reply1.body)["gateway_error"] == "reversed"
    for reply in (reply2, reply3):
        assert reply.status == 200 and str(json.loads(reply.body)["infcode"]) == "0", reply.body
    order = [m.msgid for m in gateway.sim.ledger.messages if m.infno == "2207"]
    assert order == [first["msgid"], second["msgid"], third["msgid"]]
