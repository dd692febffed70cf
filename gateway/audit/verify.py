"""Checking an audit chain: every link, every sequence number, every checkpoint signature, the cadence.

The first break is named with its file, line, seq and msgid, and what kind of break it is: an entry whose
own hash does not match its content was altered; a link to a hash that is not the previous entry's, or a
jump in seq, means entries were removed, inserted or reordered. A last line without its newline is a write
cut short by a crash (the daemon truncates it on start), reported as such, not as tampering; anywhere else
(the end of a file that later files follow) it is a break.

Anyone who can write the files can recompute the SM3 chain after an edit; only the sign key can make the
checkpoints after it verify again. So, given a certificate, every checkpoint must carry a valid signature,
and the entries after the last one (the span an editor would have to strip of checkpoints) must be within the
cadence the writer keeps: fewer than `every` entries, and none written after one that came `interval`
seconds after the last checkpoint. A log with no signed checkpoint at all cannot be checked with a
certificate and says so. What cadence a checkpoint declares (signed with it) wins over the one given.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.audit.chain import GENESIS, link, signature_ok
from gateway.audit.signers import Signers, rotation_entries
from gateway.crypto import Certificate, SM2PublicKey

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Cadence:
    """How often the writer checkpoints: after `every` entries, and after the first entry written `interval`
    seconds or more after the last checkpoint."""

    every: int = 1000
    interval: float = 300.0


@dataclass
class Report:
    entries: int = 0
    checkpoints: int = 0
    signed_checkpoints: int = 0
    problem: str | None = None
    torn_tail: str | None = None
    last_hash: str = GENESIS
    last_seq: int = 0
    last_where: str = "-"  # file:line of the last entry
    #: seq -> hash of every entry read (for checking published anchors)
    hashes: dict[int, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class _Span:
    """The entries since the last checkpoint (the unsigned span)."""

    cadence: Cadence
    since_ts: float | None = None  # the last checkpoint's time, if it declared its cadence (ts-based writer)
    after: str = "the start of the chain"
    first: str | None = None
    count: int = 0
    due: str | None = None  # the entry after which a checkpoint was due by time
    violation: str | None = None  # the first entry out of cadence


def _lines(files: list[Path]) -> Iterator[tuple[Path, int, bytes, bool, bool]]:
    """(file, line number, bytes, complete, in the last file)."""
    for index, path in enumerate(files):
        data = path.read_bytes()
        parts = data.split(b"\n")
        complete = parts[:-1]
        last_file = index == len(files) - 1
        for number, raw in enumerate(complete, 1):
            yield path, number, raw, True, last_file
        if parts[-1]:
            yield path, len(complete) + 1, parts[-1], False, last_file


def verify(
    files: Iterable[Path],
    key: SM2PublicKey | None = None,
    cadence: Cadence | None = None,
    roots: list[Certificate] | None = None,
) -> Report:
    """Check the chain; with `key`, every checkpoint signature, following signer rotations (gateway.audit.signers)
    from the first signer to the last, `key` being one of them; with `roots`, each rotation's new certificate
    must chain to them."""
    files = list(files)
    report = Report()
    signers = None
    if key is not None:
        found = Signers.for_log(rotation_entries(files), key, roots)
        if isinstance(found, str):
            report.problem = found
            return report
        signers, key = found, found.key
    prev, seq = GENESIS, 0
    first = True
    span = _Span(cadence or Cadence())
    for path, number, raw, complete, last_file in _lines(files):
        where = f"{path}:{number}"
        if not complete:
            if not last_file:
                report.problem = f"{where}: a line without its newline before later files (altered or joined)"
                return report
            report.torn_tail = f"{where}: an incomplete last line (a write cut short by a crash)"
            break
        entry, report.problem = parse_entry(raw, where)
        if entry is None:
            return report
        label = f"{where} seq {entry['seq']} msgid {entry.get('msgid', '-')}"
        if first and entry["prev"] != GENESIS and seq == 0:
            # Verifying a later file on its own: start from its first link.
            prev, seq = entry["prev"], entry["seq"] - 1
            report.notes.append(f"chain starts at seq {seq + 1} (earlier files not given)")
        first = False
        problem = _check(entry, prev, seq, key, report)
        if problem is None and signers is not None and entry.get("kind") == "checkpoint" and "rotation" in entry:
            problem = signers.follow(entry)
            key = signers.key
            report.notes.append(f"{where}: checkpoints signed by {entry.get('next_signer')} from here (rotation)")
            if roots is None:
                report.notes.append(f"{where}: the new signer's certificate not checked against a CA (no CA given)")
        if problem is not None:
            report.problem = f"{label}: {problem}"
            return report
        if key is not None:
            _cadence(entry, where, label, span)
        prev, seq = entry["hash"], entry["seq"]
        report.hashes[seq], report.last_where = prev, where
    report.last_hash, report.last_seq = prev, seq
    _finish(report, files, key, span)
    if report.ok and signers is not None and not signers.vouched:
        report.problem = "the certificate given signed none of this log's checkpoints"
    return report


def _finish(report: Report, files: list[Path], key: SM2PublicKey | None, span: _Span) -> None:
    """What only the whole log tells: whether any checkpoint was signed, and the span after the last one."""
    if key is not None and report.entries and not report.signed_checkpoints:
        report.problem = (
            f"{files[0]}:1: no signed checkpoint in {report.entries} entries: the log was written without a "
            "signer (or its checkpoints were removed), so the certificate cannot vouch for it"
        )
    elif span.violation is not None:
        report.problem = span.violation
    elif key is not None and span.count and span.first is not None:
        report.notes.append(
            f"{span.count} entries after the last checkpoint are not yet signed ({span.first} to the end)"
        )
    if key is None and report.checkpoints:
        report.notes.append("checkpoint signatures not checked (no certificate given)")


def parse_entry(raw: bytes, where: str) -> tuple[dict[str, Any] | None, str | None]:
    """The line as a chain entry, or what makes it none (altered, an export's proof line, a hand-written line)."""
    try:
        entry = json.loads(raw)
    except ValueError:
        return None, f"{where}: not a JSON entry (altered)"
    if not isinstance(entry, dict):
        return None, f"{where}: not a JSON entry (altered)"
    label = f"{where} seq {entry.get('seq')} msgid {entry.get('msgid', '-')}"
    for name in ("prev", "hash"):
        value = entry.get(name)
        if not isinstance(value, str) or not _HEX64.match(value):
            return None, f"{label}: not a chain entry: `{name}` is {'missing' if value is None else 'not an SM3 hash'}"
    if not isinstance(entry.get("seq"), int) or isinstance(entry.get("seq"), bool):
        return None, f"{label}: not a chain entry: `seq` is not a number"
    return entry, None


def _check(entry: dict[str, Any], prev: str, seq: int, key: SM2PublicKey | None, report: Report) -> str | None:
    if entry["hash"] != link(entry["prev"], entry):
        return "content does not match its hash (altered)"
    if entry["seq"] != seq + 1:
        return f"expected seq {seq + 1} (entries removed, inserted or reordered before it)"
    if entry["prev"] != prev:
        return "does not link to the entry before it (removed, inserted or reordered)"
    if entry.get("kind") != "checkpoint":
        report.entries += 1
        return None
    report.checkpoints += 1
    if key is None:
        return None
    if "sig" not in entry:
        if report.signed_checkpoints == 0:
            return "checkpoint is not signed, nor is any before it: the log was written without a signer"
        return "checkpoint has no signature (stripped)"
    if not signature_ok(entry, key):
        return "checkpoint signature does not verify (altered, or a signature of another entry)"
    report.signed_checkpoints += 1
    return None


def _cadence(entry: dict[str, Any], where: str, label: str, span: _Span) -> None:
    """Note where the entries since the last checkpoint leave the cadence the writer keeps. Only the span that no
    signed checkpoint closes matters (a signature covers everything before it): a checkpoint forgives it."""
    if entry.get("kind") == "checkpoint":
        every, interval = entry.get("every"), entry.get("interval")
        declared = isinstance(every, int) and isinstance(interval, (int, float))
        if declared:
            span.cadence = Cadence(int(every), float(interval))  # type: ignore[arg-type]
        span.since_ts = _ts(entry) if declared else None
        span.after, span.first, span.count, span.due, span.violation = where, None, 0, None, None
        return
    span.count += 1
    span.first = span.first or where
    if span.violation is not None:
        return
    unsigned = f"unsigned span from {span.first}, after {span.after}"
    if span.due is not None:
        span.violation = (
            f"{label}: a checkpoint was due after {span.due} ({span.cadence.interval:g} s after the last one) "
            f"but none follows: checkpoints removed ({unsigned})"
        )
    elif span.count > span.cadence.every:
        span.violation = (
            f"{label}: {span.count} entries without a checkpoint, more than the cadence of "
            f"{span.cadence.every}: checkpoints removed ({unsigned})"
        )
    ts = _ts(entry)
    if span.since_ts is not None and ts is not None and ts - span.since_ts >= span.cadence.interval:
        span.due = where


def _ts(entry: dict[str, Any]) -> float | None:
    ts = entry.get("ts")
    return float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else None
