"""冲正交易 (2601): undoes whatever reversible transaction the omsgid names, as the platform does.

The reversible set is the catalogue's (settlements, their cancellations, 挂号撤销, 入院办理). Reversing a
cancellation (2208/2305/2103) voids its refund line and puts the settlement it cancelled back in force;
reversing it twice is a success that changes nothing (the platform answers a repeated 冲正 the same way).
"Nothing to reverse" is a definite answer the gateway's resolver relies on: the original never took effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.platform.catalogue import national
from gateway.sim.errors import PlatformError, input_data
from gateway.sim.ledger import Ledger


class SimReversal:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.reversible = frozenset(i for i, tx in national().entries.items() if tx.reversible)

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {"2601": self._reverse}

    def _reverse(self, req: dict[str, Any]) -> Any:
        data = input_data(req, "psn_no", "omsgid", "oinfno")
        omsgid, oinfno, psn_no = str(data["omsgid"]), str(data["oinfno"]), str(data["psn_no"])
        if oinfno not in self.reversible:
            raise PlatformError(f"原交易[{oinfno}]不允许冲正")
        undone = self._settlements(omsgid, oinfno, psn_no, req["msgid"]) + self._visits(omsgid, oinfno, psn_no)
        if not undone:
            raise PlatformError(f"原交易[{omsgid}]不存在，无需冲正")
        return {"omsgid": omsgid, "oinfno": oinfno, "reversed": undone}

    def _settlements(self, omsgid: str, oinfno: str, psn_no: str, msgid: str) -> int:
        lines = [
            s
            for s in [*self.ledger.settlements, *self.ledger.refunds]
            if s.msgid == omsgid and s.infno == oinfno and s.psn_no == psn_no
        ]
        for line in lines:
            if line.state == "reversed":
                continue
            if line.refd_setl_flag == "1":
                origin = self.ledger.by_setl_id(line.origin)
                if origin is not None and origin.state == "cancelled":
                    origin.state, origin.undone_by = "booked", None
            line.state, line.undone_by = "reversed", msgid
        return len(lines)

    def _visits(self, omsgid: str, oinfno: str, psn_no: str) -> int:
        if oinfno == "2401":  # the admission itself: the stay is void
            stays = [v for v in self.ledger.visits if v["msgid"] == omsgid and v["psn_no"] == psn_no]
            for v in stays:
                v["state"] = "reversed"
            return len(stays)
        if oinfno == "2202":  # a 挂号撤销: the visit it cancelled is open again
            visits = [v for v in self.ledger.visits if v.get("undone_by") == omsgid and v["psn_no"] == psn_no]
            for v in visits:
                if v["state"] == "cancelled":
                    v["state"] = "open"  # undone_by stays: a repeated 冲正 still finds what it undid
            return len(visits)
        return 0
