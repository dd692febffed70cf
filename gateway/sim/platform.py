"""The simulated national interface: what a provincial platform answers to each transaction.

Deliberately strict where the real platforms are strict (sign-in required, fields checked, Chinese error
texts) and deliberately inconsistent where they are (infcode arrives as a number or as a string), so the
gateway is tested against the platform it will meet, not an idealised one.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from gateway.sim.errors import PLATFORM_TZ, PlatformError, input_data, platform_time
from gateway.sim.ledger import Ledger, Settlement
from gateway.sim.statements import SimStatements

SIGN_TTL_S = 24 * 3600
MONEY_MOVING = frozenset({"2207", "2208", "2304", "2305", "2102", "2103", "2201", "2202"})


@dataclass
class SignIn:
    sign_no: str
    opter_no: str
    signed_at: float
    expired: bool = False


class SimPlatform:
    def __init__(
        self,
        ledger: Ledger,
        *,
        region: str = "440000",
        clock: Callable[[], float] = time.time,
        infcode_style: str = "mixed",
    ) -> None:
        self.ledger = ledger
        self.region = region
        self.clock = clock
        self.infcode_style = infcode_style  # "number" | "string" | "mixed"
        self.signins: dict[str, SignIn] = {}
        self._seq = itertools.count(1)
        self._ids = itertools.count(1)
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "9001": self._sign_in,
            "9002": self._sign_out,
            "1101": self._person,
            "2201": self._register,
            "2204": self._upload_fees,
            "2206": self._presettle,
            "2207": self._settle,
            "2208": self._cancel_settlement,
            "2601": self._reverse,
            "5203": self._setl_query,
            "5201": self._visit_query,
            "5204": self._fee_query,
        }
        self.statements = SimStatements(ledger, clock=clock)
        self.handlers |= self.statements.handlers()

    # -- dispatch -------------------------------------------------------------------------------------------

    def process(self, request: dict[str, Any]) -> dict[str, Any]:
        """One envelope in, one response envelope out; the ledger is updated for what was booked."""
        received = self.clock()
        seq = next(self._seq)
        infno = str(request.get("infno", ""))
        try:
            output = self._dispatch(infno, request)
            infcode, err_msg = 0, None
        except PlatformError as exc:
            output, infcode, err_msg = None, exc.infcode, exc.err_msg
        return self._envelope(seq, received, infcode, err_msg, output)

    def _dispatch(self, infno: str, req: dict[str, Any]) -> Any:
        msgid = req.get("msgid")
        if not isinstance(msgid, str) or len(msgid) != 30:
            raise PlatformError("报文ID[msgid]格式不正确")
        if infno != "9001":
            sign_no = req.get("sign_no")
            if not sign_no:
                raise PlatformError("签到编号[sign_no]不能为空")
            signin = self.signins.get(sign_no)
            if signin is None or signin.expired or self.clock() - signin.signed_at > SIGN_TTL_S:
                raise PlatformError("签到信息已失效，请重新签到")
        handler = self.handlers.get(infno)
        if handler is None:
            if infno.startswith("5") and len(infno) == 4:
                return {"data": []}
            raise PlatformError(f"交易编号[{infno}]不存在")
        inp = req.get("input")
        if not isinstance(inp, dict):
            raise PlatformError("输入参数[input]格式不正确")
        return handler(req)

    def _envelope(self, seq: int, received: float, infcode: int, err_msg: str | None, output: Any) -> dict[str, Any]:
        now = self.clock()
        code: int | str = infcode
        if self.infcode_style == "string" or (self.infcode_style == "mixed" and seq % 2 == 0):
            code = str(infcode)
        stamp = datetime.fromtimestamp(received, PLATFORM_TZ).strftime("%Y%m%d%H%M%S")
        return {
            "infcode": code,
            "inf_refmsgid": f"{self.region}{stamp}{seq:010d}",
            "refmsg_time": _ms17(received),
            "respond_time": _ms17(now),
            "err_msg": err_msg,
            "output": output,
            "warn_msg": None,
            "cainfo": None,
            "signtype": None,
        }

    # -- transactions ---------------------------------------------------------------------------------------

    _data = staticmethod(input_data)

    def _sign_in(self, req: dict[str, Any]) -> Any:
        sign = req["input"].get("signIn")
        if not isinstance(sign, dict) or not sign.get("opter_no"):
            raise PlatformError("输入参数[signIn.opter_no]不能为空")
        sign_no = f"{self.region}G{next(self._ids):013d}"
        now = self.clock()
        self.signins[sign_no] = SignIn(sign_no, str(sign["opter_no"]), now)
        return {
            "signinoutb": {
                "sign_time": datetime.fromtimestamp(now, PLATFORM_TZ).strftime("%Y-%m-%d %H:%M:%S"),
                "sign_no": sign_no,
            }
        }

    def _sign_out(self, req: dict[str, Any]) -> Any:
        sign = req["input"].get("signOut") or {}
        sign_no = sign.get("sign_no") or req.get("sign_no")
        if sign_no in self.signins:
            self.signins[sign_no].expired = True
        return {
            "signoutoutb": {
                "sign_time": datetime.fromtimestamp(self.clock(), PLATFORM_TZ).strftime("%Y-%m-%d %H:%M:%S")
            }
        }

    def expire_signins(self) -> int:
        for s in self.signins.values():
            s.expired = True
        return len(self.signins)

    @staticmethod
    def psn_no_for(certno: str) -> str:
        return "44" + str(int(hashlib.sha256(certno.encode()).hexdigest(), 16))[:18]

    def _person(self, req: dict[str, Any]) -> Any:
        data = self._data(req, "mdtrt_cert_type", "mdtrt_cert_no")
        certno = data.get("certno") or data["mdtrt_cert_no"]
        return {
            "baseinfo": {
                "psn_no": self.psn_no_for(str(certno)),
                "psn_cert_type": "01",
                "certno": certno,
                "psn_name": data.get("psn_name") or "参保人",
                "gend": "1",
                "naty": "01",
                "brdy": "1990-01-01",
                "age": 36,
            },
            "insuinfo": [
                {
                    "balc": 1200.00,
                    "insutype": "310",
                    "psn_type": "11",
                    "psn_insu_stas": "1",
                    "insuplc_admdvs": req.get("insuplc_admdvs") or "440300",
                }
            ],
            "idetinfo": [],
        }

    @staticmethod
    def _split(total: float) -> dict[str, float]:
        fund = round(total * 0.6, 2)
        acct = round(min(total - fund, total * 0.25), 2)
        return {
            "medfee_sumamt": round(total, 2),
            "fund_pay_sumamt": fund,
            "acct_pay": acct,
            "psn_cash_pay": round(total - fund - acct, 2),
        }

    @staticmethod
    def _amount(data: dict[str, Any]) -> float:
        try:
            amount = float(data["medfee_sumamt"])
        except (TypeError, ValueError):
            raise PlatformError("输入参数[medfee_sumamt]格式不正确") from None
        if amount <= 0:
            raise PlatformError("医疗费总额[medfee_sumamt]必须大于0")
        return amount

    def _register(self, req: dict[str, Any]) -> Any:
        """门诊挂号: opens a visit (and may charge a registration fee); 2601 cannot undo it, 2202 does."""
        data = self._data(req, "psn_no", "insutype", "ipt_otp_no")
        mdtrt_id = f"{self.region}{next(self._ids):020d}"
        visit = {"mdtrt_id": mdtrt_id, "psn_no": data["psn_no"], "ipt_otp_no": data["ipt_otp_no"]}
        self.ledger.keep(self.ledger.visits, [visit | {"msgid": req["msgid"], "insutype": data["insutype"]}])
        return {"data": visit}

    def _visit_query(self, req: dict[str, Any]) -> Any:
        """就诊信息查询: the visits a person has (what resolves a 挂号 whose answer was lost)."""
        data = self._data(req, "psn_no")
        keep = ("mdtrt_id", "psn_no", "ipt_otp_no", "insutype")
        return {"mdtrtinfo": [{k: v[k] for k in keep} for v in self.ledger.visits if v["psn_no"] == data["psn_no"]]}

    def _fee_query(self, req: dict[str, Any]) -> Any:
        """费用明细查询: the fee lines held for a visit (what resolves an upload whose answer was lost)."""
        data = self._data(req, "mdtrt_id")
        keep = ("feedetl_sn", "mdtrt_id", "psn_no", "med_list_codg", "det_item_fee_sumamt")
        lines = [{k: f.get(k) for k in keep} for f in self.ledger.fees if f["mdtrt_id"] == data["mdtrt_id"]]
        return {"feedetail": lines}

    def _upload_fees(self, req: dict[str, Any]) -> Any:
        """门诊费用明细上传 (check-first: a blind second copy may duplicate fee lines); answers the lines it took."""
        lines = req["input"].get("feedetail")
        if not isinstance(lines, list) or not lines or not all(isinstance(x, dict) for x in lines):
            raise PlatformError("输入参数[feedetail]不能为空")
        missing = next((x for x in lines if not x.get("feedetl_sn")), None)
        if missing is not None:
            raise PlatformError("输入参数[feedetl_sn]不能为空")
        self.ledger.keep(self.ledger.fees, [x | {"msgid": req["msgid"], "mdtrt_id": x.get("mdtrt_id")} for x in lines])
        return {
            "result": [
                {"feedetl_sn": x["feedetl_sn"], "det_item_fee_sumamt": x.get("det_item_fee_sumamt")} for x in lines
            ]
        }

    def _presettle(self, req: dict[str, Any]) -> Any:
        data = self._data(req, "psn_no", "mdtrt_id", "medfee_sumamt")
        return {"setlinfo": {"psn_no": data["psn_no"], "mdtrt_id": data["mdtrt_id"], **self._split(self._amount(data))}}

    def _settle(self, req: dict[str, Any]) -> Any:
        data = self._data(req, "psn_no", "mdtrt_id", "medfee_sumamt", "chrg_bchno")
        split = self._split(self._amount(data))
        setl = Settlement(
            setl_id=f"{self.region}{next(self._ids):018d}",
            msgid=req["msgid"],
            infno=req["infno"],
            psn_no=data["psn_no"],
            mdtrt_id=data["mdtrt_id"],
            chrg_bchno=data["chrg_bchno"],
            insutype=str(data.get("insutype") or "310"),
            booked_at=self.clock(),
            setl_optins=str(req.get("insuplc_admdvs") or "440300"),
            **split,
        )
        self.ledger.book(setl)
        return {"setlinfo": self._setlinfo(setl)}

    @staticmethod
    def _setlinfo(setl: Settlement) -> dict[str, Any]:
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

    def _cancel_settlement(self, req: dict[str, Any]) -> Any:
        data = self._data(req, "setl_id", "psn_no", "mdtrt_id")
        setl = self.ledger.by_setl_id(data["setl_id"])
        if setl is None or setl.psn_no != data["psn_no"]:
            raise PlatformError(f"结算记录[{data['setl_id']}]不存在")
        if setl.state != "booked":
            raise PlatformError(f"结算记录[{setl.setl_id}]已撤销，不能重复撤销")
        setl.state, setl.undone_by = "cancelled", req["msgid"]
        neg = {k: -v for k, v in self._split(setl.medfee_sumamt).items()}
        refund = Settlement(
            setl_id=f"{self.region}{next(self._ids):018d}",
            msgid=req["msgid"],
            infno=req["infno"],
            psn_no=setl.psn_no,
            mdtrt_id=setl.mdtrt_id,
            chrg_bchno=setl.chrg_bchno,
            insutype=setl.insutype,
            booked_at=self.clock(),
            clr_type=setl.clr_type,
            setl_optins=setl.setl_optins,
            refd_setl_flag="1",
            **neg,
        )
        self.ledger.refund(refund)
        return {"setlinfo": self._setlinfo(refund)}

    def _reverse(self, req: dict[str, Any]) -> Any:
        data = self._data(req, "psn_no", "omsgid", "oinfno")
        booked = [s for s in self.ledger.by_msgid(data["omsgid"], data["oinfno"]) if s.psn_no == data["psn_no"]]
        if not booked:
            # The original never took effect: a definite answer the gateway's resolver relies on.
            raise PlatformError(f"原交易[{data['omsgid']}]不存在，无需冲正")
        for setl in booked:
            if setl.state == "booked":
                setl.state, setl.undone_by = "reversed", req["msgid"]
        return {"omsgid": data["omsgid"], "oinfno": data["oinfno"], "reversed": len(booked)}

    def _setl_query(self, req: dict[str, Any]) -> Any:
        data = self._data(req, "psn_no")
        rows = [
            s
            for s in self.ledger.settlements
            if s.psn_no == data["psn_no"]
            and (not data.get("setl_id") or s.setl_id == data["setl_id"])
            and (not data.get("mdtrt_id") or s.mdtrt_id == data["mdtrt_id"])
        ]
        return {"setlinfo": [{k: v for k, v in asdict(s).items() if k != "booked_at"} for s in rows]}


def _ms17(ts: float) -> str:
    return datetime.fromtimestamp(ts, PLATFORM_TZ).strftime("%Y%m%d%H%M%S") + f"{int(ts * 1000) % 1000:03d}"
