"""The SQLite outbox's write engine: group commit and checkpoints, with no knowledge of what the rows mean.

SQLite in WAL mode with synchronous=FULL, so a commit survives power loss. Operations are committed in groups:
all operations submitted while the previous COMMIT was on the disk go into one transaction and one fsync, and
each caller's future resolves only after the group's COMMIT returned. An operation that refuses (raises a
GatewayError, IllegalMove or KeyError) does so before it writes, so it never undoes the others in its group.
Durability then costs one fsync per group, not per request.

Checkpoints (copying the WAL back into the database file) are taken out of the COMMITs: SQLite's automatic one
stalls whichever group's COMMIT crosses its threshold (2 ms on the p99 of an outbox round trip). Every
CHECKPOINT_COMMITS commits, a connection and thread of their own copy the WAL while groups go on committing;
then, between two groups, the writer copies the few frames committed meanwhile, so the next transaction
starts the WAL over from its beginning (a WAL never fully copied would grow without end under steady load).

A WAL file keeps its size when it starts over (up to journal_size_limit), so after a disk-full episode it would
hold on to the space ops freed, and grow into it again. Once writes succeed again after a failure, the next
checkpoint also truncates the WAL to nothing (TRUNCATE, without waiting: while a reader or the writer is busy
it is tried again at the next checkpoint).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from gateway.blocking import BlockingWorker
from gateway.diskspace import disk_trouble
from gateway.errors import GatewayError
from gateway.relay.repository import OutboxUnavailable
from gateway.relay.states import IllegalMove

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], Any]

log = structlog.get_logger("gateway.relay.outbox")

#: commits between two checkpoints; ~5 WAL pages a commit keeps the WAL near the size SQLite's own default keeps
CHECKPOINT_COMMITS = 200


class GroupCommit:
    def __init__(
        self,
        path: Path,
        *,
        check: Callable[[sqlite3.Connection, Path], None],
        migrate: Callable[[sqlite3.Connection], None],
        synchronous: str = "FULL",
        max_group: int = 256,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError("synchronous must be FULL, EXTRA or NORMAL")
        self.path = path
        self.check = check  # refuses a file it must not touch, before anything is written to it
        self.migrate = migrate  # creates the tables, or brings an older file up to date
        self.synchronous = synchronous
        self.max_group = max_group
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The fsync of a COMMIT is the only slow step; it runs on this one thread (SQLite releases the GIL
        # while it waits on the disk). Statements run on the event loop between commits: they take tens of
        # microseconds, and running them here avoids a thread handoff and a GIL contest per operation.
        self._committer: BlockingWorker | None = None
        self._pending: list[tuple[Op, asyncio.Future[Any]]] = []
        self._group_task: asyncio.Task[None] | None = None
        self._checkpointer: BlockingWorker | None = None
        self._checkpoint_conn: sqlite3.Connection | None = None
        self._checkpoint_task: asyncio.Task[None] | None = None
        self._checkpointed_at = 0
        self._catch_up = False
        self._give_back = False  # writes failed: truncate the WAL once they succeed again
        self._truncate_later = False  # a truncation found the WAL busy: try again at the next checkpoint
        self.commits = 0
        self.operations = 0
        self.write_failures = 0  # groups the disk refused (full, read-only, I/O error)
        self.checkpoints = 0

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
        self.check(conn, self.path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute("PRAGMA wal_autocheckpoint=0")  # see the module's docstring: checkpoints run elsewhere
        conn.execute("PRAGMA journal_size_limit=67108864")  # a burst's WAL is cut back to 64 MiB once copied
        conn.execute("PRAGMA foreign_keys=ON")
        self.migrate(conn)
        return conn

    async def run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run `op` in the next group; its result once the group's COMMIT returned."""
        if self._conn is None or self._loop is None:
            raise OutboxUnavailable("the outbox is not running")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._pending.append((op, fut))
        if self._group_task is None:
            self._group_task = self._loop.create_task(self._groups(), name="outbox-groups")
        return await fut

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

    async def _commit_group(self, conn: sqlite3.Connection, group: list[tuple[Op, asyncio.Future[Any]]]) -> None:
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
            self._give_back = True
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
            due = self.commits - self._checkpointed_at >= CHECKPOINT_COMMITS
            if (due or self._give_back) and self._checkpoint_task is None:
                self._checkpointed_at = self.commits
                truncate = self._give_back or self._truncate_later
                self._give_back = self._truncate_later = False
                self._checkpoint_task = self._loop.create_task(self._checkpoint(truncate), name="outbox-checkpoint")
        _settle_all(results)

    async def _checkpoint(self, truncate: bool = False) -> None:
        """Copy the WAL into the database without holding up writers (PASSIVE); the next write transaction then
        starts the WAL over from its beginning. A failure (disk full) is logged and tried again later: the
        WAL only grows meanwhile, nothing committed is at risk."""
        assert self._checkpointer is not None
        try:
            if self._checkpoint_conn is None:
                # timeout 0: a truncation that finds the WAL busy gives up at once instead of holding the writer
                self._checkpoint_conn = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=False, timeout=0
                )
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
            if truncate:
                await self._truncate(conn)
        except sqlite3.Error as exc:
            log.warning("outbox_checkpoint_failed", error=str(exc))
        finally:
            self._checkpoint_task = None

    async def _truncate(self, conn: sqlite3.Connection) -> None:
        assert self._checkpointer is not None
        try:
            busy, frames, _ = await self._checkpointer.run(
                lambda: conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            )
        except sqlite3.OperationalError as exc:  # "database is locked": the writer held it
            busy, frames = 1, str(exc)
        if busy:
            self._truncate_later = True
            log.info("outbox_wal_truncate_busy", wal_frames=frames)
        else:
            log.info("outbox_wal_truncated")

    async def _finish_checkpoint(self, conn: sqlite3.Connection) -> None:
        assert self._committer is not None
        try:
            await self._committer.run(lambda: _passive_checkpoint(conn))
        except sqlite3.Error as exc:
            log.warning("outbox_checkpoint_failed", error=str(exc), step="catch-up")


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
