"""Issue #28 item 7: the simulator as a reconciliation partner, driven through its real admin and platform
listeners: clearing from the request, tampering of any field and of phantoms of any infno, undo, a settable
clock, and 3201 totals that can disagree with the 3202 detail."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest_asyncio

from gateway.http1.unix_client import request
from gateway.platform.stmtfiles import GroupKey
from gateway.sim.server import Simulator

from conftest import example

PSN = "44000000000000000012"
DAY = "2026-11-24"


class Rig:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        assert sim.addresses is not None
        self.platform, self.admin = sim.addresses.platform, sim.addresses.admin
        self.sign_no = ""
        self.n = 0

    async def call(self, infno: str, inp: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        doc = example("2207_settle_request.json") | {
            "infno": infno,
            "msgid": f"H44030000001{DAY.replace('-', '')}082003{self.n:04d}",
            "sign_no": self.sign_no,
            "input": inp,
        }
        body = json.dumps(doc, ensure_ascii=False).encode()
        reply = await request("POST", "/", body, host=self.platform[0], port=self.platform[1])
        return json.loads(reply.body)

    async def admin_call(self, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
        body = json.dumps(doc).encode() if doc is not None else b""
        reply = await request(method, path, body, host=self.admin[0], port=self.admin[1])
        return reply.status, json.loads(reply.body)

    async def settle(self, infno: str, **extra: Any) -> dict[str, Any]:
        data = {"psn_no": PSN, "mdtrt_id": "M1", "medfee_sumamt": "100.00", "chrg_bchno": "C1"} | extra
        answer = await self.call(infno, {"data": data})
        assert str(answer["infcode"]) == "0", answer
        return answer["output"]["setlinfo"]

    async def totals(self, clr_type: str, count: int, total: str) -> dict[str, Any]:
        data = {
            "insutype": "310",
            "clr_type": clr_type,
            "setl_optins": "440300",
            "stmt_begndate": DAY,
            "stmt_enddate": DAY,
            "medfee_sumamt": total,
            "fund_pay_sumamt": f"{Decimal(total) * Decimal('0.6'):.2f}",
            "fixmedins_setl_cnt": count,
        }
        answer = await self.call("3201", {"data": data})
        assert str(answer["infcode"]) == "0", answer
        return answer["output"]["stmtinfo"]


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    sim = Simulator()
    await sim.start()
    r = Rig(sim)
    try:
        status, clock = await r.admin_call("POST", "/_sim/clock", {"now": f"{DAY} 08:20:00"})
        assert status == 200 and clock["platform_time"].startswith(DAY)
        answer = await r.call("9001", {"signIn": {"opter_no": "0012"}})
        r.sign_no = answer["output"]["signinoutb"]["sign_no"]
        yield r
    finally:
        await sim.stop()


def detail(r: Rig, clr_type: str, key: str = "310") -> list[Any]:
    return r.sim.platform.statements.view(GroupKey(key, clr_type, "440300"), DAY, DAY, scope="3202")


async def test_every_settlement_family_books_its_group_from_the_request(rig: Rig) -> None:
    outpatient = await rig.settle("2207", clr_type="9901", setl_optins="440100")
    inpatient = await rig.settle("2304")
    pharmacy = await rig.settle("2102")
    assert [(s["clr_type"], s["clr_optins"]) for s in (outpatient, inpatient, pharmacy)] == [
        ("9901", "440100"),
        ("21", "440300"),
        ("41", "440300"),
    ]
    cancel = await rig.call("2305", {"data": {"psn_no": PSN, "setl_id": inpatient["setl_id"], "mdtrt_id": "M1"}})
    assert str(cancel["infcode"]) == "0"
    assert (await rig.totals("21", 2, "0.00"))["stmt_rslt"] == "0", "the settlement and its refund net to zero"
    assert all(line.setl_time.startswith(DAY) for line in detail(rig, "21")), "booked on the clock's day"


async def test_3201_and_3202_can_disagree_both_ways(rig: Rig) -> None:
    lost, altered = await rig.settle("2207"), await rig.settle("2207")
    assert (await rig.totals("11", 2, "200.00"))["stmt_rslt"] == "0"
    # The totals lose a line the detail still holds: 3201 differs while the detail matches.
    status, _ = await rig.admin_call("POST", "/_sim/recon", {"lose": [lost["setl_id"]], "only": "3201"})
    assert status == 200
    assert (await rig.totals("11", 2, "200.00"))["stmt_rslt"] == "1"
    assert {line.setl_id for line in detail(rig, "11")} == {lost["setl_id"], altered["setl_id"]}
    # The detail reports another amount while the totals agree.
    change = {"alter": {altered["setl_id"]: {"medfee_sumamt": "99.99"}}, "only": "3202"}
    assert (await rig.admin_call("POST", "/_sim/recon", change))[0] == 200
    assert {str(line.medfee_sumamt) for line in detail(rig, "11")} == {"100.00", "99.99"}
    status, snap = await rig.admin_call("POST", "/_sim/recon", {"undo": [lost["setl_id"]]})
    assert status == 200 and snap["lost"] == []
    assert (await rig.totals("11", 2, "200.00"))["stmt_rslt"] == "0", "the 3201 difference is undone"


async def test_alter_any_field_tamper_phantoms_and_undo(rig: Rig) -> None:
    setl = await rig.settle("2207")
    fields = {"setl_time": "2026-11-23 10:00:00", "insutype": "390", "clr_type": "21", "psn_no": "44X"}
    assert (await rig.admin_call("POST", "/_sim/recon", {"alter": {setl["setl_id"]: fields}}))[0] == 200
    assert detail(rig, "11") == [], "moved to another day and group"
    moved = rig.sim.platform.statements.view(GroupKey("390", "21", "440300"), "2026-11-23", "2026-11-23")
    assert [(line.setl_id, line.psn_no) for line in moved] == [(setl["setl_id"], "44X")]
    status, snap = await rig.admin_call("POST", "/_sim/recon", {"phantom": [{"infno": "2305", "clr_type": "21"}]})
    assert status == 200
    phantom = snap["made"][0]
    refunds = [line for line in detail(rig, "21") if line.setl_id == phantom]
    assert [(r.refd_setl_flag, r.medfee_sumamt) for r in refunds] == [("1", Decimal("-100.00"))]
    assert (await rig.admin_call("POST", "/_sim/recon", {"alter": {phantom: {"medfee_sumamt": "-5.00"}}}))[0] == 200
    assert [line.medfee_sumamt for line in detail(rig, "21")] == [Decimal("-5.00")], "a phantom can be altered"
    status, _ = await rig.admin_call("POST", "/_sim/recon", {"undo": [phantom, setl["setl_id"]]})
    assert status == 200 and detail(rig, "21") == [] and len(detail(rig, "11")) == 1
    bad = await rig.admin_call("POST", "/_sim/recon", {"alter": {setl["setl_id"]: {"opter_name": "x"}}})
    assert bad[0] == 400 and "alter takes fields among" in bad[1]["error"]
    assert (await rig.admin_call("POST", "/_sim/recon", {"phantom": [{"infno": "1101"}]}))[0] == 400
    assert (await rig.admin_call("POST", "/_sim/recon", {"undo": ["nothing"]}))[0] == 400


async def test_the_clock_can_be_set_advanced_and_reset(rig: Rig) -> None:
    status, now = await rig.admin_call("POST", "/_sim/clock", {"advance": 16 * 3600})
    assert status == 200 and now["platform_time"].startswith("2026-11-25")
    setl = await rig.settle("2207")
    assert setl["setl_time"].startswith("2026-11-25")
    assert (await rig.admin_call("POST", "/_sim/clock", {"now": "yesterday"}))[0] == 400
    status, now = await rig.admin_call("DELETE", "/_sim/clock")
    assert status == 200 and now["offset"] == 0.0
