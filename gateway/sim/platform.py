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
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.platform.stmtfiles import zipped
from gateway.sim.errors import PLATFORM_TZ, PlatformError, input_data
from gateway.sim.ledger import Ledger
from gateway.sim.records import SimRecords
from gateway.sim.reversal import SimReversal
from gateway.sim.settle import SimSettlements
from gateway.sim.statements import SimStatements
from gateway.sim.visits import SimVisits

SIGN_TTL_S = 24 * 3600


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
        ids = lambda: next(self._ids)  # noqa: E731 - one id sequence shared by every family
        self.settlements = SimSettlements(ledger, region=region, clock=clock, ids=ids)
        self.handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
            "9001": self._sign_in,
            "9002": self._sign_out,
            "1101": self._person,
            "1161": self._person,
            "1162": self._person,
            "5203": self.settlements.query,
        }
        self.statements = SimStatements(ledger, clock=clock)
        self.handlers |= self.statements.handlers()
        self.handlers |= self.settlements.handlers()
        self.handlers |= SimVisits(ledger, region=region, ids=ids).handlers()
        self.handlers |= SimReversal(ledger).handlers()
        records = SimRecords(region=region, clock=clock, ids=ids, store=self.statements.store, zipped=zipped)
        self.handlers |= records.handlers(set(self.handlers))

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


def _ms17(ts: float) -> str:
    return datetime.fromtimestamp(ts, PLATFORM_TZ).strftime("%Y%m%d%H%M%S") + f"{int(ts * 1000) % 1000:03d}"
