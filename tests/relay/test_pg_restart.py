"""The outbox's PostgreSQL restarted under requests (#26): an operator's `pg_ctl restart -m fast` while cashiers
post settlements and queries. Every request gets an answer in the platform's shape — the platform's own, or
`outbox_unavailable` for work the database could not take — never a cut connection; nothing acknowledged is lost,
and what was in flight settles once the database is back. A real cluster of its own (the session's is shared)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pg_cluster
import pytest_asyncio
from pg_pair import on_postgresql

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.http1.client import NoResponse
from gateway.sim.server import Simulator

from conftest import Gateway, fresh

CASHIERS = 6
RESTARTS = 3


@pytest_asyncio.fixture
async def gateway_on(own_pg: pg_cluster.Cluster, sim: Simulator) -> AsyncIterator[Gateway]:
    assert sim.addresses is not None
    root = Path(tempfile.mkdtemp(prefix="ybg-"))
    dsn_file = own_pg.dsn_file(root / "outbox.dsn", "restarted")
    config = on_postgresql(demo_config(root, sim.addresses.platform, level="warning"), dsn_file)
    daemon = Daemon(config)
    await daemon.start()
    try:
        yield Gateway(daemon, config, sim)
    finally:
        await daemon.stop(grace=1.0)
        shutil.rmtree(root, ignore_errors=True)


async def test_a_database_restart_under_requests_answers_every_request(
    gateway_on: Gateway, own_pg: pg_cluster.Cluster
) -> None:
    gw = gateway_on
    sign_no = await gw.sign_in()
    stop = asyncio.Event()
    kinds: Counter[str] = Counter()
    cut: list[str] = []
    answered: dict[str, str] = {}
    unknown: list[dict[str, object]] = []  # what the HIS asks again, with the same msgid, once the database is back

    async def cashier(desk: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            name = "2207_settle_request.json" if n % 2 else "1101_query_request.json"
            doc = fresh(name, sign_no=sign_no)
            try:
                reply = await gw.post(doc)
            except (ConnectionError, asyncio.IncompleteReadError, NoResponse) as exc:
                cut.append(f"{doc['msgid']}: {type(exc).__name__}")
                continue
            body = json.loads(reply.body)
            kind = body.get("gateway_error") or f"infcode {body.get('infcode')}"
            kinds[kind] += 1
            answered[str(doc["msgid"])] = kind
            if kind == "outcome_unknown":
                unknown.append(doc)

    desks = [asyncio.create_task(cashier(d)) for d in range(CASHIERS)]
    try:
        for _ in range(RESTARTS):
            await asyncio.sleep(0.5)
            await asyncio.to_thread(own_pg.restart)
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.gather(*desks)
    assert not cut, f"connections cut while the database restarted: {cut[:5]} ({len(cut)}); answers {kinds}"
    assert set(kinds) <= {"infcode 0", "outbox_unavailable", "outcome_unknown", "not_processed"}, kinds
    assert kinds["infcode 0"] > 50, kinds
    # Nothing acknowledged is lost, and nothing is left in flight once the database is back: every msgid the
    # platform answered is answered in the outbox; one refused with outbox_unavailable was never stored, or (its
    # commit reached the server as the connection died) was settled from the outbox like any other.
    outbox = gw.daemon.outbox
    assert outbox is not None
    for _ in range(100):
        counts = await outbox.counts()
        if set(counts) <= {"answered", "failed"}:
            break
        await asyncio.sleep(0.1)
    left = [r for r in await outbox.recent(2000) if not r.state.final]
    assert set(counts) <= {"answered", "failed"}, (counts, [(r.msgid, r.state, answered.get(r.msgid)) for r in left])
    for msgid, kind in answered.items():
        row = await outbox.get(msgid)
        if kind == "infcode 0":
            assert row is not None and row.state.value == "answered", (msgid, row)
        for booked in gw.sim.ledger.by_msgid(msgid):
            assert booked.state == "booked" and len(gw.sim.ledger.by_msgid(msgid)) == 1
    # The HIS that heard "outcome unknown" asks again with the same msgid: now it hears what became of it.
    again = Counter()
    for doc in unknown:
        body = json.loads((await gw.post(doc)).body)
        again[body.get("gateway_error") or f"infcode {body.get('infcode')}"] += 1
    assert "outcome_unknown" not in again and "outbox_unavailable" not in again, again
