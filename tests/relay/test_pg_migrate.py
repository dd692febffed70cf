"""`ybgate outbox migrate --to postgresql` on real files and a real PostgreSQL: a single host's outbox, rows in
every state, moved whole and in order; the SQLite file left as it was; run again, nothing moved twice; a msgid the
database holds differently stops it with nothing written; then a gateway on the database answers the old msgids
from their stored outcomes and settles what was unfinished."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import pg_cluster
from test_check_refusals import Setup, _cli

from gateway.crypto import sm3
from gateway.platform.catalogue import TxClass
from gateway.relay.outbox import SqliteOutbox
from gateway.relay.pg_outbox import PgOutbox
from gateway.relay.states import Reason, RowState


def mid(i: int) -> str:
    return f"H44030000001202612050900{i:06d}"


async def single_host_outbox(path: Path) -> dict[str, RowState]:
    box = SqliteOutbox(path, digest=sm3)
    await box.start()
    try:
        for i in range(6):
            await box.accept(
                msgid=mid(i),
                infno="2207",
                tx_class=TxClass.MONEY_MOVING,
                psn_no=f"P{i}",
                body=b'{"n": %d}' % i,
                deadline=None,
                send=i > 0,
                client="his-cashier",
            )
        await box.move(mid(1), RowState.ANSWERED, response=b'{"infcode": 0}', upstream="sim", outcome="infcode 0")
        await box.move(mid(2), RowState.IN_DOUBT, outcome="no answer")
        await box.move(mid(3), RowState.FAILED, outcome="not sent: x", reason=Reason.NOT_SENT)
        await box.move(mid(4), RowState.IN_DOUBT, outcome="no answer")
        await box.move(mid(4), RowState.REVERSED, outcome="reversed by 2601")
        return {r.msgid: r.state for r in [await box.get(mid(i)) for i in range(6)] if r is not None}
    finally:
        await box.stop()


def config_for(root: Path, dsn_file: Path) -> Path:
    setup = Setup(root)
    setup.config.write_text(
        setup.config.read_text() + f"relay: {{outbox: {{backend: sqlite, dsn_file: {dsn_file}}}}}\n"
    )
    return setup.config


async def test_a_single_hosts_outbox_moves_whole_once(
    tmp_path: Path, pg: pg_cluster.Cluster, pg_dsn_file: Path
) -> None:
    config = await asyncio.to_thread(config_for, tmp_path, pg_dsn_file)
    source = tmp_path / "state" / "outbox.db"
    states = await single_host_outbox(source)
    before = await asyncio.to_thread(lambda: hashlib.sha256(source.read_bytes()).hexdigest())
    done = await asyncio.to_thread(_cli, "outbox", "migrate", "--to", "postgresql", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "6 rows moved" in done.stdout and "relay.outbox.backend: postgresql" in done.stdout
    assert await asyncio.to_thread(lambda: hashlib.sha256(source.read_bytes()).hexdigest()) == before
    box = PgOutbox(pg_dsn_file, digest=sm3, node="node-a")
    await box.start()
    try:
        local = SqliteOutbox(source, digest=sm3)
        await local.start()
        try:
            for i in range(6):
                theirs, ours = await box.get(mid(i)), await local.get(mid(i))
                assert theirs == ours and theirs is not None and theirs.state is states[mid(i)]
        finally:
            await local.stop()
        again = await asyncio.to_thread(_cli, "outbox", "migrate", "--to", "postgresql", "--config", str(config))
        assert again.returncode == 0 and "0 rows moved" in again.stdout, again.stdout + again.stderr
        await box.move(mid(2), RowState.REVERSED, outcome="reversed by 2601")  # the database moves on
        changed = await asyncio.to_thread(_cli, "outbox", "migrate", "--to", "postgresql", "--config", str(config))
        assert changed.returncode == 1 and f"msgid {mid(2)}" in changed.stderr and "nothing was moved" in changed.stderr
        # unfinished rows came without an owner: the gateway that starts on the database claims them
        assert {r.msgid for r in await box.unfinished()} == {mid(0), mid(5)}
    finally:
        await box.stop()


def test_migrate_needs_a_database_and_a_file(tmp_path: Path) -> None:
    setup = Setup(tmp_path)
    done = _cli("outbox", "migrate", "--to", "postgresql", "--config", str(setup.config))
    assert done.returncode == 1 and "names no database" in done.stderr
