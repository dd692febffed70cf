"""Differences injected into the platform's reconciliation view, never into the exactly-once ground truth.

The way they arise in life: a line the platform lost, a line whose amounts, day, group or person differ, a
line only the platform has (a phantom of any settlement or refund infno). Each may be limited to one of the
two statements (3201 totals or 3202 detail), since a real platform computes them apart and they can
disagree; each can be undone.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.platform.stmtfiles import AMOUNTS, money
from gateway.sim.errors import PLATFORM_TZ
from gateway.sim.ledger import Settlement

#: fields `alter` may change besides the amounts: the day (setl_time), the group and the person
FIELDS = ("setl_time", "insutype", "clr_type", "setl_optins", "psn_no", "mdtrt_id")
SCOPES = ("3201", "3202")
#: settlement infnos a phantom may be, refunds (negative amounts) among them
PHANTOM_INFNOS = {"2207": "0", "2207A": "0", "2304": "0", "2102": "0", "2208": "1", "2305": "1", "2103": "1"}


@dataclass
class Tampering:
    lost: set[str] = field(default_factory=set)  # setl_ids the platform's statements leave out
    altered: dict[str, dict[str, Any]] = field(default_factory=dict)  # setl_id -> fields it reports instead
    phantoms: list[Settlement] = field(default_factory=list)  # settlements only the platform has
    only: dict[str, str] = field(default_factory=dict)  # setl_id -> the one statement its tampering shows in

    def applies(self, setl_id: str, scope: str) -> bool:
        return self.only.get(setl_id, scope) == scope

    def seen(self, s: Settlement, scope: str) -> Settlement | None:
        """`s` as the platform's `scope` statement reports it (None: left out)."""
        if not self.applies(s.setl_id, scope):
            return None if s in self.phantoms else s
        if s.setl_id in self.lost:
            return None
        fields = {k: v for k, v in self.altered.get(s.setl_id, {}).items() if k not in AMOUNTS}
        if "setl_time" in fields:
            fields["booked_at"] = fields.pop("setl_time")
        return replace(s, **fields) if fields else s

    def amounts(self, setl_id: str, scope: str) -> dict[str, Decimal] | None:
        if not self.applies(setl_id, scope):
            return None
        return {k: v for k, v in self.altered.get(setl_id, {}).items() if k in AMOUNTS} or None

    def scope(self, setl_id: str, only: Any) -> None:
        if only in (None, "", "both"):
            return
        if only not in SCOPES:
            raise ValueError(f"only must be 3201 or 3202, got {only!r}")
        previous = self.only.get(setl_id)
        if previous is not None and previous != only:
            raise ValueError(f"{setl_id} is already tampered for {previous} only")
        self.only[setl_id] = str(only)

    @staticmethod
    def fields(changes: dict[str, Any]) -> dict[str, Any]:
        unknown = set(changes) - set(AMOUNTS) - set(FIELDS)
        if unknown or not changes:
            raise ValueError(
                f"alter takes fields among {', '.join((*AMOUNTS, *FIELDS))}; got {', '.join(sorted(changes))}"
            )
        out: dict[str, Any] = {}
        for k, v in changes.items():
            if k in AMOUNTS:
                out[k] = money(v)
            elif k == "setl_time":
                try:
                    out[k] = datetime.strptime(str(v), "%Y-%m-%d %H:%M:%S").replace(tzinfo=PLATFORM_TZ).timestamp()
                except ValueError:
                    raise ValueError(f"setl_time must be yyyy-MM-dd HH:mm:ss, got {v!r}") from None
            else:
                out[k] = str(v)
        return out

    def undo(self, setl_id: str) -> None:
        found = setl_id in self.lost or setl_id in self.altered or any(p.setl_id == setl_id for p in self.phantoms)
        if not found:
            raise ValueError(f"nothing was tampered for {setl_id}")
        self.lost.discard(setl_id)
        self.altered.pop(setl_id, None)
        self.phantoms = [p for p in self.phantoms if p.setl_id != setl_id]
        self.only.pop(setl_id, None)
