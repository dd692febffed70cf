"""The append-only audit log on disk: one JSON line per final outcome, SM3-chained, written in groups.

Entries are written after the outbox committed the outcome they record (the outbox calls `record` for
every row that reached a final state), so there is never an entry for a request that was not accepted. A
crash between the outbox commit and the audit write is repaired on start: `catch_up` appends what the outbox
finished after the last audited entry, so none is missing either. A line torn by a crash is cut back to the
last complete entry when the log opens (and `audit verify` names a torn tail as such, not as tampering).

Writes are fsynced before a checkpoint's anchor is published (a published anchor never names what a power loss
could take back), at least every SYNC_EVERY seconds under load, and whenever the writer catches up. An outcome
not yet on disk at a power loss is no loss: the outbox holds it (fsynced before the HIS heard it) and catch-up
audits it again.

Files are audit-NNNNNN.jsonl in one directory; a new file starts when the current one passes
`rotate_bytes`, and its first entry links to the last hash of the previous file, so the chain spans files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from gateway.audit.anchor import Anchor, AnchorSink
from gateway.audit.chain import GENESIS, seal
from gateway.audit.format import check_and_mark
from gateway.audit.signers import rotation_fields
from gateway.blocking import BlockingWorker
from gateway.crypto import Certificate, SM2PrivateKey, sm3

log = structlog.get_logger("gateway.audit")

#: seconds before the newest audited outcome from which catch-up compares the outbox with the chain
CATCH_UP_MARGIN = 5.0
#: pauses between tries to write a batch the disk refused, seconds
RETRY_FIRST, RETRY_MAX = 0.1, 5.0
#: how long a stop waits for a refused batch to be written
CLOSE_WAIT = 5.0
#: the longest a written batch stays without an fsync while more keep coming, seconds
SYNC_EVERY = 1.0
#: the shortest time between two writes while outcomes keep coming, seconds: each write is a round trip to the
#: writer thread, and nothing waits for an entry to be written (a drain does not wait this out)
WRITE_EVERY = 0.05


@dataclass(frozen=True)
class Outcome:
    """What the audit records of one finished request (no bodies, no patient data: digests only)."""

    msgid: str
    infno: str
    state: str
    outcome: str | None
    upstream: str | None
    request_sm3: bytes  # the outbox's digest of the request: computed once, when it was accepted
    response: bytes | None
    finished: float  # when the outbox recorded the final state (its `updated`)
    client: str | None = None
    completed: tuple[str, ...] = ()  # the envelope fields the gateway filled in for the HIS


def audit_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("audit-*.jsonl"))


def last_entry(path: Path) -> tuple[dict[str, Any] | None, int]:
    """The last complete entry of a file and the byte length up to it (a torn tail after it is excluded)."""
    data = path.read_bytes()
    end = len(data)
    while end > 0:
        start = data.rfind(b"\n", 0, end - 1) + 1
        chunk = data[start:end]
        if chunk.endswith(b"\n"):
            try:
                return json.loads(chunk), end
            except ValueError:
                pass
        end = start
    return None, 0


class AuditLog:
    def __init__(
        self,
        directory: Path,
        *,
        rotate_bytes: int = 64 * 1024 * 1024,
        checkpoint_every: int = 1000,
        checkpoint_interval: float = 300.0,
        signer: SM2PrivateKey | None = None,
        signer_subject: str | None = None,
        signer_chain: Sequence[Certificate] = (),
        anchors: Sequence[AnchorSink] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.rotate_bytes = rotate_bytes
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval = checkpoint_interval
        self.signer = signer
        self.signer_subject = signer_subject
        #: the signer's certificate and intermediates, written into a rotation checkpoint as its `from`
        self.signer_chain = tuple(signer_chain)
        self.anchors = tuple(anchors)
        self._ts = 0.0
        self.seq = 0
        self.prev = GENESIS
        self.last_finished = 0.0
        self._since_checkpoint = 0
        self.clock = clock
        self._last_checkpoint = clock()
        self._file: Any = None
        self._path: Path | None = None
        self._pending: list[bytes] = []
        #: checkpoints' anchors waiting for their batch to be on disk
        self._anchors: list[Anchor] = []
        self._unsynced = False
        self._synced_at = time.monotonic()
        #: drains waiting: no waiting for more to share an fsync
        self._urgent = 0
        self._wake = asyncio.Event()  # set by a record or a drain
        self._hurry = asyncio.Event()  # set by a drain only
        self._written_at = 0.0
        self._flushing: asyncio.Task[None] | None = None
        self._writer = BlockingWorker("audit-fsync")
        self.entries = 0
        #: batches the disk refused (full, read-only, I/O error); each is kept and written again
        self.write_failures = 0

    # -- lifecycle ------------------------------------------------------------------------------------------

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o750)
        check_and_mark(self.directory)
        files = audit_files(self.directory)
        if files:
            path = files[-1]
            entry, good = last_entry(path)
            if good < path.stat().st_size:
                log.warning("audit_tail_truncated", file=str(path), kept_bytes=good, dropped=path.stat().st_size - good)
                with path.open("r+b") as f:
                    f.truncate(good)
                    os.fsync(f.fileno())
            if entry is None and len(files) > 1:
                entry, _ = last_entry(files[-2])
            if entry is not None:
                self.seq, self.prev = int(entry["seq"]), str(entry["hash"])
                if entry.get("kind") == "checkpoint":
                    self._last_checkpoint = float(entry.get("ts", self._last_checkpoint))
            self.last_finished = max((float(e.get("finished", 0.0)) for e in self._tail_entries()), default=0.0)
            self._open_file(path)
            if entry is not None and entry.get("kind") != "checkpoint":
                # The last run ended (a crash, or the previous release) with entries no checkpoint covers: sign
                # them now, so the unsigned span never outlives a restart.
                self.checkpoint()
                self._write(b"".join(self._pending))
                self._pending = []
                self._publish()
        else:
            self._open_file(self.directory / "audit-000001.jsonl")

    def _tail_entries(self) -> list[dict[str, Any]]:
        """The outcome entries of the last two files (catch-up looks only at the recent end of the chain)."""
        entries = []
        for path in audit_files(self.directory)[-2:]:
            for raw in path.read_bytes().splitlines():
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                if entry.get("kind") == "outcome":
                    entries.append(entry)
        return entries

    def catch_up_since(self) -> float:
        """Where the outbox's finished rows must be compared with the chain: a little before the newest audited
        outcome (rows of one commit group share their time within milliseconds)."""
        return max(0.0, self.last_finished - CATCH_UP_MARGIN)

    def recent_keys(self) -> set[tuple[str, str]]:
        """(msgid, state) of the audited outcomes from catch_up_since() on: those are not appended again."""
        since = self.catch_up_since()
        return {(e["msgid"], e["state"]) for e in self._tail_entries() if float(e.get("finished", 0.0)) >= since}

    def _open_file(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        self._file = os.fdopen(fd, "ab", buffering=0)
        self._path = path

    async def drain(self) -> None:
        """Wait until everything recorded so far is written and fsynced."""
        self._urgent += 1
        self._wake.set()
        self._hurry.set()
        try:
            while self._flushing is not None:
                await asyncio.shield(self._flushing)
        finally:
            self._urgent -= 1

    async def close(self) -> None:
        if self._since_checkpoint and self._file is not None:
            self.checkpoint()  # a clean stop leaves no unsigned span
        try:
            async with asyncio.timeout(CLOSE_WAIT):
                await self.drain()
        except TimeoutError:  # a disk that keeps refusing: one last try below, then the catch-up's turn
            if self._flushing is not None:
                self._flushing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._flushing
        if self._pending or self._unsynced:
            try:
                await self._flush()
            except OSError as exc:
                # The next start's catch-up audits these outcomes again from the outbox (catch_up_since).
                log.error(  # noqa: TRY400 - the errno says it; a traceback adds nothing
                    "audit_unwritten_at_stop", error=exc.strerror, pending=len(self._pending)
                )
        if self._file is not None:
            self._file.close()
            self._file = None
        self._writer.stop()

    def configure(self, rotate_bytes: int, checkpoint_every: int, checkpoint_interval: float) -> None:
        """New settings from a reload. A new cadence is declared at once in a checkpoint: `audit verify` holds the
        entries after a checkpoint to the cadence it declares, so the change must not wait for the next one."""
        self.rotate_bytes = rotate_bytes
        if (checkpoint_every, checkpoint_interval) == (self.checkpoint_every, self.checkpoint_interval):
            return
        self.checkpoint_every, self.checkpoint_interval = checkpoint_every, checkpoint_interval
        self.checkpoint()
        self._start_flush()
        log.info("audit_cadence_changed", every=checkpoint_every, interval=checkpoint_interval)

    # -- writing --------------------------------------------------------------------------------------------

    def record(self, outcomes: Iterable[Outcome]) -> None:
        """Chain entries for outcomes the outbox has committed; written and fsynced in the background, in
        groups (called from the event loop)."""
        for o in outcomes:
            self._append(
                {
                    "kind": "outcome",
                    "ts": round(self.clock(), 3),
                    "finished": o.finished,
                    "msgid": o.msgid,
                    "infno": o.infno,
                    "state": o.state,
                    "outcome": o.outcome,
                    "upstream": o.upstream,
                    "client": o.client,
                    "request_sm3": o.request_sm3.hex(),
                    "response_sm3": sm3(o.response).hex() if o.response is not None else None,
                }
                # only where there were some: entries of requests sent complete read as they always did
                | ({"completed": list(o.completed)} if o.completed else {})
            )
            self.last_finished = max(self.last_finished, o.finished)
            # Checked after every entry, on the times written in the entries: `audit verify` holds the log to
            # exactly this rule (never more than checkpoint_every entries, and nothing written after an entry
            # that came checkpoint_interval after the last checkpoint, without a checkpoint between).
            if self._since_checkpoint >= self.checkpoint_every or self._ts - self._last_checkpoint >= (
                self.checkpoint_interval
            ):
                self.checkpoint()
        self._start_flush()

    def _start_flush(self) -> None:
        if self._flushing is not None:
            self._wake.set()  # a writer waiting to share its fsync has more to write
        elif self._pending or self._unsynced:
            self._flushing = asyncio.get_running_loop().create_task(self._flush_loop(), name="audit-flush")

    def rotate_signer(self, key: SM2PrivateKey, chain: Sequence[Certificate]) -> bool:
        """Certificate rotation: a checkpoint naming both certificates, signed by the old key and the new one
        (gateway.audit.signers), then the new key signs every checkpoint after it. False if `chain` is the
        certificate already in force (nothing to record)."""
        if self.signer_chain and self.signer_chain[0].der == chain[0].der:
            return False
        old = self.signer_subject
        if self.signer is not None and self.signer_chain:
            self.checkpoint(rotation_fields(self.signer_chain, chain), next_signer=key)
        self.signer, self.signer_subject, self.signer_chain = key, chain[0].subject, tuple(chain)
        self._start_flush()
        log.info("audit_signer_switched", was=old, signer=chain[0].subject, serial=f"{chain[0].serial:x}")
        return True

    def checkpoint(self, extra: dict[str, Any] | None = None, *, next_signer: SM2PrivateKey | None = None) -> None:
        """A signed entry covering the chain so far; it declares the cadence, so that a verifier holds the entries
        after it to the cadence this writer kept."""
        self._append(
            {
                "kind": "checkpoint",
                "ts": round(self.clock(), 3),
                "entries": self.entries,
                "signer": self.signer_subject,
                "every": self.checkpoint_every,
                "interval": self.checkpoint_interval,
            }
            | (extra or {}),
            signed=True,
            next_signer=next_signer,
        )
        self._since_checkpoint = 0
        self._last_checkpoint = self._ts
        if self.anchors:
            self._anchors.append(Anchor(self.seq, self.prev, self._ts))

    def _append(self, entry: dict[str, Any], *, signed: bool = False, next_signer: SM2PrivateKey | None = None) -> None:
        self._ts = float(entry["ts"])
        self.seq += 1
        entry["seq"] = self.seq  # the entry is the caller's fresh dict: no copy for one more key
        self.prev, text = seal(entry, self.prev, self.signer if signed else None, next_signer)
        self._pending.append(text)
        if not signed:
            self.entries += 1
            self._since_checkpoint += 1

    async def _flush_loop(self) -> None:
        """Write what is pending until nothing is. A batch the disk refuses stays first in line and is tried
        again (backing off up to RETRY_MAX): the chain is sealed in memory, so a gap would break it for good."""
        pause = RETRY_FIRST
        try:
            while self._pending or self._unsynced:
                if not self._urgent:
                    if not self._pending:
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
                            "audit_write_failed", error=exc.strerror, errno=exc.errno, pending=len(self._pending)
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
        batch, anchors = self._pending, self._anchors
        self._pending, self._anchors = [], []
        # An fsync costs the disk's whole flush: under load, one a second covers every batch in it. An anchor
        # waits for one, and so does a tail nothing more came to share it with (_more_within), or a drain.
        sync = bool(anchors) or not batch or self._urgent > 0 or time.monotonic() - self._synced_at >= SYNC_EVERY
        try:
            await self._writer.run(lambda: self._write(b"".join(batch), sync=sync))
        except BaseException:
            self._pending[:0] = batch  # first in line again, before what was recorded meanwhile
            self._anchors[:0] = anchors
            raise
        self._written_at = time.monotonic()
        if sync:
            self._unsynced, self._synced_at = False, self._written_at
        else:
            self._unsynced = True
        self._publish(anchors)

    def _publish(self, anchors: list[Anchor] | None = None) -> None:
        """Publish checkpoints' anchors whose entries are on disk."""
        if anchors is None:
            anchors, self._anchors = self._anchors, []
        for anchor in anchors:
            for publish in self.anchors:
                publish(anchor)

    def _write(self, data: bytes, *, sync: bool = True) -> None:
        """Append `data` (and fsync, with what was written before), whole or not at all: a write the disk cuts
        short is cut back off the file."""
        assert self._file is not None and self._path is not None
        if self._file.tell() + len(data) > self.rotate_bytes and self._file.tell() > 0:
            os.fsync(self._file.fileno())
            self._file.close()
            number = int(self._path.stem.split("-")[1]) + 1
            self._open_file(self._path.with_name(f"audit-{number:06d}.jsonl"))
            log.info("audit_rotated", file=str(self._path))
        fd = self._file.fileno()
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:  # an unbuffered write may take only part of it when the disk is nearly full
                view = view[os.write(fd, view) :]
            if sync:
                os.fsync(fd)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, start)
            raise
