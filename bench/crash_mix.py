"""What the crash harness's cashiers send: the realistic mix, and each envelope as a HIS builds it (#20)."""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "platform"
#: the realistic mix, by weight; a cancellation needs a settlement of its own family to cancel
MIX = {"1101": 3, "2201": 2, "2204": 2, "2206": 2, "2207": 4, "2208": 2, "2304": 1, "2305": 1}
CANCELS = {"2208": "2207", "2305": "2304"}


class Envelopes:
    def __init__(self) -> None:
        #: fee lines per 2204: one, or a long day's list while the harness wants the outbox to write a lot
        self.fee_lines = 1
        self._seq = itertools.count(1)
        self.templates = {
            name: json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
            for name in ("1101_query_request", "2207_settle_request", "9001_signin_request")
        }

    def msgid(self) -> str:
        # A HIS numbers its msgids within the second below 9000: 9000-9999 is where the gateway mints its own.
        return f"H44030000001{datetime.now():%Y%m%d%H%M%S}{next(self._seq) % 9000:04d}"

    def sign_in(self) -> dict[str, Any]:
        return self.templates["9001_signin_request"] | {"msgid": self.msgid()}

    def envelope(self, infno: str, psn_no: str, sign_no: str, setl_id: str = "") -> dict[str, Any]:
        if infno == "1101":
            return self.templates["1101_query_request"] | {"msgid": self.msgid(), "sign_no": sign_no}
        doc = json.loads(json.dumps(self.templates["2207_settle_request"]))
        doc |= {"infno": infno, "msgid": self.msgid(), "sign_no": sign_no}
        data = doc["input"]["data"]
        # Each person's own visit, and fee lines numbered uniquely within it, as a HIS numbers them: a 2204 whose
        # outcome is unknown is checked by 5204 on (mdtrt_id, feedetl_sn), and repeated numbers would match
        # another upload's lines.
        data |= {"psn_no": psn_no, "mdtrt_id": f"4403{psn_no}", "chrg_bchno": f"CB{next(self._seq):012d}"}
        if infno == "2201":
            doc["input"] = {
                "data": {
                    "psn_no": psn_no,
                    "insutype": "310",
                    "begntime": f"{datetime.now():%Y-%m-%d %H:%M:%S}",
                    "mdtrt_cert_type": "02",
                    "mdtrt_cert_no": data["mdtrt_cert_no"],
                    "ipt_otp_no": f"MZ{next(self._seq):08d}",
                    "atddr_no": "D440300000001",
                    "dr_name": "王医生",
                    "dept_code": "A03",
                    "dept_name": "内科",
                    "caty": "A03",
                }
            }
        elif infno == "2204":
            fee = {"mdtrt_id": data["mdtrt_id"], "psn_no": psn_no, "med_list_codg": "X0000000001"}
            fee |= {"det_item_fee_sumamt": "12.00"}
            lines = [fee | {"feedetl_sn": f"{next(self._seq):010d}"} for _ in range(self.fee_lines)]
            doc["input"] = {"feedetail": lines}
        elif infno in CANCELS:
            data["setl_id"] = setl_id
        return doc
