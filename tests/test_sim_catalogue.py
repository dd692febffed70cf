"""Issue #21 item 9 and #20 item 2: the simulator answers every transaction of the catalogue the way the
platform does, with state where the HIS relies on it, and its 2601 reverses every reversible transaction."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from gateway.platform.catalogue import TxClass, national
from gateway.sim.ledger import Ledger
from gateway.sim.platform import SimPlatform

from conftest import example

PSN = "44000000000000000012"
_seq = itertools.count(1)


class Walk:
    """One simulated platform, signed in, recording the answer to every transaction sent."""

    def __init__(self) -> None:
        self.platform = SimPlatform(Ledger(), clock=lambda: 1_764_000_000.0)
        self.sign_no = ""
        self.answered: dict[str, dict[str, Any]] = {}
        self.sign_no = self.ok("9001", {"signIn": {"opter_no": "0012", "mac": "", "ip": "127.0.0.1"}})["signinoutb"][
            "sign_no"
        ]

    def send(self, infno: str, inp: dict[str, Any]) -> dict[str, Any]:
        msgid = f"H44030000001{20261124082003 + next(_seq):014d}"[:26] + f"{next(_seq) % 10000:04d}"
        doc = example("2207_settle_request.json") | {"infno": infno, "msgid": msgid, "sign_no": self.sign_no}
        answer = self.platform.process(doc | {"input": inp})
        answer["msgid"] = msgid
        self.answered[infno] = answer
        return answer

    def ok(self, infno: str, inp: dict[str, Any]) -> Any:
        answer = self.send(infno, inp)
        assert int(answer["infcode"]) == 0, f"{infno}: {answer['err_msg']}"
        return answer["output"]

    def refused(self, infno: str, inp: dict[str, Any]) -> str:
        answer = self.send(infno, inp)
        assert int(answer["infcode"]) == -1, f"{infno} was accepted: {answer['output']}"
        return str(answer["err_msg"])

    def reverse(self, infno: str, original: dict[str, Any]) -> Any:
        return self.ok("2601", {"data": {"psn_no": PSN, "omsgid": original["msgid"], "oinfno": infno}})


def data(**fields: Any) -> dict[str, Any]:
    return {"data": fields}


def register(w: Walk) -> str:
    out = w.ok("2201", data(psn_no=PSN, insutype="310", ipt_otp_no=f"MZ{next(_seq):08d}", mdtrt_cert_type="02"))
    return str(out["data"]["mdtrt_id"])


def settle(w: Walk, infno: str, mdtrt_id: str, **extra: Any) -> dict[str, Any]:
    return w.ok(infno, data(psn_no=PSN, mdtrt_id=mdtrt_id, medfee_sumamt="128.50", chrg_bchno="CB1", **extra))[
        "setlinfo"
    ]


def outpatient(w: Walk) -> None:
    mdtrt_id = register(w)
    w.ok("2203", {"mdtrtinfo": {"mdtrt_id": mdtrt_id, "psn_no": PSN, "med_type": "11"}, "diseinfo": []})
    w.ok("2203A", {"mdtrtinfo": {"mdtrt_id": mdtrt_id, "psn_no": PSN, "med_type": "11"}, "diseinfo": []})
    lines = [{"feedetl_sn": sn, "mdtrt_id": mdtrt_id, "psn_no": PSN, "det_item_fee_sumamt": "10"} for sn in "12"]
    w.ok("2204", {"feedetail": lines})
    w.ok("2205", data(mdtrt_id=mdtrt_id, psn_no=PSN, feedetl_sn="1"))
    held = w.ok("5204", data(mdtrt_id=mdtrt_id, psn_no=PSN))["feedetail"]
    assert [f["feedetl_sn"] for f in held] == ["2"], "the cancelled fee line is gone"
    assert "不存在或已撤销" in w.refused("2205", data(mdtrt_id=mdtrt_id, psn_no=PSN, feedetl_sn="1"))
    w.ok("2206", data(psn_no=PSN, mdtrt_id=mdtrt_id, medfee_sumamt="128.50"))
    w.ok("2206A", data(psn_no=PSN, mdtrt_id=mdtrt_id, medfee_sumamt="128.50"))
    setl = settle(w, "2207", mdtrt_id, clr_type="9901", setl_optins="440100")
    assert (setl["clr_type"], setl["clr_optins"]) == ("9901", "440100"), "clearing taken from the request"
    settle(w, "2207A", mdtrt_id)
    w.ok("2208", data(psn_no=PSN, mdtrt_id=mdtrt_id, setl_id=setl["setl_id"]))
    assert "已撤销" in w.refused("2208", data(psn_no=PSN, mdtrt_id=mdtrt_id, setl_id=setl["setl_id"]))
    w.ok("2202", data(psn_no=PSN, mdtrt_id=mdtrt_id, ipt_otp_no="x"))
    w.ok("5201", data(psn_no=PSN))
    w.ok("5203", data(psn_no=PSN))


def inpatient(w: Walk) -> None:
    stay = w.ok("2401", {"mdtrtinfo": {"psn_no": PSN, "insutype": "310", "ipt_no": "ZY1"}, "diseinfo": []})["result"]
    mdtrt_id = stay["mdtrt_id"]
    assert "在院" in w.refused("2401", {"mdtrtinfo": {"psn_no": PSN, "insutype": "310", "ipt_no": "ZY2"}})
    assert [s["mdtrt_id"] for s in w.ok("5303", data(psn_no=PSN))["data"]] == [mdtrt_id]
    w.ok("2403", {"adminfo": {"mdtrt_id": mdtrt_id, "psn_no": PSN}})
    w.ok("2301", {"feedetail": [{"feedetl_sn": "9", "mdtrt_id": mdtrt_id, "psn_no": PSN}]})
    w.ok("2302", data(mdtrt_id=mdtrt_id, psn_no=PSN, feedetl_sn="0000"))
    w.ok("2402", {"dscginfo": {"mdtrt_id": mdtrt_id, "psn_no": PSN}})
    w.ok("2405", data(mdtrt_id=mdtrt_id, psn_no=PSN))
    w.ok("2303", data(psn_no=PSN, mdtrt_id=mdtrt_id, medfee_sumamt="5000"))
    setl = settle(w, "2304", mdtrt_id)
    assert setl["clr_type"] == "21"
    w.ok("2305", data(psn_no=PSN, mdtrt_id=mdtrt_id, setl_id=setl["setl_id"]))
    w.ok("2404", data(mdtrt_id=mdtrt_id, psn_no=PSN))


def pharmacy(w: Walk) -> None:
    w.ok("2101", data(psn_no=PSN, medfee_sumamt="36.00"))
    setl = w.ok("2102", data(psn_no=PSN, medfee_sumamt="36.00"))["setlinfo"]
    assert setl["clr_type"] == "41" and setl["mdtrt_id"]
    w.ok("2103", data(psn_no=PSN, setl_id=setl["setl_id"], mdtrt_id=setl["mdtrt_id"]))


def filings(w: Walk) -> None:
    for infno, cancel, serial in (
        ("2501", "2502", "trt_dcla_detl_sn"),
        ("2501A", "2502", "trt_dcla_detl_sn"),
        ("2503", "2504", "trt_dcla_detl_sn"),
        ("2505", "2506", "trt_dcla_detl_sn"),
        ("2507", "2508", "trt_dcla_detl_sn"),
        ("3203", "3204", "clr_appy_evt_id"),
        ("3203A", "3204", "clr_appy_evt_id"),
        ("3301", "3302", "fixmedins_hilist_id"),
        ("3401", "3403", "hosp_dept_codg"),
    ):
        sn = w.ok(infno, data(psn_no=PSN))["result"][serial]
        w.ok(cancel, data(**{serial: sn}))
        assert "不存在或已撤销" in w.refused(cancel, data(**{serial: sn}))
    dept = w.ok("3401", {"deptinfo": [{"hosp_dept_codg": "A03", "hosp_dept_name": "内科"}]})["result"]
    assert dept == {"hosp_dept_codg": "A03"}
    assert [d["hosp_dept_codg"] for d in w.ok("5101", data())["data"]] == ["A03"]


def test_every_catalogued_transaction_is_answered() -> None:
    w = Walk()
    outpatient(w)
    inpatient(w)
    pharmacy(w)
    filings(w)
    for infno in national().entries:
        if infno not in w.answered and infno not in ("2601", "9002", "9101", "9102", "3201", "3202"):
            w.ok(infno, data(psn_no=PSN, mdtrt_cert_type="02", mdtrt_cert_no="440301199001011234", page_num=1))
    download = w.answered["1301"]["output"]
    assert download["filename"].endswith(".zip") and download["file_qury_no"]
    file = w.ok("9102", {"fsDownloadIn": {"file_qury_no": download["file_qury_no"], "filename": download["filename"]}})
    assert file.data.startswith(b"PK"), "a catalogue download is a file the HIS can fetch with 9102"
    w.ok("9002", {"signOut": {"sign_no": w.sign_no, "opter_no": "0012"}})
    missed = [i for i in national().entries if i not in w.answered and i not in ("2601", "9101", "3201", "3202")]
    assert missed == []
    # 9101/3201/3202 answer the recon shapes of their own tests; 2601 is walked below.
    for infno, answer in w.answered.items():
        assert "不存在]" not in str(answer["err_msg"]) and "交易编号" not in str(answer["err_msg"]), infno


def test_an_unknown_transaction_is_still_refused() -> None:
    assert "交易编号[2999]不存在" in Walk().refused("2999", data(psn_no=PSN))


def test_the_catalogue_gives_every_money_moving_transaction_a_way_to_resolve() -> None:
    for tx in national().entries.values():
        if tx.tx_class is TxClass.MONEY_MOVING:
            assert tx.reversible or tx.check is not None, tx.infno
    assert national().classify("2207A").reversible


REVERSIBLE = sorted(i for i, tx in national().entries.items() if tx.reversible)


@pytest.mark.parametrize("infno", REVERSIBLE)
def test_2601_reverses_every_reversible_transaction(infno: str) -> None:
    w = Walk()
    ledger = w.platform.ledger
    mdtrt_id = register(w)
    if infno in ("2207", "2207A", "2304", "2102"):
        setl = settle(w, infno, mdtrt_id)
        original = w.answered[infno]
        w.reverse(infno, original)
        assert ledger.by_setl_id(setl["setl_id"]).state == "reversed"  # type: ignore[union-attr]
    elif infno in ("2208", "2305", "2103"):
        family = {"2208": "2207", "2305": "2304", "2103": "2102"}[infno]
        setl = settle(w, family, mdtrt_id)
        w.ok(infno, data(psn_no=PSN, mdtrt_id=mdtrt_id, setl_id=setl["setl_id"]))
        original = w.answered[infno]
        w.reverse(infno, original)
        # The refund line is void and the settlement it cancelled is in force again: both ledgers agree.
        assert ledger.by_setl_id(setl["setl_id"]).state == "booked"  # type: ignore[union-attr]
        assert [r.state for r in ledger.refunds] == ["reversed"]
        w.ok(infno, data(psn_no=PSN, mdtrt_id=mdtrt_id, setl_id=setl["setl_id"]))  # may be cancelled again
    elif infno == "2202":
        w.ok("2202", data(psn_no=PSN, mdtrt_id=mdtrt_id, ipt_otp_no="x"))
        original = w.answered[infno]
        w.reverse(infno, original)
        assert [v["state"] for v in ledger.visits] == ["open"]
    elif infno == "2401":
        original = w.send("2401", {"mdtrtinfo": {"psn_no": PSN, "insutype": "310", "ipt_no": "ZY1"}})
        w.reverse(infno, original)
        assert w.ok("5303", data(psn_no=PSN))["data"] == []
    else:
        pytest.fail(f"no walk for reversible {infno}")
    # A second 冲正 of the same original changes nothing and is still a success.
    w.reverse(infno, original)
    # A 冲正 naming an original that never took effect is the definite "nothing to reverse".
    never = {"psn_no": PSN, "omsgid": "H44030000001202611240000009999", "oinfno": infno}
    assert "无需冲正" in w.refused("2601", {"data": never})


def test_2601_refuses_a_transaction_that_cannot_be_reversed() -> None:
    w = Walk()
    original = w.send("1101", data(mdtrt_cert_type="02", mdtrt_cert_no="440301199001011234"))
    assert "不允许冲正" in w.refused("2601", data(psn_no=PSN, omsgid=original["msgid"], oinfno="1101"))
