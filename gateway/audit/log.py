"""The append-only audit log on disk: one JSON line per final outcome, SM3-chained, written in groups.

Entries are written after the outbox committed the outcome they record (the outbox calls `record` for
every row that reached a final state), so there is never an entry for a request that was not accepted. A
crash between the outbox commit and the audit write is repaired on start: `catch_up` appends what the outbox
finished after the last audited entry, so none is missing either. A line torn by a crash is cut back to the
last complete entry when the log opens (and `audit verify` names a torn tail as such, not as tampering).

When the lines reach the disk, and when they are fsynced, is batches.py's part.

Files are audit-NNNNNN.jsonl in one directory; a new file starts when the current one passes
`rotate_bytes`, and its first entry links to the last hash of the previous file, so the chain spans files.
"""

from __future__ import annotations

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
from gateway.audit.batches import Batches
from gateway.audit.chain import GENESIS, seal
from gateway.audit.format import check_and_mark
from gateway.audit.signers import rotation_fields
from gateway.crypto import Certificate, SM2PrivateKey, sm3
from gateway.diskspace import disk_trouble
from gateway.errors import GatewayError

log = structlog.get_logger("gateway.audit")


class AuditUnavailable(GatewayError):
    """The audit log cannot be opened or continued: the disk refuses (full, read-only, I/O error)."""


#: seconds before the newest audited outcome from which catch-up compares the outbox with the chain
CATCH_UP_MARGIN = 5.0


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
        self._batches = Batches(self._write, self._publish)
        self.entries = 0

    # -- lifecycle ------------------------------------------------------------------------------------------

    def open(self) -> None:
        """Continue the chain where the files end (cutting a torn tail, signing entries no checkpoint covers).
        Raises AuditUnavailable, naming the cause, when the disk refuses (full, read-only): the daemon does not
        start without its audit log."""
        try:
            self._open()
        except OSError as exc:
            if self._file is not None:
                self._file.close()
                self._file = None
            cause = disk_trouble(self.directory) if self.directory.is_dir() else None
            raise AuditUnavailable(
                f"cannot open the audit log in {self.directory}: {cause or exc.strerror or exc}"
            ) from None

    def _open(self) -> None:
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
                self._batches.write_now()
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

    @property
    def write_failures(self) -> int:
        """Batches the disk refused (full, read-only, I/O error); each is kept and written again."""
        return self._batches.write_failures

    async def drain(self) -> None:
        """Wait until everything recorded so far is written and fsynced."""
        await self._batches.drain()

    async def close(self) -> None:
        if self._since_checkpoint and self._file is not None:
            self.checkpoint()  # a clean stop leaves no unsigned span
        await self._batches.close()
        if self._file is not None:
            self._file.close()
            self._file = None

    def configure(self, rotate_bytes: int, checkpoint_every: int, checkpoint_interval: float) -> None:
        """New settings from a reload. A new cadence is declared at once in a checkpoint: `audit verify` holds the
        entries after a checkpoint to the cadence it declares, so the change must not wait for the next one."""
        self.rotate_bytes = rotate_bytes
        if (checkpoint_every, checkpoint_interval) == (self.checkpoint_every, self.checkpoint_interval):
            return
        self.checkpoint_every, self.checkpoint_interval = checkpoint_every, checkpoint_interval
        self.checkpoint()
        self._batches.start()
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
        self._batches.start()

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
        self._batches.start()
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
            self._batches.add_anchor(Anchor(self.seq, self.prev, self._ts))

    def _append(self, entry: dict[str, Any], *, signed: bool = False, next_signer: SM2PrivateKey | None = None) -> None:
        self._ts = float(entry["ts"])
        self.seq += 1
        entry["seq"] = self.seq  # the entry is the caller's fresh dict: no copy for one more key
        self.prev, text = seal(entry, self.prev, self.signer if signed else None, next_signer)
        self._batches.add(text)
        if not signed:
            self.entries += 1
            self._since_checkpoint += 1

    def _publish(self, anchor: Anchor) -> None:
        for publish in self.anchors:
            publish(anchor)

    def _write(self, data: bytes, sync: bool) -> None:
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
