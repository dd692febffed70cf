"""The durable outbox on PostgreSQL: the repository (gateway/relay/repository.py's Outbox) for gateways that keep
their state in a database of the site's, with the same guarantees as SqliteOutbox.

Each operation is one transaction on a pooled connection (asyncpg), committed with synchronous_commit on
whatever the server's default, so a call returns only once what it wrote is durable; an operation that refuses
raises inside its transaction, which rolls back: nothing is written. The msgid is the table's primary key, so
an INSERT of a msgid another transaction is writing waits for that one to commit and then finds its row.

Two gateways (a pair of 前置机) share one database. Each unfinished row is owned by the gateway that accepted or
claimed it (`owner`, this start's node id) under that gateway's lease (pg_lease.py). A row whose owner holds no live
lease is an orphan the other gateway claims (UPDATE … FOR UPDATE SKIP LOCKED) and settles by the class rules; a
gateway sends only while its lease surely holds, and its move into sending is fenced by ownership.

The DSN (a postgresql:// URI, with the password) is read from a secret file when the outbox starts. It is never
logged and never put into an exception: a database that cannot be reached or refuses the login is reported by
the kind of failure only (OutboxUnavailable), with the file's name to look at.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, Unpack

import asyncpg
import structlog

from gateway.platform.catalogue import TxClass
from gateway.relay import pg_schema
from gateway.relay.pg_connect import UNAVAILABLE, read_dsn, why_unavailable
from gateway.relay.pg_lease import SEPARATOR, Lease
from gateway.relay.pg_sql import (
    ACCEPT_INSERT,
    BY_SEQ,
    CLAIM,
    FINALS,
    MARKS,
    SELECT,
    SETTLED_BY,
    UNFINISHED_REVERSALS,
    fenced_move_sql,
    move_sql,
    person_sql,
    settle_sql,
    sources,
)
from gateway.relay.repository import (
    Accepted,
    InDoubtItem,
    OutboxSummary,
    OutboxUnavailable,
    nothing_to_decide,
    reversal_client,
    reversal_not_stored,
    reversal_unfinished,
    used_before,
)
from gateway.relay.rules import ordered_classes
from gateway.relay.schema import ALL, Change, Row, change_values, row_from
from gateway.relay.states import IllegalMove, Reason, RowState

T = TypeVar("T")
#: advisory lock keys of run-once jobs: this base plus the job name's CRC (the schema's lock is pg_schema's)
JOB_LOCKS = 0x79620000_00000000
log = structlog.get_logger("gateway.relay.outbox")


class PgOutbox:
    def __init__(
        self,
        dsn_file: Path,
        *,
        digest: Callable[[bytes], bytes],
        pool_size: int = 8,
        connect_timeout: float = 5.0,
        on_final: Callable[[list[Row]], None] | None = None,
        node: str | None = None,
        lease: float = 5.0,
    ) -> None:
        self.dsn_file = dsn_file
        self.lease = Lease(node, lease, self._tx)
        self.node = self.lease.node
        self.digest = digest
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        #: told of each row that reached a final state, once its COMMIT returned (the audit log listens here)
        self.on_final = on_final
        self._pool: asyncpg.Pool | None = None
        self._write_failures = 0

    @property
    def write_failures(self) -> int:
        return self._write_failures

    async def start(self) -> None:
        dsn = read_dsn(self.dsn_file)
        failed: str | None = None
        try:
            self._pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=self.pool_size,
                timeout=self.connect_timeout,
                # durable on return whatever the server's or the role's default
                server_settings={"synchronous_commit": "on", "application_name": "ybgate"},
            )
        except (*UNAVAILABLE, ValueError) as e:  # ValueError: a DSN the driver cannot parse
            failed = type(e).__name__
        del dsn
        if failed is not None:  # raised outside the handler: the driver's exception is not even its context
            raise OutboxUnavailable(why_unavailable(self.dsn_file, failed))
        assert self._pool is not None
        async with self._pool.acquire() as conn:
            await pg_schema.migrate(conn, f"the database of {self.dsn_file}")
        await self.lease.start()

    async def stop(self) -> None:
        if self._pool is not None:
            await self.lease.stop()
            await self._pool.close()
            self._pool = None

    # -- the lease -------------------------------------------------------------------------------------------

    @property
    def may_send(self) -> bool:
        """Whether this gateway's lease surely still holds (else the other gateway may have claimed its rows)."""
        return self.lease.holds

    @contextlib.asynccontextmanager
    async def alone(self, job: str) -> AsyncIterator[bool]:
        """Whether this gateway holds `job`'s advisory lock (session-level, on a connection kept for the job; let
        go at the end, or by the server when the gateway dies)."""
        if self._pool is None:
            raise OutboxUnavailable("the outbox is not started")
        key = JOB_LOCKS + zlib.crc32(job.encode())
        try:
            conn = await self._pool.acquire()
        except UNAVAILABLE as e:
            raise OutboxUnavailable(why_unavailable(self.dsn_file, type(e).__name__)) from None
        try:
            mine = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
            try:
                yield mine
            finally:
                if mine:
                    with contextlib.suppress(*UNAVAILABLE):
                        await conn.execute("SELECT pg_advisory_unlock($1)", key)
        finally:
            await self._pool.release(conn)

    async def orphans(self) -> list[Row]:
        """Unfinished rows whose gateway holds no live lease, now claimed by this one (oldest first)."""
        return await self._claim(own=False)

    async def _claim(self, *, own: bool) -> list[Row]:
        async def op(conn: Any) -> list[Row]:
            return [row_from(tuple(r)) for r in await conn.fetch(CLAIM, self.node, own)]

        rows = await self._tx(op)
        return sorted(rows, key=lambda r: r.created)

    async def _tx(self, op: Callable[[Any], Awaitable[T]], *, write: bool = True) -> T:
        if self._pool is None:
            raise OutboxUnavailable("the outbox is not started")
        pool = self._pool
        try:
            conn = await pool.acquire()
            try:
                async with conn.transaction():
                    return await op(conn)
            finally:
                await _release(pool, conn)
        except UNAVAILABLE as e:
            failed = type(e).__name__
        if write:
            self._write_failures += 1
        log.warning("outbox database unavailable", error=failed)
        raise OutboxUnavailable(why_unavailable(self.dsn_file, failed))

    # -- the relay's operations ------------------------------------------------------------------------------

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
        """As SqliteOutbox.accept. The person's row in outbox_person_lock is locked first, so that the check for
        earlier unfinished work and the claim are one decision across connections (and gateways)."""
        digest = self.digest(body)
        ordered = psn_no is not None and tx_class in ordered_classes()

        async def op(conn: Any) -> Accepted:
            if only_while_in_doubt is not None:
                original = await _select(conn, only_while_in_doubt, lock=True)
                if original is None or original.state is not RowState.IN_DOUBT:
                    state = original.state.value if original else "gone"
                    raise reversal_not_stored(only_while_in_doubt, state)
                owner = await conn.fetchval("SELECT owner FROM outbox WHERE msgid = $1", only_while_in_doubt)
                if owner != self.node:  # claimed by the other gateway after this one's lease lapsed: its to settle
                    raise reversal_not_stored(only_while_in_doubt, f"claimed by {owner}")
            blockers: tuple[str, ...] = ()
            if ordered:
                await conn.execute(
                    "INSERT INTO outbox_person_lock (psn_no) VALUES ($1) "
                    "ON CONFLICT (psn_no) DO UPDATE SET psn_no = EXCLUDED.psn_no",
                    psn_no,
                )
                if send:
                    classes = sorted(c.value for c in ordered_classes())
                    found = await conn.fetch(person_sql(len(classes), earlier=False), psn_no, *classes, msgid)
                    blockers = tuple(r[0] for r in found)
            claim, attempts = (RowState.SENDING, 1) if send and not blockers else (RowState.ACCEPTED, 0)
            now = time.time()
            values: tuple[Any, ...] = (msgid, infno, tx_class.value, psn_no, claim.value, attempts, now, now)
            values += (deadline, None, digest, body, None, None, client, None, None, ",".join(completed) or None)
            values += (self.node,)
            inserted = await conn.fetchrow(ACCEPT_INSERT, *values)
            if inserted is not None:
                return Accepted(row_from(tuple(inserted)), new=True, blockers=blockers)
            existing = await _select(conn, msgid)
            assert existing is not None
            if existing.body_digest != digest:
                raise used_before(msgid, existing.infno)
            return Accepted(existing, new=False)

        return await self._tx(op)

    async def move(self, msgid: str, to: RowState, **fields: Unpack[Change]) -> Row:
        values = change_values(to, fields)
        # A move into sending is the step before a send: only by the row's owner (see the module's doc). A move
        # into a final state names this gateway as the one that settled the row, whoever owned it before.
        fenced = to is RowState.SENDING
        sql = (fenced_move_sql if fenced else settle_sql if to.final else move_sql)(to, tuple(values))
        params: tuple[Any, ...] = (to.value, time.time(), *values.values(), msgid, list(sources(to)))
        if fenced or to.final:
            params += (self.node,)

        async def op(conn: Any) -> Row:
            new = await conn.fetchrow(sql, *params)
            if new is not None:
                return row_from(tuple(new))
            row = await _select(conn, msgid)
            if row is None:
                raise KeyError(msgid)
            if fenced and row.state.value in sources(to):
                raise IllegalMove(f"{msgid}: claimed by the other gateway of the pair; not sent from here")
            raise IllegalMove(f"{msgid}: {row.state.value} -> {to.value}")

        row = await self._tx(op)
        if row.state.final and self.on_final is not None:
            self.on_final([row])
        return row

    async def decide(self, msgid: str, to: RowState, outcome: str) -> Row:
        """As SqliteOutbox.decide; the row is locked while its 冲正s are looked at."""
        reason = Reason.OPS.value if to is RowState.FAILED else None

        async def op(conn: Any) -> Row:
            row = await _select(conn, msgid, lock=True)
            if row is None or row.state is not RowState.IN_DOUBT:
                state = row.state.value if row else "not in the outbox"
                raise nothing_to_decide(msgid, state, row.outcome if row else None)
            open_reversals = [r[0] for r in await conn.fetch(UNFINISHED_REVERSALS, reversal_client(msgid))]
            if open_reversals:
                raise reversal_unfinished(msgid, open_reversals)
            new = await conn.fetchrow(
                settle_sql(to, ("outcome", "reason")),
                *(to.value, time.time(), outcome, reason, msgid, list(sources(to)), self.node),
            )
            return row_from(tuple(new))

        row = await self._tx(op)
        if self.on_final is not None:
            self.on_final([row])
        return row

    async def get(self, msgid: str) -> Row | None:
        return await self._tx(lambda conn: _select(conn, msgid), write=False)

    async def holds(self, msgid: str) -> bool:
        """Whether it holds `msgid` (a read of its own: nothing here queues behind writes)."""

        async def op(conn: Any) -> bool:
            return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM outbox WHERE msgid = $1)", msgid))

        return await self._tx(op, write=False)

    async def reversals_of(self, msgid: str) -> list[Row]:
        return await self._rows(f"SELECT {ALL} FROM outbox WHERE client = $1 {BY_SEQ}", reversal_client(msgid))  # noqa: S608

    async def unfinished(self) -> list[Row]:
        """Claimed, the unfinished rows this gateway is to settle (repository.Outbox.unfinished)."""
        return await self._claim(own=True)

    async def in_doubt_for(self, psn_no: str, *, before: str) -> list[Row]:
        classes = sorted(c.value for c in ordered_classes())
        return await self._rows(person_sql(len(classes), earlier=True), psn_no, *classes, before)

    # -- views and housekeeping ------------------------------------------------------------------------------

    async def recent(self, limit: int = 50, state: RowState | None = None) -> list[Row]:
        if state is None:
            return await self._rows(f"SELECT {ALL} FROM outbox ORDER BY created DESC LIMIT $1", limit)  # noqa: S608
        return await self._rows(
            f"SELECT {ALL} FROM outbox WHERE state = $1 ORDER BY created DESC LIMIT $2",  # noqa: S608
            state.value,
            limit,
        )

    async def prune(self, older_than: float, batch: int = 500) -> int:
        """Delete finished rows last updated before `older_than`, in small transactions."""
        total = 0
        while True:

            async def op(conn: Any) -> int:
                status = await conn.execute(
                    "DELETE FROM outbox WHERE msgid IN (SELECT msgid FROM outbox WHERE updated < $1 "
                    "AND state = ANY($2::text[]) LIMIT $3)",
                    older_than,
                    list(FINALS),
                    batch,
                )
                return int(status.split()[-1])

            n = await self._tx(op)
            total += n
            if n < batch:
                return total
            await asyncio.sleep(0)

    async def summary(self, in_doubt_limit: int = 20) -> OutboxSummary:
        async def op(conn: Any) -> OutboxSummary:
            counts = {r[0]: r[1] for r in await conn.fetch("SELECT state, COUNT(*) FROM outbox GROUP BY state")}
            oldest = await conn.fetchval(f"SELECT MIN(created) FROM outbox WHERE state IN ({MARKS})")  # noqa: S608
            doubt = await conn.fetch(
                "SELECT msgid, infno, created, updated, outcome FROM outbox WHERE state = $1 ORDER BY created LIMIT $2",
                RowState.IN_DOUBT.value,
                in_doubt_limit,
            )
            items = tuple(InDoubtItem(*r) for r in doubt)
            return OutboxSummary(counts, oldest, items[0].created if items else None, items)

        return await self._tx(op, write=False)

    async def counts(self) -> dict[str, int]:
        async def op(conn: Any) -> dict[str, int]:
            return {r[0]: r[1] for r in await conn.fetch("SELECT state, COUNT(*) FROM outbox GROUP BY state")}

        return await self._tx(op, write=False)

    async def finished_since(self, since: float) -> list[Row]:
        """The final rows this node settled (in this start or an earlier one): each gateway of the pair keeps its
        own audit chain, and an outcome the other gateway settled is in the other's."""
        return await self._rows(SETTLED_BY, since, list(FINALS), self.lease.name + SEPARATOR)

    async def between(self, start: float, end: float, infnos: frozenset[str]) -> list[Row]:
        return await self._rows(
            f"SELECT {ALL} FROM outbox WHERE created >= $1 AND created < $2 AND infno = ANY($3::text[]) "  # noqa: S608
            "ORDER BY created",
            start,
            end,
            sorted(infnos),
        )

    async def _rows(self, sql: str, *params: Any) -> list[Row]:
        async def op(conn: Any) -> list[Row]:
            return [row_from(tuple(r)) for r in await conn.fetch(sql, *params)]

        return await self._tx(op, write=False)


async def _release(pool: Any, conn: Any) -> None:
    """Give a connection back. Its reset fails when the server went away after the transaction ended: what the
    transaction returned (committed) stands, and the pool has already dropped the connection for a new one."""
    try:
        await pool.release(conn)
    except UNAVAILABLE as e:
        log.info("outbox connection dropped on release", error=type(e).__name__)


async def _select(conn: Any, msgid: str, *, lock: bool = False) -> Row | None:
    r = await conn.fetchrow(SELECT + (" FOR UPDATE" if lock else ""), msgid)
    return row_from(tuple(r)) if r else None
