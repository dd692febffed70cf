"""A state disk that fills up while a settlement is at the platform (#20): the HIS never hears "nothing was
accepted" for a request that may have left, and the outcome is stored as soon as space returns, without a restart.

The state directory is a real tmpfs of a few MiB the test mounts (root), filled with a real file."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from diskfull import fill, small_tmpfs

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.crypto import sm3
from gateway.errors import GatewayError
from gateway.platform.catalogue import TxClass
from gateway.platform.envelope import decode_request
from gateway.relay.outbox import OutboxUnavailable, SqliteOutbox
from gateway.relay.states import RowState
from gateway.sim.server import Simulator

from conftest import Gateway, fresh

pytestmark = pytest.mark.root


@pytest.fixture
def small_disk(short_tmp: Path) -> Iterator[Path]:
    with small_tmpfs(short_tmp / "st", "4m") as where:
        yield where


@pytest_asyncio.fixture
async def gateway_on_small_disk(sim: Simulator, small_disk: Path) -> AsyncIterator[Gateway]:
    assert sim.addresses is not None
    config = demo_config(small_disk, sim.addresses.platform, level="warning")
    daemon = Daemon(config)
    await daemon.start()
    yield Gateway(daemon, config, sim)
    await daemon.stop(grace=1.0)


async def test_a_full_disk_while_the_settlement_is_out_is_outcome_unknown(
    gateway_on_small_disk: Gateway, small_disk: Path
) -> None:
    gateway = gateway_on_small_disk
    sign_no = await gateway.sign_in()
    gateway.sim.faults.set("2207", {"kind": "delay", "delay": 0.5, "times": 1})
    doc = fresh("2207_settle_request.json", sign_no=sign_no)
    his = asyncio.create_task(gateway.post(doc))
    outbox = gateway.daemon.outbox
    assert outbox is not None

    async def at_the_platform() -> bool:
        return any(m.msgid == doc["msgid"] for m in gateway.sim.ledger.messages) or (
            (row := await outbox.get(str(doc["msgid"]))) is not None and row.state is RowState.SENDING
        )

    async with asyncio.timeout(10):
        while not await at_the_platform():  # noqa: ASYNC110 - polling what other tasks write
            await asyncio.sleep(0.01)
    filler = fill(small_disk)
    body = json.loads((await his).body)
    # The old code: 503 outbox_unavailable, "nothing was accepted", for a settlement the platform booked.
    assert body["gateway_error"] == "outcome_unknown", body
    assert "同一msgid" in body["err_msg"]
    assert [s.state for s in gateway.sim.ledger.by_msgid(str(doc["msgid"]))] == ["booked"]
    assert (gateway.daemon.metrics.registry.get_sample_value("ybgate_outbox_write_failures_total") or 0) >= 1

    again = json.loads((await gateway.post(doc)).body)
    assert again["gateway_error"] == "outcome_unknown"  # still not stored: the same truthful answer
    os.unlink(filler)  # space returns; no restart
    async with asyncio.timeout(15):
        while (await outbox.get(str(doc["msgid"]))).state is not RowState.ANSWERED:  # type: ignore[union-attr]  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    answered = await gateway.post(doc)
    assert answered.status == 200 and str(json.loads(answered.body)["infcode"]) == "0"
    assert [m.infno for m in gateway.sim.ledger.messages].count("2601") == 0  # nothing to undo: it was answered
    assert [s.state for s in gateway.sim.ledger.by_msgid(str(doc["msgid"]))] == ["booked"]


async def test_a_full_state_disk_refuses_the_start_in_plain_words(sim: Simulator, small_disk: Path) -> None:
    assert sim.addresses is not None
    config = demo_config(small_disk, sim.addresses.platform, level="warning")
    daemon = Daemon(config)
    await daemon.start()
    await daemon.stop(grace=1.0)
    fill(small_disk)
    with pytest.raises(OutboxUnavailable, match="no space left on the state disk") as refused:
        await Daemon(config).start()
    assert "disk I/O error" not in refused.value.message  # what SQLite says, and what ops saw before


async def test_the_wal_gives_its_space_back_once_writes_succeed_again(small_disk: Path) -> None:
    """A WAL keeps its file size when it starts over, so the space a disk-full episode's WAL took would stay taken
    after ops freed the disk, and fill it again. Once a write succeeds after failures, the WAL is truncated."""
    box = SqliteOutbox(small_disk / "outbox.db", digest=sm3)
    await box.start()
    wal = small_disk / "outbox.db-wal"

    async def put(msgid: str, body: bytes) -> None:
        await box.accept(msgid=msgid, infno="1101", tx_class=TxClass.SAFE, psn_no=None, body=body, deadline=None)

    try:
        n = 0
        while not wal.exists() or wal.stat().st_size < 2**20:  # well under a checkpoint's worth of commits
            n += 1
            await put(f"M{n:05d}", os.urandom(16384))
        filler = fill(small_disk)
        with pytest.raises(OutboxUnavailable):
            await put("M-FULL", os.urandom(16384))
        assert box.write_failures >= 1
        grown = wal.stat().st_size
        filler.unlink()  # ops free the disk
        await put("M-AGAIN", b"{}")
        async with asyncio.timeout(10):
            while True:
                if wal.stat().st_size < grown:
                    break
                await asyncio.sleep(0.02)
        assert wal.stat().st_size == 0
        assert await box.get("M-AGAIN") is not None and await box.get(f"M{n:05d}") is not None
    finally:
        await box.stop()


def fee_upload(sign_no: str, psn_no: str, sn: str) -> dict[str, object]:
    doc = fresh("2207_settle_request.json", infno="2204", sign_no=sign_no)
    line = {"feedetl_sn": sn, "mdtrt_id": "M1", "psn_no": psn_no, "det_item_fee_sumamt": "12.00"}
    doc["input"] = {"feedetail": [line]}
    return doc


async def test_a_repeat_is_never_told_not_accepted_while_the_disk_is_full(
    gateway_on_small_disk: Gateway, small_disk: Path
) -> None:
    """The crash harness's disk-full round saw a 2204 the platform had booked answered 503 outbox_unavailable
    ("nothing was accepted") when the cashier asked again with the same msgid: the repeat's lookup joined a
    commit group with new requests whose rows did not fit, and the whole group was refused. The repeat and the
    new requests reach the outbox together here, as they do under load."""
    gateway = gateway_on_small_disk
    relay, outbox = gateway.daemon.relay, gateway.daemon.outbox
    assert relay is not None and outbox is not None
    sign_no = await gateway.sign_in()
    booked = fee_upload(sign_no, "44000000000000000031", "0000000001")
    first = json.loads((await gateway.post(booked)).body)
    assert str(first["infcode"]) == "0"
    assert [f["msgid"] for f in gateway.sim.ledger.fees] == [booked["msgid"]]

    filler = fill(small_disk)
    loop = asyncio.get_running_loop()
    again = decode_request(json.dumps(booked, ensure_ascii=False).encode())
    new = [
        decode_request(json.dumps(fee_upload(sign_no, "44000000000000000032", f"{n:010d}")).encode())
        for n in range(2, 40)
    ]
    # Together, as under load: one commit group for the repeat's lookup and the new rows that do not fit.
    answers = await asyncio.gather(
        relay.submit(again, loop.time() + 5), *(relay.submit(e, loop.time() + 5) for e in new), return_exceptions=True
    )
    # New work is refused as before, every upload of it: nothing of it was accepted (a 503, not a 504).
    assert all(isinstance(a, GatewayError) and a.kind == "outbox_unavailable" for a in answers[1:]), answers[1:]
    repeat = answers[0]
    # The old code: outbox_unavailable, "nothing was accepted", for fee lines the platform holds.
    if isinstance(repeat, BaseException):
        assert isinstance(repeat, GatewayError) and repeat.kind == "outcome_unknown", repr(repeat)
    else:
        assert str(repeat.response.infcode) == "0"

    os.unlink(filler)  # space returns; no restart: the same msgid gets the platform's answer
    replay = json.loads((await gateway.post(booked)).body)
    assert str(replay["infcode"]) == "0", replay
    row = await outbox.get(str(booked["msgid"]))
    assert row is not None and row.state is RowState.ANSWERED
    assert [f["msgid"] for f in gateway.sim.ledger.fees].count(booked["msgid"]) == 1


@pytest.mark.parametrize(
    ("fault", "final"),
    [("drop_after", RowState.CONFIRMED), ("drop_before", RowState.ANSWERED)],
    ids=["held-confirmed", "absent-resent"],
)
async def test_a_check_that_meets_a_full_disk_is_stored_when_space_returns(
    sim: Simulator, small_disk: Path, fault: str, final: RowState
) -> None:
    """The crash harness's disk-full round left 2204s in doubt for good (until a restart): the answer was lost,
    the check query (5204) ran while the disk was full, and storing what it found failed — "confirmed" when the
    platform held the fee lines, the new send when it did not — and the check task ended on that error with
    nothing left to retry it. The decision (or the resend) now waits for the disk and is made once it writes."""
    assert sim.addresses is not None
    config = demo_config(small_disk, sim.addresses.platform, level="warning")
    config = config.model_copy(update={"relay": config.relay.model_copy(update={"reversal_settle": 1.0})})
    daemon = Daemon(config)
    await daemon.start()
    try:
        gateway, outbox = Gateway(daemon, config, sim), daemon.outbox
        assert outbox is not None
        sim.faults.set("2204", {"kind": fault, "times": 1})  # its answer lost; booked (after) or not (before)
        doc = fee_upload(await gateway.sign_in(), "44000000000000000033", "0000000001")
        msgid = str(doc["msgid"])
        his = asyncio.create_task(gateway.post(doc))
        async with asyncio.timeout(10):
            while (row := await outbox.get(msgid)) is None or row.state is not RowState.IN_DOUBT:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        filler = fill(small_disk)  # before the check runs (after the settle time)
        failures = daemon.metrics.registry.get_sample_value
        async with asyncio.timeout(15):
            while not (failures("ybgate_outbox_write_failures_total") or 0):  # noqa: ASYNC110 - the check's store
                await asyncio.sleep(0.02)
        assert [m.infno for m in sim.ledger.messages].count("5204") == 1  # it was the check that met the full disk
        assert json.loads((await his).body)["gateway_error"] == "outcome_unknown"
        os.unlink(filler)  # space returns; no restart
        async with asyncio.timeout(15):  # the old code: in doubt for ever
            while (await outbox.get(msgid)).state is not final:  # type: ignore[union-attr]  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        again = json.loads((await gateway.post(doc)).body)
        if final is RowState.CONFIRMED:
            assert again["gateway_error"] == "booked_no_answer", again
        else:
            assert str(again["infcode"]) == "0", again  # sent again once the platform showed it never had it
        assert [f["msgid"] for f in sim.ledger.fees] == [msgid]
    finally:
        await daemon.stop(grace=1.0)
