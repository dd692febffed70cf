"""The platform simulator behaves like the platform: sign-in rules, booking ledger, faults by admin call."""

from __future__ import annotations

import json

from gateway.http1.unix_client import request
from gateway.sim.ledger import Ledger
from gateway.sim.platform import SimPlatform
from gateway.sim.server import Simulator

from conftest import example


def platform(clock: list[float] | None = None) -> SimPlatform:
    t = clock or [1_764_000_000.0]
    return SimPlatform(Ledger(), clock=lambda: t[0])


def sign_in(p: SimPlatform) -> str:
    return p.process(example("9001_signin_request.json"))["output"]["signinoutb"]["sign_no"]


def test_sign_in_required_and_expiry() -> None:
    clock = [1_764_000_000.0]
    p = platform(clock)
    missing = p.process(example("1101_query_request.json") | {"sign_no": ""})
    assert int(missing["infcode"]) == -1 and missing["err_msg"] == "签到编号[sign_no]不能为空"
    sign_no = sign_in(p)
    ok = p.process(example("1101_query_request.json") | {"sign_no": sign_no})
    assert int(ok["infcode"]) == 0 and ok["output"]["baseinfo"]["psn_no"]
    clock[0] += 25 * 3600
    stale = p.process(example("1101_query_request.json") | {"sign_no": sign_no})
    assert stale["err_msg"] == "签到信息已失效，请重新签到"


def test_infcode_is_sometimes_a_string() -> None:
    p = platform()
    codes = [p.process(example("9001_signin_request.json"))["infcode"] for _ in range(4)]
    assert {type(c) for c in codes} == {int, str}


def test_response_envelope_shape() -> None:
    p = platform()
    doc = p.process(example("9001_signin_request.json"))
    assert len(doc["inf_refmsgid"]) == 30
    assert len(doc["refmsg_time"]) == 17 and len(doc["respond_time"]) == 17
    assert doc["err_msg"] is None


def test_registration_and_fee_upload() -> None:
    """2201 (money-moving, no 冲正) and 2204 (check-first) answer, so the fault matrix has one of each class."""
    p = platform()
    base = example("2207_settle_request.json") | {"sign_no": sign_in(p)}
    visit = {"psn_no": "44000000000000000012", "insutype": "310", "ipt_otp_no": "MZ00000001"}
    registered = p.process(base | {"infno": "2201", "input": {"data": visit}})
    assert int(registered["infcode"]) == 0 and registered["output"]["data"]["mdtrt_id"]
    missing = p.process(base | {"infno": "2201", "input": {"data": visit | {"insutype": ""}}})
    assert missing["err_msg"] == "输入参数[insutype]不能为空"
    lines = [{"feedetl_sn": "1", "det_item_fee_sumamt": "12.00"}]
    uploaded = p.process(base | {"infno": "2204", "input": {"feedetail": lines}})
    assert int(uploaded["infcode"]) == 0 and uploaded["output"]["result"] == lines
    assert p.process(base | {"infno": "2204", "input": {"feedetail": []}})["err_msg"] == "输入参数[feedetail]不能为空"
    no_sn = p.process(base | {"infno": "2204", "input": {"feedetail": [{"det_item_fee_sumamt": "1"}]}})
    assert no_sn["err_msg"] == "输入参数[feedetl_sn]不能为空"
    assert p.ledger.settlements == []  # neither is a settlement


def test_settlement_books_every_copy_and_reversal_undoes() -> None:
    p = platform()
    sign_no = sign_in(p)
    settle = example("2207_settle_request.json") | {"sign_no": sign_no}
    first = p.process(settle)
    assert int(first["infcode"]) == 0
    split = first["output"]["setlinfo"]
    assert round(split["fund_pay_sumamt"] + split["acct_pay"] + split["psn_cash_pay"], 2) == 128.5
    p.process(settle)  # a blind resend: a real platform books it again, so does the simulator
    assert len(p.ledger.by_msgid(settle["msgid"])) == 2
    rev = example("2601_reversal_request.json") | {"sign_no": sign_no}
    assert int(p.process(rev)["infcode"]) == 0
    assert {s.state for s in p.ledger.by_msgid(settle["msgid"])} == {"reversed"}
    none = p.process(rev | {"input": {"data": {"psn_no": "x", "omsgid": "H" * 30, "oinfno": "2207"}}})
    assert "不存在" in none["err_msg"]


def test_cancel_and_query() -> None:
    p = platform()
    sign_no = sign_in(p)
    setl_id = p.process(example("2207_settle_request.json") | {"sign_no": sign_no})["output"]["setlinfo"]["setl_id"]
    query = example("1101_query_request.json") | {
        "infno": "5203",
        "sign_no": sign_no,
        "input": {"data": {"psn_no": "44000000000000000012"}},
    }
    rows = p.process(query)["output"]["setlinfo"]
    assert [r["setl_id"] for r in rows] == [setl_id]
    cancel = example("2207_settle_request.json") | {
        "infno": "2208",
        "sign_no": sign_no,
        "input": {
            "data": {"setl_id": setl_id, "psn_no": "44000000000000000012", "mdtrt_id": "440000000000000000000123"}
        },
    }
    assert int(p.process(cancel)["infcode"]) == 0
    again = p.process(cancel)
    assert "不能重复撤销" in again["err_msg"]


def test_field_checks_and_unknown_infno() -> None:
    p = platform()
    sign_no = sign_in(p)
    bad = example("2207_settle_request.json") | {"sign_no": sign_no}
    bad["input"]["data"]["medfee_sumamt"] = "abc"
    assert "medfee_sumamt" in p.process(bad)["err_msg"]
    assert p.process(example("1101_query_request.json") | {"infno": "7777", "sign_no": sign_no})["err_msg"] == (
        "交易编号[7777]不存在"
    )


async def test_admin_endpoint_sets_faults_and_shows_ledger() -> None:
    sim = Simulator()
    addrs = await sim.start()
    host, port = addrs.admin
    try:
        bad = await request("POST", "/_sim/faults", b'{"2207": {"kind": "explode"}}', host=host, port=port)
        assert bad.status == 400 and "fault kind must be one of" in json.loads(bad.body)["error"]
        ok = await request(
            "POST", "/_sim/faults", b'{"2207": {"kind": "drop_after", "times": 1}}', host=host, port=port
        )
        assert json.loads(ok.body)["2207"]["kind"] == "drop_after"
        body = json.dumps(example("9001_signin_request.json")).encode()
        await request("POST", "/", body, host=addrs.platform[0], port=addrs.platform[1])
        ledger = json.loads((await request("GET", "/_sim/ledger", host=host, port=port)).body)
        assert ledger["messages"][0]["infno"] == "9001"
        cleared = await request("DELETE", "/_sim/faults", host=host, port=port)
        assert cleared.status == 200 and sim.faults.snapshot() == {}
        expired = await request("POST", "/_sim/expire-signins", host=host, port=port)
        assert json.loads(expired.body) == {"expired": 1}
    finally:
        await sim.stop()
