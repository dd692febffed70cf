"""Every final outcome of a pair audited exactly once: the chains of both gateways against the shared outbox.

Each gateway of a pair (two 前置机 on one outbox database) appends to its own SM3 chain the outcomes it settled;
the outbox names, for each final row, the node that settled it (its owner). Across the chains an outcome (msgid
and final state) found twice — in one chain or in both — was audited twice. A final row of the outbox found in no
chain was never audited, when its node's chain was there to hold it: settled after that chain begins, and not in
the last moments before the check (a writer flushes its batch a few milliseconds after the commit). Rows that
cannot be held to a chain are counted, not judged: settled before their node's chain begins (older files moved
away), by a node whose chain was not given, or with no node named (rows migrated from a single host's file).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.audit.log import audit_files


@dataclass(frozen=True)
class Settled:
    """A final row of the outbox: what it settled as, when, and the name of the node that settled it."""

    msgid: str
    state: str
    updated: float
    node: str | None


@dataclass
class PairReport:
    #: outcome entries read, per node
    outcomes: dict[str, int] = field(default_factory=dict)
    #: (msgid, state) -> every place it was found, when more than one ("node:file:line")
    doubled: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    missing: list[Settled] = field(default_factory=list)
    compared: int = 0
    not_compared: int = 0

    @property
    def ok(self) -> bool:
        return not self.doubled and not self.missing


def _entries(directory: Path) -> Iterator[tuple[dict[str, object], str]]:
    for path in audit_files(directory):
        for number, raw in enumerate(path.read_bytes().splitlines(), 1):
            try:
                entry = json.loads(raw)
            except ValueError:
                continue  # a torn tail: the chain's own check reports it
            if isinstance(entry, dict):
                yield entry, f"{path.name}:{number}"


def cross_check(chains: Mapping[str, Path], settled: Iterable[Settled], *, until: float) -> PairReport:
    """`chains`: each node's name and its audit directory; `settled`: the outbox's final rows; `until`: rows
    settled later than this are not judged (their entry may not be written yet)."""
    report = PairReport()
    places: dict[tuple[str, str], list[str]] = defaultdict(list)
    begins: dict[str, float] = {}
    for node, directory in chains.items():
        first = math.inf
        count = 0
        for entry, where in _entries(directory):
            first = min(first, float(str(entry.get("ts", math.inf))))
            if entry.get("kind") != "outcome":
                continue
            count += 1
            first = min(first, float(str(entry.get("finished", math.inf))))
            places[(str(entry.get("msgid")), str(entry.get("state")))].append(f"{node}:{where}")
        # A chain with no entry at all holds nothing yet: every row its node settled should be in it.
        begins[node] = first if first < math.inf else -math.inf
        report.outcomes[node] = count
    report.doubled = {key: found for key, found in places.items() if len(found) > 1}
    only = next(iter(chains)) if len(chains) == 1 else None
    for row in settled:
        owner = row.node if row.node is not None else only
        if owner is None or owner not in begins or row.updated < begins[owner] or row.updated > until:
            report.not_compared += 1
            continue
        report.compared += 1
        if (row.msgid, row.state) not in places:
            report.missing.append(row)
    return report
