"""Two gateways on one PostgreSQL outbox, as a pair of 前置机: each owns the rows it works on under a lease; a
gateway that starts leaves the running one's rows alone, and when one dies the other claims its unfinished rows
once the lease has lapsed and settles them by the class rules — a real process, SIGKILLed mid-settlement."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest_asyncio
from daemonproc import free_port, ready, start, write_config
from pg_pair import Nodes, on_postgresql

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.http1.unix_client import request
from gateway.relay.pg_outbox import PgOutbox
from gateway.relay.states import RowState
from gateway.sim.server import Simulator

from conftest import PLATFORM_PATH, Gateway, fresh, until

LEASE = 1.5


@pytest_asyncio.fixture
async def roots() -> AsyncIterator[list[Path]]:
    made = [Path(tempfile.mkdtemp(prefix="ybg-")) for _ in range(2)]
    yield made
    for root in made:
        shutil.rmtree(root, ignore_errors=True)


async def gateway_on(sim: Simulator, root: Path, dsn_file: Path, node: str) -> Gateway:
    assert sim.addresses is not None
    config = on_postgresql(demo_config(root, sim.addresses.platform, level="warning"), dsn_file, node, lease=LEASE)
    daemon = Daemon(config)
    await daemon.start()
    return Gateway(daemon, config, sim)


def reversals(sim: Simulator) -> int:
    return sum(1 for m in sim.ledger.messages if m.infno == "2601")


async def test_a_gateway_starting_leaves_the_running_ones_rows_alone(
    sim: Simulator, pg_dsn_file: Path, roots: list[Path]
) -> None:
    # Node A has a settlement at the platform when node B (re)starts. The old start-up recovery took every
    # unfinished row in the database: B moved A's row to in doubt and sent a 冲正 for a settlement A was about to
    # hear booked.
    a = await gateway_on(sim, roots[0], pg_dsn_file, "node-a")
    b: Gateway | None = None
    try:
        sign_no = await a.sign_in()
        sim.faults.set("2207", {"kind": "delay", "delay": 1.0, "times": 1})
        settle = fresh("2207_settle_request.json", sign_no=sign_no)
        posted = asyncio.create_task(a.post(settle))
        await until(lambda: any(m.infno == "2207" for m in sim.ledger.messages) or len(sim.wire) >= 2)
        b = await gateway_on(sim, roots[1], pg_dsn_file, "node-b")
        reply = await posted
        assert str(json.loads(reply.body)["infcode"]) == "0", reply.body
        assert [s.state for s in sim.ledger.by_msgid(settle["msgid"])] == ["booked"]
        assert reversals(sim) == 0
        again = await b.post(settle)
        assert again.body == reply.body
    finally:
        for gw in (a, b):
            if gw is not None:
                await gw.daemon.stop(grace=1.0)


async def test_the_survivor_settles_what_a_killed_gateway_left_in_flight(
    sim: Simulator, pg_dsn_file: Path, roots: list[Path]
) -> None:
    """Node A (a real process) is SIGKILLed while a settlement it sent is being booked at the platform. Node B
    claims the row once A's lease has lapsed and settles it by the settlement's rule (冲正 after the settle
    clock); the ledger shows one booking, undone once; the HIS asking B with the same msgid gets that answer."""
    assert sim.addresses is not None
    b = await gateway_on(sim, roots[1], pg_dsn_file, "node-b")
    extra = f"relay: {{outbox: {{backend: postgresql, dsn_file: {pg_dsn_file}, node: node-a, lease: {LEASE}}}}}\n"
    cfg = write_config(roots[0], sim.addresses.platform, free_port(), extra)
    proc = await start(cfg)
    try:
        sock = str(roots[0] / "run" / "api.sock")
        sign_no = await ready(sock)
        sim.faults.set("2207", {"kind": "delay", "delay": 1.0, "times": 1})
        settle = fresh("2207_settle_request.json", sign_no=sign_no)
        posted = asyncio.create_task(request("POST", PLATFORM_PATH, json.dumps(settle).encode(), unix_socket=sock))
        await until(lambda: any(path for path, _h, body in sim.wire if settle["msgid"].encode() in body))
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        killed = time.monotonic()
        posted.cancel()
        assert b.daemon.outbox is not None
        row = await b.daemon.outbox.get(settle["msgid"])
        assert row is not None and row.state is RowState.SENDING  # A's, in flight when it died

        async def settled() -> bool:
            found = await b.daemon.outbox.get(settle["msgid"])
            return found is not None and found.state.final

        await until(settled, within=60)
        taken = time.monotonic() - killed
        booked = sim.ledger.by_msgid(settle["msgid"])
        assert [s.state for s in booked] == ["reversed"], booked
        answer = json.loads((await b.post(json.dumps(settle).encode())).body)  # the very bytes A was sent
        assert answer["gateway_error"] == "reversed", answer
        assert len(sim.ledger.by_msgid(settle["msgid"])) == 1
        print(f"settled by the survivor {taken:.2f} s after the kill (lease {LEASE} s)")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await b.daemon.stop(grace=1.0)


async def test_a_gateway_stopping_hands_its_rows_over_at_once(pg_dsn_file: Path) -> None:
    # A stopping gateway drops its lease: what it leaves unfinished is the other's to claim without waiting.
    from gateway.crypto import sm3
    from gateway.platform.catalogue import TxClass

    a = PgOutbox(pg_dsn_file, digest=sm3, node="node-a", lease=LEASE)
    b = PgOutbox(pg_dsn_file, digest=sm3, node="node-b", lease=60.0)
    await a.start()
    await b.start()
    try:
        msgid = f"H44030000001{os.getpid():018d}"[:30]
        await a.accept(
            msgid=msgid, infno="2207", tx_class=TxClass.MONEY_MOVING, psn_no="p1", body=b"{}", deadline=None, send=True
        )
        assert await b.orphans() == []  # A runs: its row is not B's to take
        assert [r.msgid for r in await b.unfinished()] == []
        await a.stop()
        assert [r.msgid for r in await b.orphans()] == [msgid]
        assert await b.orphans() == []  # claimed once
    finally:
        await b.stop()


async def test_a_gateway_whose_lease_cannot_be_renewed_stops_sending(pg_dsn_file: Path) -> None:
    # The database stops answering this gateway's renewals (here: a transaction of the test's holds outbox_node
    # locked, so each renewal waits, as behind a stalled or unreachable server). Before its lease can have lapsed
    # in the database's clock the gateway no longer counts on it: may_send turns false, and the relay sends
    # nothing (durable.py checks it before every attempt); renewals resume when the database does.
    import asyncpg

    from gateway.crypto import sm3

    a = PgOutbox(pg_dsn_file, digest=sm3, node="node-a", lease=LEASE)
    await a.start()
    blocker = await asyncpg.connect((await asyncio.to_thread(pg_dsn_file.read_text)).strip())
    try:
        assert a.may_send
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("LOCK TABLE outbox_node IN ACCESS EXCLUSIVE MODE")
        await until(lambda: not a.may_send, within=10)
        await tx.rollback()
        await until(lambda: a.may_send, within=10)
    finally:
        await blocker.close()
        await a.stop()


async def test_run_once_work_runs_on_one_gateway_at_a_time(pg_dsn_file: Path, tmp_path: Path) -> None:
    # Reconciliation and pruning take the job's lock in the shared database: while one gateway of the pair holds
    # it, the other skips its turn (its schedule tries again later). A local SQLite outbox always runs its own.
    from datetime import date

    from gateway.crypto import sm3
    from gateway.recon.schedule import ReconSchedule
    from gateway.relay.outbox import SqliteOutbox

    a = PgOutbox(pg_dsn_file, digest=sm3, node="node-a", lease=LEASE)
    b = PgOutbox(pg_dsn_file, digest=sm3, node="node-b", lease=LEASE)
    local = SqliteOutbox(tmp_path / "outbox.db", digest=sm3)
    for box in (a, b, local):
        await box.start()
    try:
        async with a.alone("recon") as first:
            assert first
            async with b.alone("recon") as second, b.alone("prune") as other_job:
                assert not second and other_job  # one lock per job

            class Ran:  # stands in for the reconciler: only whether the schedule called it is looked at here
                def __init__(self) -> None:
                    self.days: list[date] = []

                async def run(self, day: date) -> None:
                    self.days.append(day)

            ran = Ran()
            skipped = ReconSchedule(ran, tmp_path, alone=b.alone)  # type: ignore[arg-type]
            assert await skipped.run_alone(date(2026, 12, 1)) is None and ran.days == []
        async with b.alone("recon") as now_free:
            assert now_free
        async with local.alone("recon") as own:
            assert own
    finally:
        for box in (a, b, local):
            await box.stop()


async def test_the_gateways_of_a_pair_mint_their_own_msgids_in_slices_of_their_own(pg_nodes: Nodes) -> None:
    """Both gateways mint msgids for what they send themselves (冲正, check queries, sign-in). Each minted in the
    whole gateway range, so in the same second the two made the same ids: `bench ha` (200 kills) saw one msgid
    reach the platform as a 2601 from one gateway and a 5201 from the other."""
    a, b = await pg_nodes.start("a"), await pg_nodes.start("b")
    now = datetime(2026, 12, 5, 8, 0, 0)
    minted = [{gw.daemon.msgids.make("H44030000001", now) for _ in range(200)} for gw in (a, b)]
    assert len(minted[0]) == len(minted[1]) == 200
    assert not minted[0] & minted[1]


async def test_a_gateway_whose_slice_was_taken_while_its_lease_lapsed_moves_to_a_free_one(pg_dsn_file: Path) -> None:
    import asyncpg

    from gateway.crypto import sm3
    from gateway.relay.pg_connect import read_dsn

    a = PgOutbox(pg_dsn_file, digest=sm3, node="node-a", lease=60.0)
    await a.start()
    moved: list[int] = []
    a.lease.on_slot = moved.append
    b = PgOutbox(pg_dsn_file, digest=sm3, node="node-b", lease=60.0)
    try:
        assert a.lease.slot == 0
        # A loses the database for longer than its lease: its lease lapses there, and B, starting meanwhile,
        # takes the free slice
        conn = await asyncpg.connect(read_dsn(pg_dsn_file))
        await conn.execute("UPDATE outbox_node SET lease_until = 0 WHERE node = $1", a.node)
        await conn.close()
        await b.start()
        assert b.lease.slot == 0
        await a.lease.renew()  # A is back
        assert a.lease.slot == moved[-1] == 1
        assert b.lease.slot == 0
    finally:
        await b.stop()
        await a.stop()
