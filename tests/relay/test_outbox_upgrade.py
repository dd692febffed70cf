"""Upgrade (#23): an outbox written by the previous release opens, is migrated in place and its rows resolve; one
written by a later release is refused before anything in it changes.

tests/data/upgrade/outbox-format0.db was written by the release before the format marker (SqliteOutbox of that
commit, through its public accept/move calls): one row in every state, among them one in flight (sending) and one
in doubt.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from gateway.crypto import sm3
from gateway.relay.outbox import SqliteOutbox
from gateway.relay.outbox_format import FORMAT, OutboxFormatError
from gateway.relay.states import Reason, RowState

DATA = Path(__file__).resolve().parent.parent / "data" / "upgrade"


def mid(i: int) -> str:
    return f"H44030000001{20261124080000 + i:014d}{i:04d}"


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


async def test_previous_release_outbox_is_migrated_and_its_rows_resolve(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    shutil.copy(DATA / "outbox-format0.db", path)
    assert user_version(path) == 0
    box = SqliteOutbox(path, digest=sm3)
    await box.start()
    try:
        states = {RowState.ACCEPTED, RowState.SENDING, RowState.IN_DOUBT, RowState.ANSWERED}
        states |= {RowState.REVERSED, RowState.FAILED, RowState.CONFIRMED}
        rows = {i: await box.get(mid(i)) for i in range(1, 8)}
        assert {r.state for r in rows.values() if r is not None} == states
        assert {r.state for r in await box.unfinished()} == {RowState.ACCEPTED, RowState.SENDING, RowState.IN_DOUBT}
        doubted = rows[3]
        assert doubted is not None and doubted.doubt_clock == "b 1.0" and doubted.client == "his-cashier"
        answered = rows[4]
        assert answered is not None and answered.response == b'{"infcode": 0}'
        # what the daemon does with them after the upgrade: send the accepted one, doubt the one in flight,
        # settle the doubts
        await box.move(mid(1), RowState.SENDING, attempts=1, upstream="primary")
        await box.move(mid(1), RowState.ANSWERED, response=b'{"infcode": 0}', outcome="answered")
        await box.move(mid(2), RowState.IN_DOUBT, outcome="restarted while sending")
        await box.move(mid(2), RowState.FAILED, outcome="the platform shows nothing", reason=Reason.NOT_BOOKED)
        await box.move(mid(3), RowState.REVERSED, outcome="reversed by 2601")
        assert await box.unfinished() == []
    finally:
        await box.stop()
    assert user_version(path) == FORMAT


async def test_an_outbox_from_a_later_release_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    shutil.copy(DATA / "outbox-format0.db", path)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={FORMAT + 1}")
    conn.close()
    before = path.read_bytes()
    box = SqliteOutbox(path, digest=sm3)
    with pytest.raises(OutboxFormatError, match=f"outbox format {FORMAT + 1} was written by a later ybgate"):
        await box.start()
    assert path.read_bytes() == before
    assert not path.with_name("outbox.db-wal").exists()


def mid1(i: int) -> str:
    return f"H44030000001{20261204080000 + i:014d}{i:04d}"


async def test_format1_failed_rows_get_their_reason_from_the_words_they_were_written_with(tmp_path: Path) -> None:
    """tests/data/upgrade/outbox-format1.db was written by the release before the reason column (SqliteOutbox of
    that commit, through its public accept/move/decide calls): a row in every state, and a failed row for each
    way that release worded a failure. Opened by this one, each failed row gets the reason its words name (a
    query's "no answer in time" is what made the HIS hear "ask again" then, and still does), and nothing else
    changes."""
    path = tmp_path / "outbox.db"
    shutil.copy(DATA / "outbox-format1.db", path)
    assert user_version(path) == 1
    before = sqlite3.connect(path)
    old = {r[0]: r[1:] for r in before.execute("SELECT msgid, state, outcome, request, response FROM outbox")}
    before.close()
    box = SqliteOutbox(path, digest=sm3)
    await box.start()
    try:
        rows = {i: await box.get(mid1(i)) for i in range(1, 14)}
        assert all(r is not None for r in rows.values())
        reasons = {i: r.reason for i, r in rows.items() if r is not None and r.state is RowState.FAILED}
        assert reasons == {
            6: Reason.NO_ANSWER,
            7: Reason.NOT_SENT,
            8: Reason.NOT_SENT,
            9: Reason.NOT_BOOKED,
            10: Reason.OPS,
            12: Reason.UNRECORDED,  # a 2601 refused with an HTTP error: its words name no reason
            13: Reason.ORDER,
        }
        assert all(r.reason is None for r in rows.values() if r is not None and r.state is not RowState.FAILED)
        for r in rows.values():
            assert r is not None and (r.state.value, r.outcome, r.request, r.response) == old[r.msgid]
        # the migrated file takes new work, and a new failure records its reason
        await box.move(mid1(1), RowState.FAILED, outcome="not sent: x", reason=Reason.NOT_SENT)
        assert (await box.get(mid1(1))).reason is Reason.NOT_SENT  # type: ignore[union-attr]
    finally:
        await box.stop()
    assert user_version(path) == FORMAT == 3
