"""The outbox on real SQLite files: idempotency by msgid, the state table, group commit, pruning, and no
acknowledged row lost when the writing process is killed with SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from gateway.crypto import sm3
from gateway.platform.catalogue import TxClass
from gateway.relay.outbox import MsgidConflict, OutboxUnavailable, SqliteOutbox
from gateway.relay.pg_outbox import PgOutbox
from gateway.relay.repository import Outbox
from gateway.relay.schema import DDL
from gateway.relay.states import IllegalMove, Reason, RowState


def msgid(i: int) -> str:
    return f"H44030000001{20261124080000 + i % 60:014d}{i % 10000:04d}"


async def opened(path: Path, **kw: object) -> SqliteOutbox:
    box = SqliteOutbox(path, digest=sm3, **kw)  # type: ignore[arg-type]
    await box.start()
    return box


MakeBox = Callable[[], Awaitable[Outbox]]


@pytest.fixture(params=["sqlite", "postgresql"])
def make_box(request: pytest.FixtureRequest, tmp_path: Path) -> MakeBox:
    """The repository's contract holds for both backends: the tests that take this run on each."""
    dsn_file = request.getfixturevalue("pg_dsn_file") if request.param == "postgresql" else None

    async def make() -> Outbox:
        if dsn_file is None:
            return await opened(tmp_path / "o.db")
        box = PgOutbox(dsn_file, digest=sm3)
        await box.start()
        return box

    return make


async def accept(box: Outbox, mid: str, body: bytes = b"{}", **kw: object):
    args = {
        "msgid": mid,
        "infno": "2207",
        "tx_class": TxClass.MONEY_MOVING,
        "psn_no": "P1",
        "body": body,
        "deadline": None,
    } | kw
    return await box.accept(**args)  # type: ignore[arg-type]


async def test_accept_is_idempotent_by_msgid(make_box: MakeBox) -> None:
    box = await make_box()
    first = await accept(box, "M" * 30, b'{"a": 1}')
    again = await accept(box, "M" * 30, b'{"a": 1}')
    assert first.new and not again.new and again.row.state is RowState.ACCEPTED
    with pytest.raises(MsgidConflict, match="a new request needs a new msgid") as info:
        await accept(box, "M" * 30, b'{"a": 2}')
    assert info.value.http_status == 409
    await box.stop()
    if isinstance(box, SqliteOutbox):
        assert (os.stat(box.path).st_mode & 0o777) == 0o600


async def test_the_fields_the_gateway_filled_in_are_kept_for_the_audit(make_box: MakeBox) -> None:
    box = await make_box()
    try:
        first = await accept(box, "F" * 30, completed=("sign_no", "opter"))
        assert first.row.completed == "sign_no,opter"
        await accept(box, "G" * 30)
        stored = {m: await box.get(m) for m in ("F" * 30, "G" * 30)}
        assert [r.completed for r in stored.values() if r is not None] == ["sign_no,opter", None]
    finally:
        await box.stop()


async def test_state_table(make_box: MakeBox) -> None:
    box = await make_box()
    await accept(box, "A" * 30)
    with pytest.raises(IllegalMove):
        await box.move("A" * 30, RowState.ANSWERED)  # an answer without a send
    row = await box.move("A" * 30, RowState.SENDING, attempts=1, upstream="primary")
    assert row.state is RowState.SENDING and row.attempts == 1 and row.upstream == "primary"
    await box.move("A" * 30, RowState.IN_DOUBT, outcome="no answer")
    await box.move("A" * 30, RowState.REVERSED, outcome="reversed by 2601")
    for to in RowState:
        with pytest.raises(IllegalMove):
            await box.move("A" * 30, to, **reason_for(to))  # final means final
    with pytest.raises(KeyError):
        await box.move("B" * 30, RowState.SENDING)
    with pytest.raises(ValueError, match="cannot set"):
        await box.move("A" * 30, RowState.FAILED, state="x")
    with pytest.raises(ValueError, match="failed needs reason"):
        await box.move("A" * 30, RowState.FAILED, outcome="x")  # every failed row says why
    with pytest.raises(ValueError, match="takes no reason"):
        await box.move("A" * 30, RowState.ANSWERED, reason=Reason.NOT_SENT)
    await box.stop()


async def test_accept_and_send_claims_the_first_attempt_unless_the_person_is_blocked(make_box: MakeBox) -> None:
    box = await make_box()
    first = await accept(box, msgid(1), b"1", send=True)
    assert first.row.state is RowState.SENDING and first.row.attempts == 1 and first.blockers == ()
    stored = await box.get(msgid(1))
    assert stored is not None and stored.state is RowState.SENDING  # on disk as claimed, not only in the answer
    # Same person, money-moving, while the first is unfinished: stays ACCEPTED and names what blocks it.
    second = await accept(box, msgid(2), b"2", send=True)
    assert second.row.state is RowState.ACCEPTED and second.row.attempts == 0 and second.blockers == (msgid(1),)
    # Other people and safe transactions are not held up by it.
    other = await accept(box, msgid(3), b"3", send=True, psn_no="P2")
    query = await accept(box, msgid(4), b"4", send=True, infno="1101", tx_class=TxClass.SAFE)
    assert other.row.state is RowState.SENDING and query.row.state is RowState.SENDING
    await box.move(msgid(1), RowState.ANSWERED, response=b"{}")
    third = await accept(box, msgid(5), b"5", send=True)
    assert third.blockers == (msgid(2),)  # the accepted-but-waiting one still counts
    await box.stop()


async def test_group_commit_batches_concurrent_accepts(tmp_path: Path) -> None:
    box = await opened(tmp_path / "o.db")
    results = await asyncio.gather(*(accept(box, msgid(i), f'{{"i": {i}}}'.encode()) for i in range(400)))
    assert all(r.new for r in results)
    assert box.operations == 400 and box.commits < 100  # many requests per fsync
    await box.stop()
    again = await opened(tmp_path / "o.db")
    assert (await again.counts()) == {"accepted": 400}
    await again.stop()


async def test_only_earlier_work_of_a_person_blocks(make_box: MakeBox) -> None:
    """Two requests queued behind a third do not wait for each other: only work accepted before a request
    blocks it (#20: "…8841 blocked by …8842, …8842 by …8843" until their deadlines)."""
    box = await make_box()
    first, second, third = "A" * 30, "B" * 30, "C" * 30
    assert (await accept(box, first, send=True)).blockers == ()
    assert (await accept(box, second, send=True)).blockers == (first,)
    assert (await accept(box, third, send=True)).blockers == (first, second)
    assert [r.msgid for r in await box.in_doubt_for("P1", before=second)] == [first]
    await box.move(first, RowState.IN_DOUBT)
    await box.move(first, RowState.REVERSED)
    assert await box.in_doubt_for("P1", before=second) == []  # the old code: [third]
    assert [r.msgid for r in await box.in_doubt_for("P1", before=third)] == [second]
    await box.stop()


async def test_queries_and_pruning(make_box: MakeBox) -> None:
    box = await make_box()
    await accept(box, "A" * 30, psn_no="P1")
    await accept(box, "B" * 30, psn_no="P1")
    await accept(box, "C" * 30, psn_no="P2", tx_class=TxClass.SAFE, infno="1101")
    await box.move("A" * 30, RowState.SENDING)
    await box.move("A" * 30, RowState.IN_DOUBT)
    assert [r.msgid for r in await box.in_doubt_for("P1", before="B" * 30)] == ["A" * 30]
    assert {r.msgid for r in await box.unfinished()} == {"A" * 30, "B" * 30, "C" * 30}
    await box.move("C" * 30, RowState.SENDING)
    await box.move("C" * 30, RowState.ANSWERED, response=b'{"infcode": 0}')
    assert (await box.get("C" * 30)).response == b'{"infcode": 0}'
    assert await box.prune(time.time() + 1, batch=1) == 1  # only the finished one
    assert await box.get("C" * 30) is None and await box.get("A" * 30) is not None
    await box.stop()


WRITER = """
import asyncio, sys
from pathlib import Path
from gateway.crypto import sm3
from gateway.platform.catalogue import TxClass
from gateway.relay.outbox import SqliteOutbox

async def main():
    box = SqliteOutbox(Path(sys.argv[1]), digest=sm3)
    await box.start()
    i = 0
    async def one(n):
        mid = f"H44030000001202611240800{n % 100:02d}{n:04d}"
        await box.accept(msgid=mid, infno="2207", tx_class=TxClass.MONEY_MOVING, psn_no="P", body=b"b%d" % n,
                         deadline=None)
        print(mid, flush=True)  # acknowledged only now, as the HIS would be
    while True:
        await asyncio.gather(*(one(i + k) for k in range(8)))
        i += 8

asyncio.run(main())
"""


@pytest.mark.parametrize("run", range(5))
def test_sigkill_loses_no_acknowledged_row(tmp_path: Path, run: int) -> None:
    db = tmp_path / "o.db"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    acked = [proc.stdout.readline().strip()]  # writing has begun (interpreter start-up varies with the load)
    deadline = time.monotonic() + 0.2 + run * 0.15
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            acked.append(line.strip())
    proc.send_signal(signal.SIGKILL)
    rest = proc.stdout.read()  # whatever it printed before dying was acknowledged too
    proc.wait()
    acked += [ln.strip() for ln in rest.splitlines() if ln.strip()]
    assert len(acked) > 10
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    stored = {m: body for m, body in conn.execute("SELECT msgid, request FROM outbox")}
    conn.close()
    missing = [m for m in acked if m not in stored]
    assert not missing, f"{len(missing)} acknowledged rows lost"
    for m in acked:
        assert stored[m] == b"b%d" % int(m[-4:])


async def test_a_full_disk_refuses_new_work_and_keeps_what_was_accepted(tmp_path: Path) -> None:
    """SQLite's page limit gives the real SQLITE_FULL path (a tmpfs of a set size would need a mount namespace)."""
    box = await opened(tmp_path / "o.db")
    await accept(box, msgid(0), b"kept", infno="1101", tx_class=TxClass.SAFE)
    assert box.engine._conn is not None
    pages = box.engine._conn.execute("PRAGMA page_count").fetchone()[0]
    box.engine._conn.execute(f"PRAGMA max_page_count = {pages + 2}")
    refused = None
    for i in range(1, 50):
        try:
            await accept(box, msgid(i), b"x" * 3000, infno="1101", tx_class=TxClass.SAFE)
        except OutboxUnavailable as exc:
            refused = (i, exc)
            break
    assert refused is not None, "the page limit was never reached"
    i, exc = refused
    assert exc.http_status == 503 and "nothing was accepted" in exc.message and "full" in exc.message
    assert await box.get(msgid(i)) is None  # refused means not stored
    kept = await box.get(msgid(0))
    assert kept is not None and kept.request == b"kept"
    box.engine._conn.execute("PRAGMA max_page_count = 1073741823")  # space again: work resumes
    again = await accept(box, msgid(i), b"x" * 3000, infno="1101", tx_class=TxClass.SAFE)
    assert again.new
    await box.stop()


async def test_an_outbox_from_before_the_added_columns_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old_schema = DDL.replace(",\n    client TEXT,\n    doubt_clock TEXT,\n    reason TEXT,\n    completed TEXT\n", "\n")
    assert all(c not in old_schema for c in ("client", "doubt_clock", "reason", "completed"))
    conn = sqlite3.connect(path)
    conn.executescript(old_schema)
    conn.execute(
        "INSERT INTO outbox (msgid, infno, tx_class, state, created, updated, body_digest, request) "
        "VALUES (?, '1101', 'safe', 'answered', 1, 1, x'00', x'7b7d')",
        (msgid(1),),
    )
    conn.commit()
    conn.close()
    box = await opened(path)
    try:
        old = await box.get(msgid(1))
        assert old is not None and old.client is None and old.doubt_clock is None and old.state is RowState.ANSWERED
        await accept(box, msgid(2), client="his-cashier", completed=("sign_no", "opter"))
        new = await box.get(msgid(2))
        assert new is not None and new.client == "his-cashier" and new.completed == "sign_no,opter"
        await box.move(msgid(2), RowState.SENDING, attempts=1)
        await box.move(msgid(2), RowState.IN_DOUBT, doubt_clock="b 1.0")
        doubted = await box.get(msgid(2))
        assert doubted is not None and doubted.doubt_clock == "b 1.0"
    finally:
        await box.stop()


async def test_checkpoints_keep_the_wal_bounded_under_steady_writes(tmp_path: Path, monkeypatch) -> None:
    # Checkpoints run beside the COMMITs (outbox docstring). Copying the WAL while groups keep committing never
    # catches up by itself, so the WAL would grow as long as the load lasts (about 14 MiB after this run); the
    # writer's catch-up between groups is what lets it start over. How far it grows between two starts depends on
    # how many groups commit while a checkpoint copies, that is on the machine's speed; so this counts what does
    # not: the times the WAL started over (the checkpoint sequence number in its header), and that the file holds
    # the longest stretch between two starts (the most frames any checkpoint found), not the whole run.
    from gateway.relay import engine as module

    monkeypatch.setattr(module, "CHECKPOINT_COMMITS", 20)
    found: list[int] = []  # frames in the WAL each checkpoint (the checkpointer's and the writer's catch-up) saw
    passive = module._passive_checkpoint

    def counted(conn: sqlite3.Connection) -> tuple[int, int, int]:
        busy, frames, copied = passive(conn)
        found.append(frames)
        return busy, frames, copied

    monkeypatch.setattr(module, "_passive_checkpoint", counted)
    box = await opened(tmp_path / "o.db")
    ids = iter(range(1600))

    async def client() -> None:
        for i in ids:
            await accept(
                box, f"M{i:05d}", f'{{"i": {i}}}'.encode() + b" " * 400, infno="1101", tx_class=TxClass.SAFE, send=True
            )
            await box.move(f"M{i:05d}", RowState.ANSWERED, response=b'{"infcode": 0}' + b" " * 400, outcome="infcode 0")

    await asyncio.gather(*(client() for _ in range(8)))
    # 3,200 operations from 8 clients: at most 8 in a group, so at least 400 commits, a checkpoint due every 20.
    assert box.commits >= 400, box.commits
    wal = tmp_path / "o.db-wal"
    header = wal.read_bytes()[:32]
    page_size, restarts = struct.unpack(">II", header[8:16])
    assert restarts >= max(3, box.checkpoints // 4), (restarts, box.checkpoints)  # without the catch-up: 0
    last = sqlite3.connect(tmp_path / "o.db")
    found.append(last.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])  # the stretch still in the WAL
    last.close()
    frames_on_disk = (wal.stat().st_size - 32) // (24 + page_size)
    assert frames_on_disk <= max(found), (frames_on_disk, max(found))
    await box.stop()
    again = await opened(tmp_path / "o.db")
    assert await again.counts() == {"answered": 1600}
    await again.stop()


async def test_a_defective_operation_fails_its_group_and_leaves_the_outbox_usable(tmp_path: Path) -> None:
    box = await opened(tmp_path / "o.db")

    def defect(conn: sqlite3.Connection) -> None:
        conn.execute("SELECT 1")
        raise RuntimeError("a bug in an operation")

    results = await asyncio.gather(
        accept(box, msgid(1), b"a", infno="1101", tx_class=TxClass.SAFE),
        box.engine.run(defect),
        accept(box, msgid(2), b"b", infno="1101", tx_class=TxClass.SAFE),
        return_exceptions=True,
    )
    assert all(isinstance(r, OutboxUnavailable) for r in results), results  # one group, undone as a whole
    assert await box.get(msgid(1)) is None and await box.get(msgid(2)) is None
    again = await accept(box, msgid(1), b"a", infno="1101", tx_class=TxClass.SAFE)
    assert again.new  # not wedged inside the failed group's transaction
    await box.stop()


def reason_for(to: RowState) -> dict[str, Reason]:
    return {"reason": Reason.NOT_SENT} if to is RowState.FAILED else {}


def test_the_schema_is_defined_once() -> None:
    """Row, the DDL, ops' views and the metrics' state labels all come from schema.py and states.py."""
    import dataclasses

    from gateway.health.metrics import _OutboxCollector
    from gateway.relay import inspect as views
    from gateway.relay import schema

    assert tuple(f.name for f in dataclasses.fields(schema.Row)) == schema.NAMES
    assert tuple(c.name for c in schema.COLUMNS if c.shown) == views.COLUMNS
    assert tuple(s.value for s in RowState) == _OutboxCollector.STATES
    conn = sqlite3.connect(":memory:")
    conn.executescript(schema.DDL)
    assert tuple(r[1] for r in conn.execute("PRAGMA table_info(outbox)")) == schema.NAMES


@pytest.mark.parametrize("backend", [SqliteOutbox, PgOutbox])
def test_each_backend_implements_the_repository_interface(backend: type) -> None:
    """The relay is written against repository.Outbox; each backend offers each of its calls with the same
    parameters."""
    import inspect as pyinspect

    for name, member in vars(Outbox).items():
        if name.startswith("_") or not callable(member):
            continue
        ours = getattr(backend, name)
        assert pyinspect.iscoroutinefunction(ours) == pyinspect.iscoroutinefunction(member), name
        assert list(pyinspect.signature(ours).parameters) == list(pyinspect.signature(member).parameters), name
    assert isinstance(backend.write_failures, property)
