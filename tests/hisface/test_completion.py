"""Half envelopes completed by the gateway for the clients that ask (`complete:` in their policy entry): the
fields filled, logged by name, sent to the platform, and exactly-once unchanged for retries of the same bytes."""

from __future__ import annotations

import json

import pytest
import structlog

from gateway.audit.log import audit_files
from gateway.policy.loader import PolicyError, load_policy_text

from conftest import Gateway, fresh, gateway_operator

OPERATOR = gateway_operator()
COMPLETE = ["inf_time", "sign_no", "fixmedins_code", "fixmedins_name", "mdtrtarea_admvs", "opter", "opter_name"]


def ask_for_completion(gateway: Gateway, fields: list[str]) -> None:
    assert gateway.config.policy is not None
    policy = gateway.config.policy.paths[0] / "demo.yaml"
    lines = [x for x in policy.read_text().splitlines() if not x.startswith(("    answer:", "    complete:"))]
    at = lines.index("    allow: [everything]") + 1
    policy.write_text("\n".join([*lines[:at], "    answer: platform", f"    complete: {fields}", *lines[at:]]) + "\n")
    assert gateway.daemon.reload_policy()["result"] == "applied"


def half(name: str) -> dict[str, object]:
    doc = fresh(name)
    for field in COMPLETE:
        doc.pop(field, None)
    return doc


async def test_a_half_envelope_is_completed_and_relayed_once(signing: Gateway) -> None:
    ask_for_completion(signing, COMPLETE)
    doc = half("1101_query_request.json")
    raw = json.dumps(doc, ensure_ascii=False).encode()
    with structlog.testing.capture_logs() as logs:
        first = await signing.post(raw)
    answer = json.loads(first.body)
    assert str(answer["infcode"]) == "0", answer
    [event] = [e for e in logs if e["event"] == "envelope_completed"]
    assert event["client"] == "demo-user" and event["fields"] == COMPLETE
    counted = signing.daemon.metrics.registry.get_sample_value(
        "ybgate_envelope_completions_total", {"client": "demo-user"}
    )
    assert counted == len(COMPLETE)
    _, _, sent = signing.sim.wire[-1]
    forwarded = json.loads(sent)
    msgid = str(doc["msgid"])
    stamp = msgid[12:26]
    assert forwarded["inf_time"] == f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[8:10]}:{stamp[10:12]}:{stamp[12:]}"
    assert forwarded["fixmedins_code"] == OPERATOR.fixmedins_code and forwarded["opter"] == OPERATOR.opter
    assert forwarded["mdtrtarea_admvs"] == OPERATOR.mdtrtarea_admvs and forwarded["sign_no"]  # the gateway's
    # the same raw bytes later: completed to the same envelope, so the stored answer, nothing sent again
    again = await signing.post(raw)
    assert json.loads(again.body) == answer
    assert [m.msgid for m in signing.sim.ledger.messages].count(msgid) == 1
    # the audit entry of its outcome names the fields the gateway filled in, and only those
    assert (row := await signing.daemon.outbox.get(msgid)) is not None and row.completed == ",".join(COMPLETE)  # type: ignore[union-attr]
    part = half("1101_query_request.json") | {"opter": "0012", "opter_name": "王五"}
    assert str(json.loads((await signing.post(part)).body)["infcode"]) == "0"
    audit = signing.daemon.audit
    assert audit is not None
    await audit.drain()
    entries = [json.loads(line) for f in audit_files(signing.config.audit_dir) for line in f.read_text().splitlines()]
    by_msgid = {e.get("msgid"): e for e in entries if e.get("kind") == "outcome"}
    assert by_msgid[msgid]["completed"] == COMPLETE
    assert by_msgid[part["msgid"]]["completed"] == [f for f in COMPLETE if f not in ("opter", "opter_name")]


async def test_a_field_the_his_sent_is_never_overwritten(signing: Gateway) -> None:
    ask_for_completion(signing, COMPLETE)
    doc = half("1101_query_request.json") | {"opter": "0012", "opter_name": "王五"}
    assert str(json.loads((await signing.post(doc)).body)["infcode"]) == "0"
    forwarded = json.loads(signing.sim.wire[-1][2])
    assert (forwarded["opter"], forwarded["opter_name"]) == ("0012", "王五")


async def test_completion_without_values_is_a_clear_refusal(gateway: Gateway) -> None:
    """No session: in ybgate.yaml: nothing to complete with, and the HIS is told so, not the platform asked."""
    ask_for_completion(gateway, ["fixmedins_code"])
    doc = fresh("1101_query_request.json")
    del doc["fixmedins_code"]
    reply = json.loads((await gateway.post(doc)).body)
    assert reply["gateway_error"] == "bad_envelope" and "fixmedins_code: missing" in reply["err_msg"]
    assert "no session: values" in reply["err_msg"]
    ask_for_completion(gateway, ["sign_no"])
    doc = fresh("1101_query_request.json")
    del doc["sign_no"]
    reply = json.loads((await gateway.post(doc)).body)
    assert "session.sign_in is off" in reply["err_msg"] and gateway.sim.ledger.messages == []


def test_only_completable_fields_may_be_named() -> None:
    with pytest.raises(PolicyError) as info:
        load_policy_text('clients:\n  - name: a\n    unix: {uids: [1]}\n    allow: ["1101"]\n    complete: [psn_no]\n')
    assert any(line.startswith("<policy>:5:16") for line in info.value.lines()), info.value.lines()
