"""The durable outbox: every HIS request is on disk before it is acknowledged, and every state it passes through.

SQLite in WAL mode with synchronous=FULL, so a commit survives power loss. Operations are committed in
groups: all operations submitted while the previous COMMIT was on the disk go into one transaction and one
fsync, and each caller's future resolves only after the group's COMMIT returned. An operation that refuses
(a msgid conflict, an illegal move) does so before it writes, so it never undoes the others in its group.
Durability then costs one fsync per group, not per request.

Checkpoints (copying the WAL back into the database file) are taken out of the COMMITs: SQLite's automatic one
stalls whichever group's COMMIT crosses its threshold (2 ms on the p99 of an outbox round trip). Every
CHECKPOINT_COMMITS commits, a connection and thread of their own copy the WAL while groups go on committing;
then, between two groups, the writer copies the few frames committed meanwhile, so the next transaction
starts the WAL over from its beginning (a WAL never fully copied would grow without end under steady load).

Bodies are stored in clear inside a file only the service user can read (the state directory is 0750, the
database 0600): the request bodies are what the audit and ops tools need to show. BodyCodec is the seam for
SM4 encryption at rest with a key from the key store, should a site require it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import structlog

from gateway.blocking import BlockingWorker
from gateway.errors import GatewayError
from gateway.platform.catalogue import TxClass
from gateway.relay import outbox_format
from gateway.relay.rules import ordered_classes
from gateway.relay.states import MOVES, UNFINISHED, IllegalMove, State

T = TypeVar("T")

log = structlog.get_logger("gateway.relay.outbox")

#: commits between two checkpoints; ~5 WAL pages a commit keeps the WAL near the size SQLite's own default keeps
CHECKPOINT_COMMITS = 200

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
    outcome TEXT,
    client TEXT,
    doubt_clock TEXT
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
    "client",
    "doubt_clock",
)
#: columns added after the first release, with their types: an older outbox gets them on open
_ADDED = {"client": "TEXT", "doubt_clock": "TEXT"}
_COLS = ", ".join(_COLUMNS)
# Column names are constants of this module; values always travel as parameters.
_INSERT = f"INSERT INTO outbox ({_COLS}) VALUES ({', '.join('?' * len(_COLUMNS))}) ON CONFLICT(msgid) DO NOTHING"  # noqa: S608


_UNFINISHED_VALUES = tuple(s.value for s in UNFINISHED)
_MARKS = ", ".join("?" * len(UNFINISHED))


@functools.cache
def _person_sql(classes: int, earlier: bool) -> str:
    """Unfinished rows of a person in the ordered classes (rules.ordered_classes). Only work accepted before the
    request waits for it (rowid: the order of acceptance, whatever the wall clock did); a later request for the
    same person waiting in turn must not block an earlier one, or both wait until their deadlines."""
    where = f"psn_no = ? AND tx_class IN ({', '.join('?' * classes)}) AND state IN ({_MARKS})"
    if earlier:
        return f"SELECT {_COLS} FROM outbox WHERE {where} AND rowid < (SELECT rowid FROM outbox WHERE msgid = ?) ORDER BY rowid"  # noqa: S608, E501 - placeholders only
    return f"SELECT msgid FROM outbox WHERE {where} AND msgid != ? ORDER BY created"  # noqa: S608 - placeholders only


def _person_params(psn_no: str, msgid: str) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    classes = tuple(sorted(c.value for c in ordered_classes()))
    return classes, (psn_no, *classes, *_UNFINISHED_VALUES, msgid)


#: for each state, the states a row may be moved from into it
_SOURCES: dict[State, tuple[str, ...]] = {
    to: tuple(src.value for src, targets in MOVES.items() if to in targets) for to in State
}


class MsgidConflict(GatewayError):
    """The same msgid arrived with a different body: one of them is a HIS bug, and neither may be guessed."""

    http_status = 409
    kind = "msgid_conflict"


class OutboxUnavailable(GatewayError):
    """The outbox cannot store the request (disk full, I/O error): it is refused, never acknowledged."""

    http_status = 503
    kind = "outbox_unavailable"


class NotInDoubt(GatewayError):
    """A resolution step found its row no longer in doubt (decided meanwhile), or an ops decision found a 冲正 of
    the row unfinished: the step is refused before anything is written."""

    http_status = 409
    kind = "not_in_doubt"


def reversal_client(msgid: str) -> str:
    """The `client` of a 2601 the gateway sends to undo `msgid`: how a 冲正 row names its original."""
    return f"ybgate:reversal of {msgid}"


_UNFINISHED_REVERSALS = f"SELECT msgid FROM outbox WHERE client = ? AND state IN ({_MARKS})"  # noqa: S608


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
    tx_class: TxClass
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
    client: str | None = None  # who sent it: the policy's client name (or the peer, without a policy)
    doubt_clock: str | None = None  # when it last went in doubt, as settleclock.stamp() wrote it


@dataclass(frozen=True)
class Accepted:
    row: Row
    new: bool  # False: the msgid was known with the same body; row is the stored one
    blockers: tuple[str, ...] = ()  # earlier unfinished money-moving msgids of the same person, oldest first


@dataclass(frozen=True)
class InDoubtItem:
    msgid: str
    infno: str
    created: float
    updated: float
    outcome: str | None


@dataclass(frozen=True)
class OutboxSummary:
    counts: dict[str, int]
    oldest_unfinished: float | None  # Unix time the oldest unfinished row was accepted
    oldest_in_doubt: float | None
    in_doubt: tuple[InDoubtItem, ...]  # oldest first, bounded


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
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL")
        self.path = path
        self.digest = digest
        self.synchronous = synchronous
        self.codec = codec or ClearBodies()
        self.max_group = max_group
        #: told of each row that reached a final state, once its COMMIT returned (the audit log listens here)
        self.on_final = on_final
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The fsync of a COMMIT is the only slow step; it runs on this one thread (SQLite releases the GIL
        # while it waits on the disk). Statements run on the event loop between commits: they take tens of
        # microseconds, and running them here avoids a thread handoff and a GIL contest per operation.
        self._committer: BlockingWorker | None = None
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._group_task: asyncio.Task[None] | None = None
        self._checkpointer: BlockingWorker | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._checkpointed_at = 0
        self._catch_up = False
        self.commits = 0
        self.operations = 0
        self.write_failures = 0  # groups the disk refused (full, read-only, I/O error)
        self.checkpoints = 0

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        try:
            self._conn = self._connect()
        except (sqlite3.Error, OSError) as exc:
            # SQLite reports a full or read-only disk as a plain "disk I/O error" while opening the WAL.
            cause = disk_trouble(self.path.parent) or str(exc)
            raise OutboxUnavailable(f"cannot open the outbox {self.path}: {cause}") from None
        self._committer = BlockingWorker("outbox-commit")
        self._checkpointer = BlockingWorker("outbox-checkpoint")

    async def stop(self) -> None:
        """Finish what was submitted (every caller gets its answer), then close."""
        while self._group_task is not None:
            await asyncio.shield(self._group_task)
        if self._checkpoint_task is not None:
            await asyncio.shield(self._checkpoint_task)
        for worker in (self._committer, self._checkpointer):
            if worker is not None:
                worker.stop()
        self._committer = self._checkpointer = None
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _connect(self) -> sqlite3.Connection:
        # The file is created 0600: it holds patient requests and answers.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        # Used from the loop thread and the committer thread, never at the same time: a group's statements
        # run before its COMMIT is handed over, the next group's only after that COMMIT returned.
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        outbox_format.refuse_newer(conn, self.path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # see the module's docstring: checkpoints run elsewhere
        conn.execute("PRAGMA journal_size_limit=67108864")  # a burst's WAL is cut back to 64 MiB once copied
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(SCHEMA)
        # Outboxes written before a column existed get it (rows kept from then have none).
        have = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
        for name, kind in _ADDED.items():
            if name not in have:
                conn.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")  # constants of this module
        outbox_format.mark(conn)
        return conn

    async def _groups(self) -> None:
        """Commit groups one after another while work is waiting: everything submitted while a COMMIT is
        on the disk forms the next group, so the fsync count follows the disk, not the request rate."""
        assert self._conn is not None and self._loop is not None
        try:
            while self._pending:
                await asyncio.sleep(0)  # let callers of this loop iteration join the group
                if self._catch_up:
                    self._catch_up = False
                    await self._finish_checkpoint(self._conn)
                group, self._pending = self._pending[: self.max_group], self._pending[self.max_group :]
                await self._commit_group(self._conn, group)
        finally:
            self._group_task = None

    async def _commit_group(
        self, conn: sqlite3.Connection, group: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]]
    ) -> None:
        assert self._loop is not None and self._committer is not None
        results: list[tuple[asyncio.Future[Any], bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            # Every operation refuses (raises) before it writes anything, so a refused one needs no savepoint
            # of its own and never undoes the others in its group.
            for op, fut in group:
                try:
                    results.append((fut, True, op(conn)))
                except (GatewayError, IllegalMove, KeyError) as exc:
                    results.append((fut, False, exc))
            await self._committer.run(lambda: conn.execute("COMMIT"))
        except sqlite3.Error as exc:
            # Nothing of this group is on disk: every caller hears so, none is told "accepted".
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            self.write_failures += 1
            cause = disk_trouble(self.path.parent) or str(exc)
            log.error("outbox_write_failed", operations=len(group), cause=cause)  # noqa: TRY400 - no traceback: the cause says it
            error = OutboxUnavailable(f"the outbox could not store the request ({cause}); nothing was accepted")
            results = [(fut, False, error) for _, fut in group]
        except Exception:
            # A defect in an operation: the group is undone and every caller answered, so the outbox is not left
            # inside an open transaction that would refuse every later group.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            log.exception("outbox_group_failed", operations=len(group))
            error = OutboxUnavailable("the outbox failed on an internal error; nothing of this group was stored")
            results = [(fut, False, error) for _, fut in group]
        else:
            self.commits += 1
            self.operations += len(group)
            if self.commits - self._checkpointed_at >= CHECKPOINT_COMMITS and self._checkpoint_task is None:
                self._checkpointed_at = self.commits
                self._checkpoint_task = self._loop.create_task(self._checkpoint(), name="outbox-checkpoint")
        _settle_all(results)

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database without holding up writers (PASSIVE); the next write transaction then
        starts the WAL over from its beginning. A failure (disk full) is logged and tried again later: the
        WAL only grows meanwhile, nothing committed is at risk."""
        assert self._checkpointer is not None
        try:
            if self._checkpoint_conn is None:
                self._checkpoint_conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                self._checkpoint_conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn = self._checkpoint_conn
            busy, frames, copied = await self._checkpointer.run(lambda: _passive_checkpoint(conn))
            self.checkpoints += 1
            if busy:
                log.info("outbox_checkpoint_busy", wal_frames=frames, copied=copied)
            elif self._group_task is None:
                # Nobody writing: copy what was committed meanwhile from here, without the writer's help.
                await self._checkpointer.run(lambda: _passive_checkpoint(conn))
            else:
                self._catch_up = True
        except sqlite3.Error as exc:
            log.warning("outbox_checkpoint_failed", error=str(exc))
        finally:
            self._checkpoint_task = None

    async def _finish_checkpoint(self, conn: sqlite3.Connection) -> None:
        assert self._committer is not None
        try:
            await self._committer.run(lambda: _passive_checkpoint(conn))
        except sqlite3.Error as exc:
            log.warning("outbox_checkpoint_failed", error=str(exc), step="catch-up")

    async def _do(self, op: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None or self._loop is None:
            raise OutboxUnavailable("the outbox is not running")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._pending.append((op, fut))
        if self._group_task is None:
            self._group_task = self._loop.create_task(self._groups(), name="outbox-groups")
        return await fut

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
                if original is None or original.state is not State.IN_DOUBT:
                    state = original.state.value if original else "gone"
                    raise NotInDoubt(f"{only_while_in_doubt} is {state}: no 冲正 for it is stored")
            blockers: tuple[str, ...] = ()
            if send and psn_no and tx_class in ordered_classes():
                classes, params = _person_params(psn_no, msgid)
                blockers = tuple(r[0] for r in conn.execute(_person_sql(len(classes), earlier=False), params))
            state, attempts = (State.SENDING, 1) if send and not blockers else (State.ACCEPTED, 0)
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
                None,
            )
            # Insert first and look only on a conflict: a new msgid (nearly every request) costs one statement.
            if conn.execute(_INSERT, values).rowcount:
                return Accepted(self._decoded(_row(values)), new=True, blockers=blockers)
            existing = _select(conn, msgid)
            assert existing is not None
            if existing.body_digest != digest:
                raise MsgidConflict(
                    f"msgid {msgid} was already used for a different request ({existing.infno}); "
                    "a new request needs a new msgid"
                )
            return Accepted(self._decoded(existing), new=False)

        return await self._do(op)

    async def move(self, msgid: str, to: State, **fields: Any) -> Row:
        """Move a row to `to` (checked against the table of legal moves) and set fields; durable on return."""
        allowed = {"attempts", "upstream", "response", "outcome", "deadline", "doubt_clock"}
        if set(fields) - allowed:
            raise ValueError(f"cannot set {sorted(set(fields) - allowed)}")

        values = dict(fields)
        if "response" in values and values["response"] is not None:
            values["response"] = self.codec.encode(values["response"])
        sql = _move_sql(to, tuple(values))
        sources = _SOURCES[to]

        def op(conn: sqlite3.Connection) -> Row:
            new = conn.execute(sql, (to.value, time.time(), *values.values(), msgid, *sources)).fetchone()
            if new is not None:
                return self._decoded(_row(new))
            row = _select(conn, msgid)
            if row is None:
                raise KeyError(msgid)
            raise IllegalMove(f"{msgid}: {row.state.value} -> {to.value}")

        row = await self._do(op)
        if row.state.final and self.on_final is not None:
            self.on_final([row])  # committed: the audit log may record it
        return row

    async def decide(self, msgid: str, to: State, outcome: str) -> Row:
        """Ops' decision on an in-doubt row, refused (NotInDoubt, nothing written) when the row is no longer in
        doubt or a 冲正 of it is unfinished: that 2601 may have reversed it, and only its answer can tell."""
        sql = _move_sql(to, ("outcome",))

        def op(conn: sqlite3.Connection) -> Row:
            row = _select(conn, msgid)
            if row is None or row.state is not State.IN_DOUBT:
                state = row.state.value if row else "not in the outbox"
                raise NotInDoubt(f"{msgid} is {state} meanwhile: nothing to decide ({row.outcome if row else ''})")
            open_reversals = [
                r[0] for r in conn.execute(_UNFINISHED_REVERSALS, (reversal_client(msgid), *_UNFINISHED_VALUES))
            ]
            if open_reversals:
                raise NotInDoubt(
                    f"{msgid}: 冲正 {', '.join(open_reversals)} went out and its answer was lost, so the platform may "
                    "have reversed it; the gateway asks again (same omsgid) and settles it: decide after that"
                )
            new = conn.execute(sql, (to.value, time.time(), outcome, msgid, *_SOURCES[to])).fetchone()
            return self._decoded(_row(new))

        row = await self._do(op)
        if self.on_final is not None:
            self.on_final([row])
        return row

    async def reversals_of(self, msgid: str) -> list[Row]:
        """The 2601 rows the gateway stored to undo `msgid`, oldest first."""
        return await self._rows(
            f"SELECT {_COLS} FROM outbox WHERE client = ? ORDER BY rowid",  # noqa: S608
            (reversal_client(msgid),),
        )

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
        """Unfinished money-moving rows of a person accepted before `before` (the request that waits), oldest
        first."""
        classes, params = _person_params(psn_no, before)
        return await self._rows(_person_sql(len(classes), earlier=True), params)

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
                    "DELETE FROM outbox WHERE rowid IN (SELECT rowid FROM outbox WHERE updated < ? "  # noqa: S608
                    f"AND state IN ({', '.join('?' * len(finals))}) LIMIT ?)",
                    (older_than, *finals, batch),
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
                (State.IN_DOUBT.value, in_doubt_limit),
            ).fetchall()
            items = tuple(InDoubtItem(*r) for r in doubt)
            return OutboxSummary(counts, oldest_unfinished, items[0].created if items else None, items)

        return await self._do(op)

    async def finished_since(self, since: float) -> list[Row]:
        """Rows that reached a final state at or after `since` (the audit log's catch-up after a crash)."""
        finals = tuple(s.value for s in State if s.final)
        return await self._rows(
            f"SELECT {_COLS} FROM outbox WHERE updated >= ? AND state IN ({', '.join('?' * len(finals))}) "  # noqa: S608
            "ORDER BY updated",
            (since, *finals),
        )

    async def between(self, start: float, end: float, infnos: frozenset[str]) -> list[Row]:
        """Rows of these transactions created in [start, end), oldest first (reconciliation's view of a day)."""
        marks = ", ".join("?" * len(infnos))
        sql = f"SELECT {_COLS} FROM outbox WHERE created >= ? AND created < ? AND infno IN ({marks}) ORDER BY created"  # noqa: S608 - placeholders only
        return await self._rows(sql, (start, end, *sorted(infnos)))

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


def disk_trouble(directory: Path, need: int = 1024 * 1024) -> str | None:
    """Why a state directory cannot take writes, in words ops can act on; None when it looks writable."""
    try:
        fs = os.statvfs(directory)
    except OSError as exc:
        return f"{directory}: {exc.strerror}"
    if fs.f_flag & os.ST_RDONLY:
        return f"the state disk holding {directory} is mounted read-only"
    free = fs.f_bavail * fs.f_frsize
    if free < need:
        return f"no space left on the state disk holding {directory} ({free} bytes free): free space, then start"
    return None


def _passive_checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
    """(busy, frames in the WAL, frames copied to the database)."""
    busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return busy, frames, copied


def _settle_all(results: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for fut, ok, value in results:
        if fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


def _row(v: tuple[Any, ...]) -> Row:
    # Positional, in _COLUMNS order: a row is built twice per request, and a dict round trip costs more.
    return Row(v[0], v[1], TxClass(v[2]), v[3], State(v[4]), *v[5:])


@functools.cache
def _move_sql(to: State, fields: tuple[str, ...]) -> str:
    """The UPDATE for a move; the legal-move check is part of it: one statement, no read-back. Built once per
    target state and field set (a handful in all)."""
    sets = ", ".join(f"{k} = ?" for k in ("state", "updated", *fields))
    sources = ", ".join("?" * len(_SOURCES[to]))
    return f"UPDATE outbox SET {sets} WHERE msgid = ? AND state IN ({sources}) RETURNING {_COLS}"  # noqa: S608


def _select(conn: sqlite3.Connection, msgid: str) -> Row | None:
    r = conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM outbox WHERE msgid = ?", (msgid,)).fetchone()  # noqa: S608
    return _row(r) if r else None
