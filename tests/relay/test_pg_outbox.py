"""The PostgreSQL outbox against a real server (tests/pg_cluster.py): what only a shared database can show —
two gateways' pools on one table, the server killed and restarted, the DSN's secret kept out of every error and
log line — and its format kept like the SQLite file's."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import asyncpg
import pg_cluster
import pytest
from test_outbox import accept

from gateway.crypto import sm3
from gateway.platform.catalogue import TxClass
from gateway.relay import outbox_format
from gateway.relay.outbox_format import OutboxFormatError
from gateway.relay.pg_connect import read_dsn
from gateway.relay.pg_outbox import PgOutbox
from gateway.relay.repository import MsgidConflict, NotInDoubt, OutboxUnavailable
from gateway.relay.states import Reason, RowState


async def opened(dsn_file: Path) -> PgOutbox:
    box = PgOutbox(dsn_file, digest=sm3)
    await box.start()
    return box


async def test_two_gateways_on_one_database_store_each_msgid_once(pg_dsn_file: Path) -> None:
    """The same msgid sent to both nodes at once: one stores it, the other gets the stored row (its INSERT waits
    for the one in flight); a different body is refused on either."""
    a, b = await opened(pg_dsn_file), await opened(pg_dsn_file)
    mids = [f"M{i:029d}" for i in range(40)]
    results = await asyncio.gather(
        *(box.accept(msgid=m, infno="1101", tx_class=TxClass.SAFE, psn_no=None, body=m.encode(), deadline=None)
          for m in mids for box in (a, b))
    )  # fmt: skip
    for i, m in enumerate(mids):
        first, second = results[2 * i], results[2 * i + 1]
        assert first.new != second.new and first.row.msgid == second.row.msgid == m
    with pytest.raises(MsgidConflict):
        await accept(b, mids[0], b"other")
    assert (await a.counts()) == {"accepted": 40}
    await a.stop()
    await b.stop()


async def test_a_person_s_money_moving_work_is_claimed_once_across_gateways(pg_dsn_file: Path) -> None:
    """Two settlements of one person accepted with send on two nodes at once: exactly one is claimed (SENDING),
    the other waits for it (the check and the claim are one decision across connections)."""
    a, b = await opened(pg_dsn_file), await opened(pg_dsn_file)
    for round_ in range(10):
        person = f"P{round_}"
        one, two = await asyncio.gather(
            accept(a, f"A{round_:029d}", psn_no=person, send=True),
            accept(b, f"B{round_:029d}", psn_no=person, send=True),
        )
        states = sorted([one.row.state.value, two.row.state.value])
        assert states == ["accepted", "sending"], round_
        waiting = one if one.row.state is RowState.ACCEPTED else two
        other = two if waiting is one else one
        assert waiting.blockers == (other.row.msgid,)
    await a.stop()
    await b.stop()


async def test_refusals_write_nothing(pg_dsn_file: Path) -> None:
    box = await opened(pg_dsn_file)
    await accept(box, "A" * 30, b"1")
    with pytest.raises(MsgidConflict):
        await accept(box, "A" * 30, b"2")
    assert (await box.get("A" * 30)).request == b"1"
    with pytest.raises(NotInDoubt):  # a 冲正 of a row not in doubt is not stored
        await accept(box, "R" * 30, infno="2601", only_while_in_doubt="A" * 30)
    assert await box.get("R" * 30) is None
    assert await box.holds("A" * 30) and not await box.holds("R" * 30)
    await box.move("A" * 30, RowState.SENDING, attempts=1)
    await box.move("A" * 30, RowState.IN_DOUBT, outcome="no answer")
    await accept(box, "R" * 30, infno="2601", client="ybgate:reversal of " + "A" * 30, only_while_in_doubt="A" * 30)
    with pytest.raises(NotInDoubt, match="冲正"):  # its 冲正 is unfinished: ops may not decide yet
        await box.decide("A" * 30, RowState.CONFIRMED, "ops saw it booked")
    assert (await box.get("A" * 30)).state is RowState.IN_DOUBT
    await box.move("R" * 30, RowState.FAILED, reason=Reason.NOT_SENT, outcome="not sent")
    decided = await box.decide("A" * 30, RowState.FAILED, "ops: not booked")
    assert decided.state is RowState.FAILED and decided.reason is Reason.OPS
    await box.stop()


async def test_acknowledged_rows_survive_a_server_crash_and_work_resumes(
    pg: pg_cluster.Cluster, pg_dsn_file: Path
) -> None:
    """The server is killed (immediate stop: no checkpoint, like a power cut for the data directory's WAL) after
    accept returned; while it is down new work is refused, nothing of it stored; when it is back the pool
    reconnects and everything acknowledged is there."""
    box = await opened(pg_dsn_file)
    for i in range(20):
        await accept(box, f"K{i:029d}", psn_no=None, tx_class=TxClass.SAFE, infno="1101")
    pg.stop()
    try:
        with pytest.raises(OutboxUnavailable):
            await accept(box, "X" * 30)
        assert box.write_failures >= 1
    finally:
        pg.start()
    for _ in range(3):  # connections the pool held died with the server: each is replaced once it is found dead
        try:
            await accept(box, "Y" * 30, psn_no=None, tx_class=TxClass.SAFE, infno="1101")
            break
        except OutboxUnavailable:
            continue
    assert (await box.counts()) == {"accepted": 21}
    assert await box.get("X" * 30) is None
    await box.stop()


async def test_the_dsn_secret_never_reaches_errors_or_logs(
    pg: pg_cluster.Cluster, pg_dsn_file: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = tmp_path / "wrong.dsn"
    wrong.write_text(pg.dsn(password="Wr0ng-Secret-42"))
    gone = tmp_path / "gone.dsn"
    gone.write_text(pg.dsn().replace(str(pg.socket_dir), str(tmp_path / "nowhere")))
    garbled = tmp_path / "garbled.dsn"
    garbled.write_text(f"postgresql://ybgate:{pg_cluster.PASSWORD}@/x?host=/tmp&port=notaport")
    errors = []
    for path in (wrong, gone, garbled):
        with pytest.raises(OutboxUnavailable) as info:
            await opened(path)
        errors.append(info.value)
        assert str(path) in str(info.value)
        assert info.value.__cause__ is None and info.value.__context__ is None
    box = await opened(pg_dsn_file)
    pg.stop()
    try:
        with pytest.raises(OutboxUnavailable) as info:
            await accept(box, "S" * 30)
        errors.append(info.value)
    finally:
        pg.start()
    await box.stop()
    seen = " ".join(f"{e!s} {e!r}" for e in errors) + caplog.text + "".join(capsys.readouterr())
    for secret in (pg_cluster.PASSWORD, "Wr0ng-Secret-42"):
        assert secret not in seen
    assert "InvalidPasswordError" in str(errors[0])  # the kind is told: wrong credentials, not a network fault


async def test_the_format_is_kept_and_a_newer_database_refused(pg_dsn_file: Path) -> None:
    conn = await asyncpg.connect(read_dsn(pg_dsn_file))
    # a database written by format 1: no reason column, a failed row that names its reason in words only
    await conn.execute(
        "CREATE TABLE outbox (msgid TEXT PRIMARY KEY, infno TEXT NOT NULL, tx_class TEXT NOT NULL, psn_no TEXT, "
        "state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, created DOUBLE PRECISION NOT NULL, "
        "updated DOUBLE PRECISION NOT NULL, deadline DOUBLE PRECISION, upstream TEXT, body_digest BYTEA NOT NULL, "
        "request BYTEA NOT NULL, response BYTEA, outcome TEXT, client TEXT, doubt_clock TEXT, seq BIGSERIAL NOT NULL)"
    )
    await conn.execute("CREATE TABLE outbox_format (format INTEGER NOT NULL)")
    await conn.execute("INSERT INTO outbox_format VALUES (1)")
    await conn.execute(
        "INSERT INTO outbox (msgid, infno, tx_class, state, created, updated, body_digest, request, outcome) "
        "VALUES ($1, '1101', 'safe', 'failed', 1, 1, $2, $3, 'no answer in time (30 s)')",
        "F" * 30,
        b"d",
        b"{}",
    )
    box = await opened(pg_dsn_file)
    row = await box.get("F" * 30)
    assert row is not None and row.reason is Reason.NO_ANSWER
    await box.stop()
    assert await conn.fetchval("SELECT format FROM outbox_format") == outbox_format.FORMAT
    await conn.execute("UPDATE outbox_format SET format = $1", outbox_format.FORMAT + 1)
    with pytest.raises(OutboxFormatError, match="later ybgate"):
        await opened(pg_dsn_file)
    assert await conn.fetchval("SELECT format FROM outbox_format") == outbox_format.FORMAT + 1  # untouched
    await conn.close()
