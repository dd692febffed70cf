"""A gateway starting on an outbox database the other node of its pair is working in (tests/pg_cluster.py: a real
PostgreSQL): the start takes no lock on the outbox table when the schema is current, so it neither waits for the
other node's transactions nor stalls them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg

from gateway.crypto import sm3
from gateway.relay.pg_connect import read_dsn
from gateway.relay.pg_outbox import PgOutbox


async def test_a_second_node_starts_while_the_first_holds_rows_of_the_outbox(pg_dsn_file: Path) -> None:
    """The old start ran CREATE INDEX / ALTER TABLE ADD COLUMN IF NOT EXISTS every time: each waits for a lock on
    the outbox table that the other node's open transaction holds, and queues every later write of that node
    behind it (in the two-node crash harness: deadlocks, and a restarted node failing to start for tens of
    seconds). The wait is seen in pg_locks as it happens, not by a timer."""
    first = PgOutbox(pg_dsn_file, digest=sm3)
    await first.start()  # creates the schema
    busy = await asyncpg.connect(read_dsn(pg_dsn_file))
    watch = await asyncpg.connect(read_dsn(pg_dsn_file))
    second = PgOutbox(pg_dsn_file, digest=sm3)
    try:
        tx = busy.transaction()
        await tx.start()
        # what a node's write in flight holds: a row lock and the table's ROW EXCLUSIVE lock, until it commits
        await busy.execute("LOCK TABLE outbox IN ROW EXCLUSIVE MODE")
        starting = asyncio.create_task(second.start())
        waited = False
        while not starting.done():
            waited = bool(await watch.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted"))
            if waited:
                break
            await asyncio.sleep(0.01)
        await tx.rollback()
        await starting
        assert not waited, "the start waited for a lock on the outbox table held by the other node's transaction"
    finally:
        await second.stop()
        await first.stop()
        await busy.close()
        await watch.close()
