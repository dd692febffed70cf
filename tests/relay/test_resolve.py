"""`ybgate outbox resolve` for ops: through the running daemon's control socket (the CLI as a real
subprocess), by the class rules or by what ops found on the platform, and what the HIS hears afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

from gateway.http1.unix_client import request

from conftest import Gateway, fresh, ybgate_output


def cli_config(gateway: Gateway, directory: Path) -> Path:
    cfg = directory / "ops.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {gateway.config.state_dir}\nruntime_dir: {gateway.config.runtime_dir}\n"
        "upstreams: [{name: s, host: 127.0.0.1, port: 1, transport: tcp}]\n"
    )
    return cfg


def upload(sign_no: str) -> dict[str, object]:
    # 就诊信息上传: check-first with no query in the catalogue to resolve it, so ops decide
    return fresh("2207_settle_request.json", infno="2203", sign_no=sign_no, input={"mdtrtinfo": {"mdtrt_id": "1"}})


async def test_check_first_in_doubt_is_resolved_by_what_ops_found(gateway: Gateway, short_tmp: Path) -> None:
    cfg = cli_config(gateway, short_tmp)
    sign_no = await gateway.sign_in()
    gateway.sim.faults.set("2203", {"kind": "drop_after", "times": 1})
    doc = upload(sign_no)
    first = json.loads((await gateway.post(doc)).body)
    assert first["gateway_error"] == "outcome_unknown" and f"ybgate outbox resolve {doc['msgid']}" in first["err_msg"]

    code, _, err = await ybgate_output("outbox", "resolve", str(doc["msgid"]), "--config", str(cfg))
    assert code == 1 and "has no automatic resolution" in err and "check with the platform" in err
    code, _, err = await ybgate_output("outbox", "resolve", str(doc["msgid"]), "--booked", "--config", str(cfg))
    assert code == 1 and "--reason is required" in err
    code, out, _ = await ybgate_output(
        "outbox",
        "resolve",
        str(doc["msgid"]),
        "--booked",
        "--reason",
        "5201 shows the visit information",
        "--config",
        str(cfg),
    )
    assert code == 0 and "confirmed" in out and "5201 shows the visit information" in out

    # The HIS asking again with the same msgid: booked, do not resend; the platform never sees it twice.
    again = await gateway.post(doc)
    body = json.loads(again.body)
    assert again.status == 200 and str(body["infcode"]) == "-1" and body["gateway_error"] == "booked_no_answer"
    assert "请勿重复提交" in body["err_msg"] and "5201 shows the visit information" in body["err_msg"]
    assert [m.msgid for m in gateway.sim.ledger.messages].count(str(doc["msgid"])) == 1

    code, _, err = await ybgate_output("outbox", "resolve", str(doc["msgid"]), "--config", str(cfg))
    assert code == 1 and "is confirmed, not in doubt" in err


async def test_not_booked_lets_the_his_retry_with_a_new_msgid(gateway: Gateway, short_tmp: Path) -> None:
    cfg = cli_config(gateway, short_tmp)
    sign_no = await gateway.sign_in()
    gateway.sim.faults.set("2203", {"kind": "drop_after", "times": 1})
    doc = upload(sign_no)
    await gateway.post(doc)
    code, out, _ = await ybgate_output(
        "outbox",
        "resolve",
        str(doc["msgid"]),
        "--not-booked",
        "--reason",
        "nothing on the platform",
        "--config",
        str(cfg),
    )
    assert code == 0 and "failed" in out
    body = json.loads((await gateway.post(doc)).body)
    assert body["gateway_error"] == "not_processed" and "retry with a new msgid" in body["err_msg"]


async def test_auto_resolution_of_a_settlement_waits_for_its_reversal(gateway: Gateway, short_tmp: Path) -> None:
    sign_no = await gateway.sign_in()
    gateway.sim.faults.set("2207", {"kind": "drop_after", "times": 1})
    gateway.sim.faults.set("2601", {"kind": "drop_before", "times": 1})  # the 冲正 itself needs a second try
    doc = fresh("2207_settle_request.json", sign_no=sign_no)
    his = asyncio.create_task(gateway.post(doc))  # the cashier waits meanwhile
    assert gateway.daemon.outbox is not None
    async with asyncio.timeout(10):
        while (row := await gateway.daemon.outbox.get(str(doc["msgid"]))) is None or row.state.value != "in_doubt":  # noqa: ASYNC110 - polling the outbox another task writes
            await asyncio.sleep(0.01)
    control = str(gateway.config.control_socket)
    assert stat.S_IMODE(os.stat(control).st_mode) == 0o600
    reply = await request(
        "POST", "/outbox/resolve", json.dumps({"msgid": doc["msgid"], "action": "auto"}).encode(), unix_socket=control
    )
    result = json.loads(reply.body)
    assert reply.status == 200 and result["state"] == "reversed", result
    assert [s.state for s in gateway.sim.ledger.settlements] == ["reversed"]  # booked once, then undone
    cashier = json.loads((await his).body)
    assert cashier["gateway_error"] == "reversed"  # the same final state for the HIS
    again = await request("POST", "/outbox/resolve", json.dumps({"msgid": doc["msgid"]}).encode(), unix_socket=control)
    assert again.status == 409 and "is reversed, not in doubt" in json.loads(again.body)["error"]
    unknown = await request("POST", "/outbox/resolve", json.dumps({"msgid": "H" * 30}).encode(), unix_socket=control)
    assert unknown.status == 409 and "no request with msgid" in json.loads(unknown.body)["error"]
