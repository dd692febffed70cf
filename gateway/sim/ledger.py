"""The simulator's ground truth: every message received and every settlement booked.

Tests and the demo read it to prove "booked exactly once": the simulator books every settlement it
receives, including a second copy with the same msgid, exactly as a platform would that does not dedupe.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Message:
    seq: int
    infno: str
    msgid: str
    infcode: int | None
    fault: str | None
    received_at: float


@dataclass
class Settlement:
    setl_id: str
    msgid: str
    infno: str
    psn_no: str
    mdtrt_id: str
    chrg_bchno: str
    medfee_sumamt: float
    fund_pay_sumamt: float
    acct_pay: float
    psn_cash_pay: float
    insutype: str
    booked_at: float
    state: str = "booked"  # booked | cancelled (2208) | reversed (2601)
    undone_by: str | None = None


@dataclass
class Ledger:
    messages: list[Message] = field(default_factory=list)
    settlements: list[Settlement] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, msg: Message) -> None:
        with self._lock:
            self.messages.append(msg)

    def book(self, settlement: Settlement) -> None:
        with self._lock:
            self.settlements.append(settlement)

    def by_msgid(self, msgid: str, infno: str | None = None) -> list[Settlement]:
        return [s for s in self.settlements if s.msgid == msgid and (infno is None or s.infno == infno)]

    def by_setl_id(self, setl_id: str) -> Settlement | None:
        return next((s for s in self.settlements if s.setl_id == setl_id), None)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "messages": [asdict(m) for m in self.messages],
                "settlements": [{k: v for k, v in asdict(s).items()} for s in self.settlements],
            }
