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
    state: str = "booked"  # booked | cancelled (2208/2305/2103) | reversed (2601)
    undone_by: str | None = None
    clr_type: str = "11"  # 清算类别: 11 outpatient
    setl_optins: str = ""  # 结算经办机构 (the insured's region)
    refd_setl_flag: str = "0"  # "1": a refund line (2208/2305/2103), negative amounts
    origin: str = ""  # on a refund line: the setl_id it cancels (what a 冲正 of the refund restores)


@dataclass
class Ledger:
    messages: list[Message] = field(default_factory=list)
    settlements: list[Settlement] = field(default_factory=list)
    #: refund lines booked by 撤销结算 (2208): what reconciliation lists next to the settlements they undo
    refunds: list[Settlement] = field(default_factory=list)
    #: fee lines taken by 费用明细上传 (2204/2301) and visits opened by 挂号 (2201): what 5204 and 5201 list
    fees: list[dict[str, Any]] = field(default_factory=list)
    visits: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, msg: Message) -> None:
        with self._lock:
            self.messages.append(msg)

    def book(self, settlement: Settlement) -> None:
        with self._lock:
            self.settlements.append(settlement)

    def refund(self, settlement: Settlement) -> None:
        with self._lock:
            self.refunds.append(settlement)

    def keep(self, into: list[dict[str, Any]], items: list[dict[str, Any]]) -> None:
        with self._lock:
            into.extend(items)

    def by_msgid(self, msgid: str, infno: str | None = None) -> list[Settlement]:
        return [s for s in self.settlements if s.msgid == msgid and (infno is None or s.infno == infno)]

    def by_setl_id(self, setl_id: str) -> Settlement | None:
        return next((s for s in self.settlements if s.setl_id == setl_id), None)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "messages": [asdict(m) for m in self.messages],
                "settlements": [asdict(s) for s in self.settlements],
                "refunds": [asdict(s) for s in self.refunds],
                "fees": list(self.fees),
                "visits": list(self.visits),
            }
