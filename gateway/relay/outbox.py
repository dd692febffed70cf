"""The durable outbox on SQLite: every HIS request is on disk before it is acknowledged, and every state it
passes through.

The repository (gateway/relay/repository.py's Outbox) written as SQL over the write engine
(gateway/relay/engine.py: group commit and checkpoints) and the table of gateway/relay/schema.py. Each operation
is one function of the connection that refuses (raises) before it writes, so that it can share a group's
transaction with others.

Bodies are stored in clear inside a file only the service user can read (the state directory is 0750, the
database 0600): the request bodies are what the audit and ops tools need to show. BodyCodec is the seam for
SM4 encryption at rest with a key from the key store, should a site require it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol, Unpack

from gateway.platform.catalogue import TxClass
from gateway.relay import inspect, outbox_format
from gateway.relay.engine import GroupCommit
from gateway.relay.repository import (
    Accepted,
    InDoubtItem,
    MsgidConflict,
    NotInDoubt,
    OutboxSummary,
    OutboxUnavailable,
    nothing_to_decide,
    reversal_client,
    reversal_not_stored,
    reversal_unfinished,
    used_before,
)
from gateway.relay.rules import ordered_classes
from gateway.relay.schema import ALL, NAMES, Change, Row, change_values, row_from
from gateway.relay.states import FINAL_VALUES, MOVES, UNFINISHED, IllegalMove, Reason, RowState

__all__ = ["MsgidConflict", "NotInDoubt", "OutboxUnavailable", "Row", "SqliteOutbox"]

# Column names are constants of schema.py; values always travel as parameters.
_INSERT = f"INSERT INTO outbox ({ALL}) VALUES ({', '.join('?' * len(NAMES))}) ON CONFLICT(msgid) DO NOTHING"  # noqa: S608
_UNFINISHED_VALUES = tuple(s.value for s in UNFINISHED)
_MARKS = ", ".join("?" * len(UNFINISHED))
_FINALS = FINAL_VALUES
_FINAL_MARKS = ", ".join("?" * len(_FINALS))
_UNFINISHED_REVERSALS = f"SELECT msgid FROM outbox WHERE client = ? AND state IN ({_MARKS})"  # noqa: S608
#: for each state, the states a row may be moved from into it
_SOURCES: dict[RowState, tuple[str, ...]] = {
    to: tuple(src.value for src, targets in MOVES.items() if to in targets) for to in RowState
}


@functools.cache
def _person_sql(classes: int, earlier: bool) -> str:
    """Unfinished rows of a person in the ordered classes (rules.ordered_classes). Only work accepted before the
    request waits for it (rowid: the order of acceptance, whatever the wall clock did); a later request for the
    same person waiting in turn must not block an earlier one, or both wait until their deadlines."""
    where = f"psn_no = ? AND tx_class IN ({', '.join('?' * classes)}) AND state IN ({_MARKS})"
    if earlier:
        return f"SELECT {ALL} FROM outbox WHERE {where} AND rowid < (SELECT rowid FROM outbox WHERE msgid = ?) ORDER BY rowid"  # noqa: S608, E501 - placeholders only
    return f"SELECT msgid FROM outbox WHERE {where} AND msgid != ? ORDER BY created"  # noqa: S608 - placeholders only


def _ordered() -> tuple[str, ...]:
    return tuple(sorted(c.value for c in ordered_classes()))


def _person_params(psn_no: str, msgid: str, classes: tuple[str, ...]) -> tuple[Any, ...]:
    return (psn_no, *classes, *_UNFINISHED_VALUES, msgid)


class BodyCodec(Protocol):
    def encode(self, body: bytes) -> bytes: ...
    def decode(self, stored: bytes) -> bytes: ...


class ClearBodies:
    def encode(self, body: bytes) -> bytes:
        return body

    def decode(self, stored: bytes) -> bytes:
        return stored


class SqliteOutbox:
    def __init__(
        self,
        path: Path,
        *,
        digest: Callable[[bytes], bytes],
        synchronous: str = "FULL",
        codec: BodyCodec | None = None,
        max_group: int = 256,
        on_final: Callable[[list[Row]], None] | None = None,
    ) -> None:
        self.path = path
        self.digest = digest
        self.codec = codec or ClearBodies()
        #: told of each row that reached a final state, once its COMMIT returned (the audit log listens here)
        self.on_final = on_final
        self.engine = GroupCommit(
            path,
            check=outbox_format.refuse_newer,
            migrate=outbox_format.migrate,
            synchronous=synchronous,
            max_group=max_group,
        )
        self._do = self.engine.run

    @property
    def commits(self) -> int:
        return self.engine.commits

    @property
    def operations(self) -> int:
        return self.engine.operations

    @property
    def write_failures(self) -> int:
        return self.engine.write_failures

    @property
    def may_send(self) -> bool:
        return True  # one gateway per file: nobody else can have claimed its rows

    async def orphans(self) -> list[Row]:
        return []

    @contextlib.asynccontextmanager
    async def alone(self, job: str) -> AsyncIterator[bool]:
        yield True  # one gateway per file

    @property
    def checkpoints(self) -> int:
        return self.engine.checkpoints

    async def start(self) -> None:
        await self.engine.start()

    async def stop(self) -> None:
        """Finish what was submitted (every caller gets its answer), then close."""
        await self.engine.stop()

    # -- operations -----------------------------------------------------------------------------------------

    async def accept(
        self,
        *,
        msgid: str,
        infno: str,
        tx_class: TxClass,
        psn_no: str | None,
        body: bytes,
        deadline: float | None,
        send: bool = False,
        client: str | None = None,
        only_while_in_doubt: str | None = None,
        completed: tuple[str, ...] = (),
    ) -> Accepted:
        """Store a new request, or find the stored one with the same msgid.

        With `send`, a new row goes straight to SENDING (attempt 1) in the same transaction, unless it is
        money-moving work for a person with earlier unfinished money-moving rows: then it stays ACCEPTED and
        `blockers` names them. One commit instead of two for the common case, and the check and the claim
        cannot be separated by another request for the same person.

        With `only_while_in_doubt` (a 冲正's original), the row is stored only while that original is still in
        doubt, checked in the same transaction: once ops decided, no 2601 is stored, so none is sent."""
        digest = self.digest(body)
        stored = self.codec.encode(body)

        def op(conn: sqlite3.Connection) -> Accepted:
            if only_while_in_doubt is not None:
                original = _select(conn, only_while_in_doubt)
                if original is None or original.state is not RowState.IN_DOUBT:
                    now_in = original.state.value if original else "gone"
                    raise reversal_not_stored(only_while_in_doubt, now_in)
            blockers: tuple[str, ...] = ()
            if send and psn_no and tx_class.value in (classes := _ordered()):
                params = _person_params(psn_no, msgid, classes)
                blockers = tuple(r[0] for r in conn.execute(_person_sql(len(classes), earlier=False), params))
            state, attempts = (RowState.SENDING, 1) if send and not blockers else (RowState.ACCEPTED, 0)
            now = time.time()
            values = (
                msgid,
                infno,
                tx_class.value,
                psn_no,
                state.value,
                attempts,
                now,
                now,
                deadline,
                None,
                digest,
                stored,
                None,
                None,
                client,
                None,  # doubt_clock
                None,  # reason
                ",".join(completed) or None,
            )
            # Insert first and look only on a conflict: a new msgid (nearly every request) costs one statement.
            if conn.execute(_INSERT, values).rowcount:
                return Accepted(self._decoded(row_from(values)), new=True, blockers=blockers)
            existing = _select(conn, msgid)
            assert existing is not None
            if existing.body_digest != digest:
                raise used_before(msgid, existing.infno)
            return Accepted(self._decoded(existing), new=False)

        return await self._do(op)

    async def move(self, msgid: str, to: RowState, **fields: Unpack[Change]) -> Row:
        """Move a row to `to` (checked against the table of legal moves) and set fields; durable on return."""
        values = change_values(to, fields)
        if "response" in values and values["response"] is not None:
            values["response"] = self.codec.encode(values["response"])
        sql = _move_sql(to, tuple(values))
        sources = _SOURCES[to]

        def op(conn: sqlite3.Connection) -> Row:
            new = conn.execute(sql, (to.value, time.time(), *values.values(), msgid, *sources)).fetchone()
            if new is not None:
                return self._decoded(row_from(new))
            row = _select(conn, msgid)
            if row is None:
                raise KeyError(msgid)
            raise IllegalMove(f"{msgid}: {row.state.value} -> {to.value}")

        row = await self._do(op)
        if row.state.final and self.on_final is not None:
            self.on_final([row])  # committed: the audit log may record it
        return row

    async def decide(self, msgid: str, to: RowState, outcome: str) -> Row:
        """Ops' decision on an in-doubt row, refused (NotInDoubt, nothing written) when the row is no longer in
        doubt or a 冲正 of it is unfinished: that 2601 may have reversed it, and only its answer can tell."""
        sql = _move_sql(to, ("outcome", "reason"))
        reason = Reason.OPS.value if to is RowState.FAILED else None

        def op(conn: sqlite3.Connection) -> Row:
            row = _select(conn, msgid)
            if row is None or row.state is not RowState.IN_DOUBT:
                state = row.state.value if row else "not in the outbox"
                raise nothing_to_decide(msgid, state, row.outcome if row else None)
            open_reversals = [
                r[0] for r in conn.execute(_UNFINISHED_REVERSALS, (reversal_client(msgid), *_UNFINISHED_VALUES))
            ]
            if open_reversals:
                raise reversal_unfinished(msgid, open_reversals)
            new = conn.execute(sql, (to.value, time.time(), outcome, reason, msgid, *_SOURCES[to])).fetchone()
            return self._decoded(row_from(new))

        row = await self._do(op)
        if self.on_final is not None:
            self.on_final([row])
        return row

    async def holds(self, msgid: str) -> bool:
        """Whether it holds `msgid`, read beside the writer: its commit groups may be failing (a full disk), and
        a lookup through them fails with them."""
        try:
            return await asyncio.to_thread(inspect.holds, self.path, msgid)
        except (sqlite3.Error, OSError) as exc:
            raise OutboxUnavailable(f"the outbox cannot be read: {exc}") from None

    async def reversals_of(self, msgid: str) -> list[Row]:
        """The 2601 rows the gateway stored to undo `msgid`, oldest first."""
        return await self._rows(
            f"SELECT {ALL} FROM outbox WHERE client = ? ORDER BY rowid",  # noqa: S608
            (reversal_client(msgid),),
        )

    async def get(self, msgid: str) -> Row | None:
        row = await self._do(lambda conn: _select(conn, msgid))
        return self._decoded(row) if row else None

    async def unfinished(self) -> list[Row]:
        return await self._rows(
            f"SELECT {ALL} FROM outbox WHERE state IN ({_MARKS}) ORDER BY created",  # noqa: S608
            _UNFINISHED_VALUES,
        )

    async def in_doubt_for(self, psn_no: str, *, before: str) -> list[Row]:
        """Unfinished money-moving rows of a person accepted before `before` (the request that waits), oldest
        first."""
        classes = _ordered()
        params = _person_params(psn_no, before, classes)
        return await self._rows(_person_sql(len(classes), earlier=True), params)

    async def recent(self, limit: int = 50, state: RowState | None = None) -> list[Row]:
        if state is None:
            return await self._rows(f"SELECT {ALL} FROM outbox ORDER BY created DESC LIMIT ?", (limit,))  # noqa: S608
        return await self._rows(
            f"SELECT {ALL} FROM outbox WHERE state = ? ORDER BY created DESC LIMIT ?",  # noqa: S608
            (state.value, limit),
        )

    async def prune(self, older_than: float, batch: int = 500) -> int:
        """Delete finished rows last updated before `older_than`, in small groups so the writer never stalls."""
        total = 0
        while True:

            def op(conn: sqlite3.Connection) -> int:
                cur = conn.execute(
                    "DELETE FROM outbox WHERE rowid IN (SELECT rowid FROM outbox WHERE updated < ? "  # noqa: S608
                    f"AND state IN ({_FINAL_MARKS}) LIMIT ?)",
                    (older_than, *_FINALS, batch),
                )
                return cur.rowcount

            n = await self._do(op)
            total += n
            if n < batch:
                return total
            await asyncio.sleep(0)

    async def summary(self, in_doubt_limit: int = 20) -> OutboxSummary:
        """Rows by state, the oldest unfinished and in-doubt creation times, and the oldest in-doubt rows:
        what monitoring and the status page show."""

        def op(conn: sqlite3.Connection) -> OutboxSummary:
            counts = dict(conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
            oldest_unfinished = conn.execute(
                f"SELECT MIN(created) FROM outbox WHERE state IN ({_MARKS})",  # noqa: S608 - placeholders only
                _UNFINISHED_VALUES,
            ).fetchone()[0]
            doubt = conn.execute(
                "SELECT msgid, infno, created, updated, outcome FROM outbox WHERE state = ? ORDER BY created LIMIT ?",
                (RowState.IN_DOUBT.value, in_doubt_limit),
            ).fetchall()
            items = tuple(InDoubtItem(*r) for r in doubt)
            return OutboxSummary(counts, oldest_unfinished, items[0].created if items else None, items)

        return await self._do(op)

    async def finished_since(self, since: float) -> list[Row]:
        """Rows that reached a final state at or after `since` (the audit log's catch-up after a crash)."""
        return await self._rows(
            f"SELECT {ALL} FROM outbox WHERE updated >= ? AND state IN ({_FINAL_MARKS}) ORDER BY updated",  # noqa: S608
            (since, *_FINALS),
        )

    async def between(self, start: float, end: float, infnos: frozenset[str]) -> list[Row]:
        """Rows of these transactions created in [start, end), oldest first (reconciliation's view of a day)."""
        marks = ", ".join("?" * len(infnos))
        sql = f"SELECT {ALL} FROM outbox WHERE created >= ? AND created < ? AND infno IN ({marks}) ORDER BY created"  # noqa: S608 - placeholders only
        return await self._rows(sql, (start, end, *sorted(infnos)))

    async def counts(self) -> dict[str, int]:
        rows = await self._do(lambda conn: conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        return {state: n for state, n in rows}

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        def op(conn: sqlite3.Connection) -> list[Row]:
            return [row_from(r) for r in conn.execute(sql, params).fetchall()]

        return [self._decoded(r) for r in await self._do(op)]

    def _decoded(self, row: Row) -> Row:
        if isinstance(self.codec, ClearBodies):
            return row
        return Row(
            **{
                **row.__dict__,
                "request": self.codec.decode(row.request),
                "response": self.codec.decode(row.response) if row.response is not None else None,
            }
        )


@functools.cache
def _move_sql(to: RowState, fields: tuple[str, ...]) -> str:
    """The UPDATE for a move; the legal-move check is part of it: one statement, no read-back. Built once per
    target state and field set (a handful in all)."""
    sets = ", ".join(f"{k} = ?" for k in ("state", "updated", *fields))
    sources = ", ".join("?" * len(_SOURCES[to]))
    return f"UPDATE outbox SET {sets} WHERE msgid = ? AND state IN ({sources}) RETURNING {ALL}"  # noqa: S608


def _select(conn: sqlite3.Connection, msgid: str) -> Row | None:
    r = conn.execute(f"SELECT {ALL} FROM outbox WHERE msgid = ?", (msgid,)).fetchone()  # noqa: S608
    return row_from(r) if r else None
