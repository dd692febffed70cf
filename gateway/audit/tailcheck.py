"""The running gateway checks its own audit chain: each round reads what was appended since the last one and
verifies every new line's hash and its links (seq, prev), following rotation into the next file. The cost per
round is the new entries only; the first round checks the current file from its first line. A break is kept
(until a restart) and shown as ybgate_audit_chain_ok 0: it means the file was altered, cut or replaced behind the
writer's back, or the writer itself went wrong — `ybgate audit verify` then says where.

Signatures are not checked here (that needs the certificate chain and is `audit verify`'s job); the links are
what a change to any entry breaks.
"""

from __future__ import annotations

import time
from pathlib import Path

from gateway.audit.chain import link
from gateway.audit.log import audit_files
from gateway.audit.verify import parse_entry


class TailCheck:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._path: Path | None = None  # the file checked so far, and up to which byte
        self._offset = 0
        self._prev: str | None = None  # the hash and seq of the last entry checked
        self._seq = 0
        self.problem: str | None = None
        self.checked_at: float | None = None  # wall time of the last completed round
        self.entries = 0  # lines checked since start

    @property
    def ok(self) -> bool:
        return self.problem is None

    def run(self) -> bool:
        """One round (blocking file reads: run it off the event loop). False once the chain is broken."""
        if self.problem is not None:
            return False
        files = audit_files(self.directory)
        if not files:
            self.checked_at = time.time()
            return True
        if self._path is None:
            self._path, self._offset = files[-1], 0
        if self._path not in files:
            return self._broken(f"{self._path.name}: gone while being written")
        for path in files[files.index(self._path) :]:
            if path != self._path:
                self._path, self._offset = path, 0
            if not self._read(path):
                return False
        self.checked_at = time.time()
        return True

    def _read(self, path: Path) -> bool:
        size = path.stat().st_size
        if size < self._offset:
            return self._broken(f"{path.name}: cut from {self._offset} to {size} bytes")
        with path.open("rb") as f:
            f.seek(self._offset)
            data = f.read(size - self._offset)
        complete = data[: data.rfind(b"\n") + 1]  # a line still being written waits for the next round
        for raw in complete.splitlines():
            if not self._check(raw, f"{path.name} at byte {self._offset}"):
                return False
            self._offset += len(raw) + 1
        return True

    def _check(self, raw: bytes, where: str) -> bool:
        entry, why = parse_entry(raw, where)
        if entry is None:
            return self._broken(why or f"{where}: unreadable")
        if entry["hash"] != link(entry["prev"], entry):
            return self._broken(f"{where} seq {entry['seq']}: content does not match its hash (altered)")
        if self._prev is not None and (entry["prev"] != self._prev or entry["seq"] != self._seq + 1):
            return self._broken(f"{where} seq {entry['seq']}: does not follow seq {self._seq} (removed or inserted)")
        self._prev, self._seq = entry["hash"], entry["seq"]
        self.entries += 1
        return True

    def _broken(self, problem: str) -> bool:
        self.problem = problem
        return False
