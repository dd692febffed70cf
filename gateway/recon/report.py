"""A day's reconciliation report: JSON for tools, CSV (the difference list) for the finance office.

Written under state_dir/recon as YYYY-MM-DD.json and YYYY-MM-DD.csv, each atomically (a reader never sees
half a report) and readable by the service group only: the lists carry psn_no, which the finance office
needs to chase a difference, and which never goes to logs, metrics or MQTT (they get counts).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from gateway.platform.stmtfiles import AMOUNTS, GroupKey
from gateway.recon.compare import Difference
from gateway.recon.local import Pending

BALANCED = "balanced"
DIFFERENCES = "differences"
INCOMPLETE = "incomplete"  # a platform call failed: the report says which, and the run is repeated
#: no group to reconcile: no local settlements that day and no configured extra groups (nothing was compared)
NOTHING = "no_settlements"

CSV_COLUMNS = (
    "kind",
    "setl_id",
    "msgid",
    "psn_no",
    "mdtrt_id",
    "insutype",
    "clr_type",
    "setl_optins",
    "refd_setl_flag",
    *(f"{side}_{a}" for a in AMOUNTS for side in ("local", "platform")),
    "platform_verdict",
    "note",
)


@dataclass
class GroupResult:
    insutype: str
    clr_type: str
    setl_optins: str
    count: int
    totals: dict[str, str]
    total_result: str = ""  # 3201 stmt_rslt: "0" balanced, "1" not
    total_description: str = ""
    detail: bool = False  # 3202 ran
    differences: int = 0
    error: str = ""

    @property
    def key(self) -> GroupKey:
        return GroupKey(self.insutype, self.clr_type, self.setl_optins)


@dataclass
class Report:
    date: str
    generated_at: str
    status: str = BALANCED
    groups: list[GroupResult] = field(default_factory=list)
    differences: list[dict[str, Any]] = field(default_factory=list)
    unanswered: list[dict[str, Any]] = field(default_factory=list)
    unresolved: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    #: run by hand before the day closed (by the platform's cutoff and lag_days): the scheduled run replaces it
    provisional: bool = False
    #: an incomplete run that left the complete report on disk in place (not written)
    kept: str = ""

    def add_differences(self, found: list[Difference]) -> None:
        self.differences += [_difference(d) for d in found]

    def add_pending(self, unanswered: list[Pending], unresolved: list[Pending]) -> None:
        self.unanswered = [asdict(p) for p in unanswered]
        self.unresolved = [asdict(p) for p in unresolved]

    def finish(self) -> Report:
        if not self.groups:
            self.status = NOTHING
        elif any(g.error for g in self.groups):
            self.status = INCOMPLETE
        elif self.differences or any(g.total_result == "1" and not g.detail for g in self.groups):
            self.status = DIFFERENCES
        else:
            self.status = BALANCED
        return self

    def summary(self) -> dict[str, Any]:
        return {
            "date": self.date,
            "status": self.status,
            "groups": len(self.groups),
            "settlements": sum(g.count for g in self.groups),
            "differences": len(self.differences),
            "unanswered": len(self.unanswered),
            "unresolved": len(self.unresolved),
            "errors": [f"{g.insutype}/{g.clr_type}/{g.setl_optins}: {g.error}" for g in self.groups if g.error],
            "provisional": self.provisional,
            "kept": self.kept,
        }


def _money(amounts: dict[str, Decimal] | None) -> dict[str, str] | None:
    return None if amounts is None else {k: str(v) for k, v in amounts.items()}


def _difference(d: Difference) -> dict[str, Any]:
    return {
        "kind": d.kind,
        "setl_id": d.setl_id,
        "msgid": d.msgid,
        "psn_no": d.psn_no,
        "mdtrt_id": d.mdtrt_id,
        "insutype": d.group.insutype,
        "clr_type": d.group.clr_type,
        "setl_optins": d.group.setl_optins,
        "refd_setl_flag": d.refd_setl_flag,
        "local": _money(d.local),
        "platform": _money(d.platform),
        "fields": d.fields,
        "platform_verdict": d.platform_verdict,
        "note": d.note,
    }


def to_csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for d in report.differences:
        amounts = [(d[side] or {}).get(a, "") for a in AMOUNTS for side in ("local", "platform")]
        writer.writerow(
            [d["kind"], d["setl_id"], d["msgid"], d["psn_no"], d["mdtrt_id"], d["insutype"], d["clr_type"],
             d["setl_optins"], d["refd_setl_flag"], *amounts, d["platform_verdict"], d["note"]]
        )  # fmt: skip
    return buf.getvalue()


def paths(directory: Path, day: date) -> tuple[Path, Path]:
    return directory / f"{day.isoformat()}.json", directory / f"{day.isoformat()}.csv"


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write(directory: Path, day: date, report: Report) -> tuple[Path, Path]:
    directory.mkdir(mode=0o750, parents=True, exist_ok=True)
    json_path, csv_path = paths(directory, day)
    # BOM: the finance office opens the CSV in Excel, which reads UTF-8 without one as the local code page
    _write(csv_path, to_csv(report).encode("utf-8-sig"))
    _write(json_path, json.dumps(asdict(report), ensure_ascii=False, indent=1).encode("utf-8"))
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return json_path, csv_path


def complete_report(directory: Path, day: date) -> str | None:
    """When the report on disk for `day` was generated, if it is complete (every call answered; a provisional
    one too: it still holds more than a run that failed)."""
    try:
        doc = read(directory, day)
    except (OSError, TypeError, ValueError):
        return None
    if doc is None or doc.get("status") == INCOMPLETE:
        return None
    return str(doc.get("generated_at") or "an earlier run")


def read(directory: Path, day: date) -> dict[str, Any] | None:
    json_path, _ = paths(directory, day)
    try:
        doc = json.loads(json_path.read_bytes())
    except FileNotFoundError:
        return None
    if not isinstance(doc, dict):
        raise TypeError(f"{json_path}: not a reconciliation report")
    return doc
