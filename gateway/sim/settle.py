"""Settlements and their cancellations: 门诊 (2206/2207/2208 and the A variants), 住院 (2303/2304/2305) and
药店 (2101/2102/2103).

Every settlement books what reconciliation later lists: clearing type (clr_type) and settling agency
(setl_optins) come from the request where the HIS sends them, else the platform's default for the family,
so a reconciliation day can hold several groups the way a real one does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict

from gateway.sim.errors import PlatformError, input_data, platform_time
from gateway.sim.ledger import Ledger, Settlement

#: settlement infno -> (its cancellation, default 清算类别): 11 outpatient, 21 inpatient, 41 pharmacy
FAMILIES: dict[str, tuple[str, str]] = {
    "2207": ("2208", "11"),
    "2207A": ("2208", "11"),
    "2304": ("2305", "21"),
    "2102": ("2103", "41"),
}
#: cancellation infno -> the settlements it may cancel
CANCELS: dict[str, frozenset[str]] = {
    cancel: frozenset(s for s, (c, _) in FAMILIES.items() if c == cancel) for cancel, _ in FAMILIES.values()
}


class Split(TypedDict):
    """Who pays a total: the fund, the insured's account, and the cash rest."""

    medfee_sumamt: float
    fund_pay_sumamt: float
    acct_pay: float
    psn_cash_pay: float


def split(total: float) -> Split:
    fund = round(total * 0.6, 2)
    acct = round(min(total - fund, total * 0.25), 2)
    return {
        "medfee_sumamt": round(total, 2),
        "fund_pay_sumamt": fund,
        "acct_pay": acct,
        "psn_cash_pay": round(total - fund - acct, 2),
    }


def negated(paid: Split) -> Split:
    """A refund line's amounts: the settlement's, with the sign turned."""
    return Split(
        medfee_sumamt=-paid["medfee_sumamt"],
        fund_pay_sumamt=-paid["fund_pay_sumamt"],
        acct_pay=-paid["acct_pay"],
        psn_cash_pay=-paid["psn_cash_pay"],
    )


def amount(data: dict[str, Any]) -> float:
    try:
        value = float(data["medfee_sumamt"])
    except (TypeError, ValueError):
        raise PlatformError("输入参数[medfee_sumamt]格式不正确") from None
    if value <= 0:
        raise PlatformError("医疗费总额[medfee_sumamt]必须大于0")
    return value


def setlinfo(setl: Settlement) -> dict[str, Any]:
    return {
        "setl_id": setl.setl_id,
        "mdtrt_id": setl.mdtrt_id,
        "psn_no": setl.psn_no,
        "medfee_sumamt": setl.medfee_sumamt,
        "fund_pay_sumamt": setl.fund_pay_sumamt,
        "acct_pay": setl.acct_pay,
        "psn_cash_pay": setl.psn_cash_pay,
        "insutype": setl.insutype,
        "clr_type": setl.clr_type,
        "clr_optins": setl.setl_optins,
        "setl_time": platform_time(setl.booked_at),
    }


class SimSettlements:
    def __init__(self, ledger: Ledger, *, region: str, clock: Callable[[], float], ids: Callable[[], int]) -> None:
        self.ledger = ledger
        self.region = region
        self.clock = clock
        self._ids = ids

    def handlers(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "2101": self._presettle_pharmacy,
            "2206": self._presettle,
            "2206A": self._presettle,
            "2303": self._presettle,
            **dict.fromkeys(FAMILIES, self._settle),
            **dict.fromkeys(CANCELS, self._cancel),
        }

    def _presettle(self, req: dict[str, Any]) -> Any:
        data = input_data(req, "psn_no", "mdtrt_id", "medfee_sumamt")
        return {"setlinfo": {"psn_no": data["psn_no"], "mdtrt_id": data["mdtrt_id"], **split(amount(data))}}

    def _presettle_pharmacy(self, req: dict[str, Any]) -> Any:
        data = input_data(req, "psn_no", "medfee_sumamt")
        return {"setlinfo": {"psn_no": data["psn_no"], **split(amount(data))}}

    def _settle(self, req: dict[str, Any]) -> Any:
        infno = str(req["infno"])
        # A pharmacy sale has no visit of its own: the platform opens one with the settlement.
        required = ("psn_no", "medfee_sumamt") if infno == "2102" else ("psn_no", "mdtrt_id", "medfee_sumamt")
        data = input_data(req, *required, *(("chrg_bchno",) if infno != "2102" else ()))
        setl_id = f"{self.region}{self._ids():018d}"
        setl = Settlement(
            setl_id=setl_id,
            msgid=req["msgid"],
            infno=infno,
            psn_no=str(data["psn_no"]),
            mdtrt_id=str(data.get("mdtrt_id") or f"{self.region}{self._ids():020d}"),
            chrg_bchno=str(data.get("chrg_bchno") or ""),
            insutype=str(data.get("insutype") or "310"),
            booked_at=self.clock(),
            clr_type=str(data.get("clr_type") or FAMILIES[infno][1]),
            setl_optins=str(data.get("setl_optins") or req.get("insuplc_admdvs") or "440300"),
            **split(amount(data)),
        )
        self.ledger.book(setl)
        return {"setlinfo": setlinfo(setl)}

    def _cancel(self, req: dict[str, Any]) -> Any:
        infno = str(req["infno"])
        data = input_data(req, "setl_id", "psn_no")
        setl = self.ledger.by_setl_id(str(data["setl_id"]))
        if setl is None or setl.psn_no != data["psn_no"] or setl.infno not in CANCELS[infno]:
            raise PlatformError(f"结算记录[{data['setl_id']}]不存在")
        if data.get("mdtrt_id") and data["mdtrt_id"] != setl.mdtrt_id:
            raise PlatformError(f"结算记录[{setl.setl_id}]与就诊ID[{data['mdtrt_id']}]不符")
        if setl.state != "booked":
            raise PlatformError(f"结算记录[{setl.setl_id}]已撤销，不能重复撤销")
        setl.state, setl.undone_by = "cancelled", req["msgid"]
        refund = Settlement(
            setl_id=f"{self.region}{self._ids():018d}",
            msgid=req["msgid"],
            infno=infno,
            psn_no=setl.psn_no,
            mdtrt_id=setl.mdtrt_id,
            chrg_bchno=setl.chrg_bchno,
            insutype=setl.insutype,
            booked_at=self.clock(),
            clr_type=setl.clr_type,
            setl_optins=setl.setl_optins,
            refd_setl_flag="1",
            origin=setl.setl_id,
            **negated(split(setl.medfee_sumamt)),
        )
        self.ledger.refund(refund)
        return {"setlinfo": setlinfo(refund)}

    def query(self, req: dict[str, Any]) -> Any:
        """5203 结算信息查询: the settlements of a person, optionally of one settlement or visit."""
        data = input_data(req, "psn_no")
        rows = [
            s
            for s in self.ledger.settlements
            if s.psn_no == data["psn_no"]
            and (not data.get("setl_id") or s.setl_id == data["setl_id"])
            and (not data.get("mdtrt_id") or s.mdtrt_id == data["mdtrt_id"])
        ]
        return {"setlinfo": [{k: v for k, v in vars(s).items() if k != "booked_at"} for s in rows]}
