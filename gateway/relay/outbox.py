"""The durable outbox: every HIS request is on disk before it is acknowledged, and every state it passes through.

SQLite in WAL mode with synchronous=FULL, so a commit survives power loss. One writer thread owns the
connection and commits in groups: all operations waiting when it wakes go into one transaction and one fsync,
each in its own savepoint (one failing operation does not undo the others), and each caller's future
resolves only after the group's COMMIT returned. Durability then costs one fsync per group, not per request.

Bodies are stored in clear inside a file only the service user can read (the state directory is 0750, the
database 0600): the request bodies are what the audit and ops tools need to show. BodyCodec is the seam for
SM4 encryption at rest with a key from the key store, should a site require it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gateway.errors import GatewayError
from gateway.relay.states import MOVES, UNFINISHED, IllegalMove, State

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    msgid TEXT PRIMARY KEY,
    infno TEXT NOT NULL,
    tx_class TEXT NOT NULL,
    psn_no TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    deadline REAL,
    upstream TEXT,
    body_digest BLOB NOT NULL,
    request BLOB NOT NULL,
    response BLOB,
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS outbox_unfinished ON outbox(state) WHERE state IN ('accepted', 'sending', 'in_doubt');
CREATE INDEX IF NOT EXISTS outbox_person ON outbox(psn_no, state);
CREATE INDEX IF NOT EXISTS outbox_updated ON outbox(updated);
"""
_COLUMNS = (
    "msgid",
    "infno",
    "tx_class",
    "psn_no",
    "state",
    "attempts",
    "created",
    "updated",
    "deadline",
    "upstream",
    "body_digest",
    "request",
    "response",
    "outcome",
)
_COLS = ", ".join(_COLUMNS)
# Column names are constants of this module; values always travel as parameters.
_INSERT = f"INSERT INTO outbox ({_COLS}) VALUES ({', '.join('?' * len(_COLUMNS))})"  # noqa: S608


class MsgidConflict(GatewayError):
    """The same msgid arrived with a different body: one of them is a HIS bug, and neither may be guessed."""

    http_status = 409
    kind = "msgid_conflict"


class OutboxUnavailable(GatewayError):
    """The outbox cannot store the request (disk full, I/O error): it is refused, never acknowledged."""

    http_status = 503
    kind = "outbox_unavailable"


class BodyCodec(Protocol):
    def encode(self, body: bytes) -> bytes: ...
    def decode(self, stored: bytes) -> bytes: ...


class ClearBodies:
    def encode(self, body: bytes) -> bytes:
        return body

    def decode(self, stored: bytes) -> bytes:
        return stored


@dataclass(frozen=True)
class Row:
    msgid: str
    infno: str
    tx_class: str
    psn_no: str | None
    state: State
    attempts: int
    created: float
    updated: float
    deadline: float | None
    upstream: str | None
    body_digest: bytes
    request: bytes
    response: bytes | None
    outcome: str | None


@dataclass(frozen=True)
class Accepted:
    row: Row
    new: bool  # False: the msgid was known with the same body; row is the stored one


class SqliteOutbox:
    def __init__(
        self,
        path: Path,
        *,
        digest: Callable[[bytes], bytes],
        synchronous: str = "FULL",
        codec: BodyCodec | None = None,
        max_group: int = 256,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL")
        self.path = path
        self.digest = digest
        self.synchronous = synchronous
        self.codec = codec or ClearBodies()
        self.max_group = max_group
        self._queue: queue.Queue[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0
        self.operations = 0

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        ready: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="outbox-writer", daemon=True)
        self._thread.start()
        await ready

    async def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join, 10)
            self._thread = None

    def _connect(self) -> sqlite3.Connection:
        # The file is created 0600: it holds patient requests and answers.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        return conn

    def _run(self, ready: asyncio.Future[None]) -> None:
        assert self._loop is not None
        try:
            conn = self._connect()
        except sqlite3.Error as exc:
            self._loop.call_soon_threadsafe(ready.set_exception, OutboxUnavailable(f"cannot open the outbox: {exc}"))
            return
        self._loop.call_soon_threadsafe(ready.set_result, None)
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                group = [first]
                while len(group) < self.max_group:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self._queue.put(None)  # finish this group, then stop
                        break
                    group.append(item)
                self._commit_group(conn, group)
        finally:
            conn.close()

    def _commit_group(
        self, conn: sqlite3.Connection, group: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
    ) -> None:
        assert self._loop is not None
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for i, (op, fut) in enumerate(group):
                conn.execute(f"SAVEPOINT op{i}")
                try:
                    value = op(conn)
                except (GatewayError, IllegalMove, KeyError) as exc:
                    conn.execute(f"ROLLBACK TO op{i}")
                    results.append((fut, False, exc))
                else:
                    results.append((fut, True, value))
                conn.execute(f"RELEASE op{i}")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            # Nothing of this group is on disk: every caller hears so, none is told "accepted".
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            error = OutboxUnavailable(f"the outbox could not store the request ({exc}); nothing was accepted")
            results = [(fut, False, error) for _, fut in group]
        else:
            self.commits += 1
            self.operations += len(group)
        for fut, ok, value in results:
            self._loop.call_soon_threadsafe(_settle, fut, ok, value)

    async def _do(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._thread is None or self._loop is None:
            raise OutboxUnavailable("the outbox is not running")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((op, fut))
        return await fut

    # -- operations -----------------------------------------------------------------------------------------

    async def accept(
        self, *, msgid: str, infno: str, tx_class: str, psn_no: str | None, body: bytes, deadline: float | None
    ) -> Accepted:
        digest = self.digest(body)
        stored = self.codec.encode(body)

        def op(conn: sqlite3.Connection) -> Accepted:
            existing = _select(conn, msgid)
            if existing is not None:
                if existing.body_digest != digest:
                    raise MsgidConflict(
                        f"msgid {msgid} was already used for a different request ({existing.infno}); "
                        "a new request needs a new msgid"
                    )
                return Accepted(self._decoded(existing), new=False)
            now = time.time()
            conn.execute(
                _INSERT,
                (
                    msgid,
                    infno,
                    tx_class,
                    psn_no,
                    State.ACCEPTED.value,
                    0,
                    now,
                    now,
                    deadline,
                    None,
                    digest,
                    stored,
                    None,
                    None,
                ),
            )
            row = _select(conn, msgid)
            assert row is not None
            return Accepted(self._decoded(row), new=True)

        return await self._do(op)

    async def move(self, msgid: str, to: State, **fields: Any) -> Row:
        """Move a row to `to` (checked against the table of legal moves) and set fields; durable on return."""
        allowed = {"attempts", "upstream", "response", "outcome", "deadline"}
        if set(fields) - allowed:
            raise ValueError(f"cannot set {sorted(set(fields) - allowed)}")

        def op(conn: sqlite3.Connection) -> Row:
            row = _select(conn, msgid)
            if row is None:
                raise KeyError(msgid)
            if to not in MOVES[row.state]:
                raise IllegalMove(f"{msgid}: {row.state.value} -> {to.value}")
            values = dict(fields)
            if "response" in values and values["response"] is not None:
                values["response"] = self.codec.encode(values["response"])
            sets = ", ".join(f"{k} = ?" for k in ("state", "updated", *values))
            conn.execute(
                f"UPDATE outbox SET {sets} WHERE msgid = ?",  # noqa: S608 - column names are fixed above
                (to.value, time.time(), *values.values(), msgid),
            )
            new = _select(conn, msgid)
            assert new is not None
            return self._decoded(new)

        return await self._do(op)

    async def get(self, msgid: str) -> Row | None:
        row = await self._do(lambda conn: _select(conn, msgid))
        return self._decoded(row) if row else None

    async def unfinished(self) -> list[Row]:
        marks = ", ".join("?" * len(UNFINISHED))
        return await self._rows(
            f"SELECT {_COLS} FROM outbox WHERE state IN ({marks}) ORDER BY created",  # noqa: S608
            tuple(s.value for s in UNFINISHED),
        )

    async def in_doubt_for(self, psn_no: str, *, before: str) -> list[Row]:
        """Unfinished money-moving rows of a person other than `before` (which is the new request itself)."""
        marks = ", ".join("?" * len(UNFINISHED))
        return await self._rows(
            f"SELECT {_COLS} FROM outbox WHERE psn_no = ? AND tx_class = 'money_moving' AND state IN ({marks}) "  # noqa: S608
            "AND msgid != ? ORDER BY created",
            (psn_no, *(s.value for s in UNFINISHED), before),
        )

    async def recent(self, limit: int = 50, state: State | None = None) -> list[Row]:
        if state is None:
            return await self._rows(f"SELECT {_COLS} FROM outbox ORDER BY created DESC LIMIT ?", (limit,))  # noqa: S608
        return await self._rows(
            f"SELECT {_COLS} FROM outbox WHERE state = ? ORDER BY created DESC LIMIT ?",  # noqa: S608
            (state.value, limit),
        )

    async def prune(self, older_than: float, batch: int = 500) -> int:
        """Delete finished rows last updated before `older_than`, in small groups so the writer never stalls."""
        total = 0
        finals = tuple(s.value for s in State if s.final)
        while True:

            def op(conn: sqlite3.Connection) -> int:
                cur = conn.execute(
                    "DELETE FROM outbox WHERE rowid IN (SELECT rowid FROM outbox WHERE updated < ? "
                    "AND state IN (?, ?, ?) LIMIT ?)",
                    (older_than, *finals, batch),
                )
                return cur.rowcount

            n = await self._do(op)
            total += n
            if n < batch:
                return total
            await asyncio.sleep(0)

    async def counts(self) -> dict[str, int]:
        rows = await self._do(lambda conn: conn.execute("SELECT state, COUNT(*) FROM outbox GROUP BY state").fetchall())
        return {state: n for state, n in rows}

    async def _rows(self, sql: str, params: tuple[Any, ...]) -> list[Row]:
        def op(conn: sqlite3.Connection) -> list[Row]:
            return [_row(r) for r in conn.execute(sql, params).fetchall()]

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


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.done():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


def _row(values: tuple[Any, ...]) -> Row:
    d = dict(zip(_COLUMNS, values, strict=True))
    d["state"] = State(d["state"])
    return Row(**d)


def _select(conn: sqlite3.Connection, msgid: str) -> Row | None:
    r = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM outbox WHERE msgid = ?", (msgid,)).fetchone()  # noqa: S608
    return _row(r) if r else None
