"""When the audit log's sealed lines reach the disk: in batches, on a thread of their own, fsynced in groups.

Lines are written at most every WRITE_EVERY seconds while outcomes keep coming (each write is a round trip to
the writer thread; nothing waits for an entry to be written). An fsync costs the disk's whole flush, so one
covers every batch of the last SYNC_EVERY seconds under load; a tail that nothing more came to share an fsync
with gets its own at the end of that second. Two things never wait: a drain (a stop, a test) writes and
fsyncs at once, and a checkpoint's anchor is published only after the fsync that put its line on disk (a
published anchor must never name a checkpoint a power loss could take back: `audit verify --anchor` would call
an honest log cut). An outcome the disk has not got yet is no loss: the outbox holds it, fsynced before the HIS
heard it, and the next start's catch-up audits it again.

A batch the disk refuses stays first in line and is tried again (backing off up to RETRY_MAX): the chain is
sealed in memory, so a gap would break it for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from gateway.audit.anchor import Anchor
from gateway.blocking import BlockingWorker

log = structlog.get_logger("gateway.audit")

#: pauses between tries to write a batch the disk refused, seconds
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
#: how long a stop waits for a refused batch to be written
CLOSE_WAIT = 5.0
#: the longest a written batch stays without an fsync while more keep coming, seconds
SYNC_EVERY = 1.0
#: the shortest time between two writes while outcomes keep coming, seconds
WRITE_EVERY = 0.05

#: appends bytes to the log's current file (fsyncing it, with what was written before, when told): on the
#: writer thread; raises OSError with nothing of the bytes left in the file
Write = Callable[[bytes, bool], None]


class Batches:
    def __init__(self, write: Write, publish: Callable[[Anchor], None]) -> None:
        self._write = write
        self._publish_one = publish
        self.pending: list[bytes] = []
        #: checkpoints' anchors waiting for their batch to be on disk
        self.anchors: list[Anchor] = []
        self._unsynced = False
        self._synced_at = time.monotonic()
        self._written_at = 0.0
        #: drains waiting: no waiting for more to share a write or an fsync
        self._urgent = 0
        self._wake = asyncio.Event()  # set by new lines or a drain
        self._hurry = asyncio.Event()  # set by a drain only
        self._flushing: asyncio.Task[None] | None = None
        self._writer = BlockingWorker("audit-fsync")
        #: batches the disk refused (full, read-only, I/O error); each is kept and written again
        self.write_failures = 0

    def add(self, line: bytes) -> None:
        self.pending.append(line)

    def add_anchor(self, anchor: Anchor) -> None:
        self.anchors.append(anchor)

    def start(self) -> None:
        """Have what was added written (called from the event loop)."""
        if self._flushing is not None:
            self._wake.set()  # a writer waiting to share its fsync has more to write
        elif self.pending or self._unsynced:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_loop(), name="audit-flush")

    def write_now(self) -> None:
        """Write and fsync what is pending on this thread, then publish its anchors (the log's opening, before
        the event loop writes anything)."""
        self._write(b"".join(self.pending), True)
        self.pending = []
        self.publish(self.anchors)
        self.anchors = []

    async def drain(self) -> None:
        """Wait until everything added so far is written and fsynced."""
        self._urgent += 1
        self._wake.set()
        self._hurry.set()
        try:
            while self._flushing is not None:
                await asyncio.shield(self._flushing)
        finally:
            self._urgent -= 1

    async def close(self) -> None:
        """Drain (for at most CLOSE_WAIT while the disk refuses), try once more, and end the writer thread."""
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                await self.drain()
        except TimeoutError:  # a disk that keeps refusing: one last try below, then the catch-up's turn
            if self._flushing is not None:
                self._flushing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._flushing
        if self.pending or self._unsynced:
            self._urgent += 1
            try:
                await self._flush()
            except OSError as exc:
                # The next start's catch-up audits these outcomes again from the outbox (catch_up_since).
                log.error(  # noqa: TRY400 - the errno says it; a traceback adds nothing
                    "audit_unwritten_at_stop", error=exc.strerror, pending=len(self.pending)
                )
            finally:
                self._urgent -= 1
        self._writer.stop()

    def publish(self, anchors: list[Anchor]) -> None:
        for anchor in anchors:
            self._publish_one(anchor)

    async def _flush_loop(self) -> None:
        pause = RETRY_FIRST
        try:
            while self.pending or self._unsynced:
                if not self._urgent:
                    if not self.pending:
                        if await self._more_within(SYNC_EVERY):
                            continue
                    elif (left := self._written_at + WRITE_EVERY - time.monotonic()) > 0:
                        await self._unless_hurried(left)  # more outcomes join this write meanwhile
                try:
                    await self._flush()
                except OSError as exc:
                    self.write_failures += 1
                    if pause == RETRY_FIRST:  # once per episode
                        log.error(  # noqa: TRY400 - the errno says it; a traceback adds nothing
                            "audit_write_failed", error=exc.strerror, errno=exc.errno, pending=len(self.pending)
                        )
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, RETRY_MAX)
                    continue
                if pause != RETRY_FIRST:
                    log.info("audit_write_resumed", failures=self.write_failures)
                pause = RETRY_FIRST
        finally:
            self._flushing = None

    async def _more_within(self, interval: float) -> bool:
        """Caught up, with a tail not fsynced yet: whether more comes to share its fsync before `interval` has
        passed since the last one (or a drain wants it on disk now)."""
        left = self._synced_at + interval - time.monotonic()
        if left <= 0:
            return False
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(left):
                await self._wake.wait()
                return True
        return False

    async def _unless_hurried(self, seconds: float) -> None:
        self._hurry.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._hurry.wait()

    async def _flush(self) -> None:
        batch, anchors = self.pending, self.anchors
        self.pending, self.anchors = [], []
        sync = bool(anchors) or not batch or self._urgent > 0 or time.monotonic() - self._synced_at >= SYNC_EVERY
        try:
            await self._writer.run(lambda: self._write(b"".join(batch), sync))
        except BaseException:
            self.pending[:0] = batch  # first in line again, before what was added meanwhile
            self.anchors[:0] = anchors
            raise
        self._written_at = time.monotonic()
        if sync:
            self._unsynced, self._synced_at = False, self._written_at
        else:
            self._unsynced = True
        self.publish(anchors)
