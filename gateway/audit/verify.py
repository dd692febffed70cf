"""Checking an audit chain: every link, every sequence number, every checkpoint signature.

The first break is named with its file, line, seq and msgid, and what kind of break it is: an entry whose
own hash does not match its content was altered; a link to a hash that is not the previous entry's, or a
jump in seq, means entries were removed, inserted or reordered. A last line without its newline is a write
cut short by a crash (the daemon truncates it on start), reported as such, not as tampering.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.audit.chain import GENESIS, link, signature_ok
from gateway.crypto import SM2PublicKey


@dataclass
class Report:
    entries: int = 0
    checkpoints: int = 0
    signed_checkpoints: int = 0
    problem: str | None = None
    torn_tail: str | None = None
    last_hash: str = GENESIS
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


def _lines(files: Iterable[Path]) -> Iterator[tuple[Path, int, bytes, bool]]:
    for path in files:
        data = path.read_bytes()
        parts = data.split(b"\n")
        complete = parts[:-1]
        for number, raw in enumerate(complete, 1):
            yield path, number, raw, True
        if parts[-1]:
            yield path, len(complete) + 1, parts[-1], False


def verify(files: list[Path], key: SM2PublicKey | None = None) -> Report:
    report = Report()
    prev, seq = GENESIS, 0
    first = True
    for path, number, raw, complete in _lines(files):
        where = f"{path}:{number}"
        if not complete:
            report.torn_tail = f"{where}: an incomplete last line (a write cut short by a crash)"
            break
        try:
            entry: dict[str, Any] = json.loads(raw)
        except ValueError:
            report.problem = f"{where}: not a JSON entry (altered)"
            return report
        label = f"{where} seq {entry.get('seq')} msgid {entry.get('msgid', '-')}"
        if first and entry.get("prev") != GENESIS and seq == 0:
            # Verifying a later file on its own: start from its first link.
            prev, seq = str(entry.get("prev")), int(entry.get("seq", 1)) - 1
            report.notes.append(f"chain starts at seq {seq + 1} (earlier files not given)")
        first = False
        problem = _check(entry, prev, seq, key, report)
        if problem is not None:
            report.problem = f"{label}: {problem}"
            return report
        prev, seq = str(entry["hash"]), int(entry["seq"])
    report.last_hash = prev
    if report.checkpoints and not report.signed_checkpoints and key is not None:
        report.notes.append("checkpoints are unsigned (the gateway had no identity)")
    return report


def _check(entry: dict[str, Any], prev: str, seq: int, key: SM2PublicKey | None, report: Report) -> str | None:
    if entry.get("hash") != link(str(entry.get("prev")), entry):
        return "content does not match its hash (altered)"
    if entry.get("seq") != seq + 1:
        return f"expected seq {seq + 1} (entries removed, inserted or reordered before it)"
    if entry.get("prev") != prev:
        return "does not link to the entry before it (removed, inserted or reordered)"
    if entry.get("kind") != "checkpoint":
        report.entries += 1
        return None
    report.checkpoints += 1
    if "sig" not in entry:
        return None
    if key is None:
        report.notes.append("checkpoint signatures present but no certificate given to check them")
        return None
    if not signature_ok(entry, key):
        return "checkpoint signature does not verify"
    report.signed_checkpoints += 1
    return None
