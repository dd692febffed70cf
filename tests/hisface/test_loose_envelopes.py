"""Loose field types real HIS code sends and the platform accepts: relayed in the specification's shape, without
weakening exactly-once (the normalised envelope is what the outbox stores and the msgid identifies)."""

from __future__ import annotations

import json

from conftest import Gateway, fresh


def loose(doc: dict[str, object]) -> bytes:
    """The HIS's shape: input as a JSON string, opter_type as a number, inf_time in ISO 8601 with a T."""
    shaped = doc | {
        "input": json.dumps(doc["input"], ensure_ascii=False),
        "opter_type": 1,
        "inf_time": str(doc["inf_time"]).replace(" ", "T"),
    }
    return json.dumps(shaped, ensure_ascii=False).encode()


async def test_a_loose_settlement_is_relayed_normalised_and_once(gateway: Gateway) -> None:
    sign_no = await gateway.sign_in()
    doc = fresh("2207_settle_request.json", sign_no=sign_no)
    raw = loose(doc)
    first = await gateway.post(raw)
    answer = json.loads(first.body)
    assert first.status == 200 and str(answer["infcode"]) == "0", answer
    _, _, sent = gateway.sim.wire[-1]
    forwarded = json.loads(sent)
    assert forwarded["input"] == doc["input"] and forwarded["opter_type"] == "1"
    assert forwarded["inf_time"] == doc["inf_time"]
    # the HIS retries the same raw body under the same msgid: the stored answer, nothing sent again
    again = await gateway.post(raw)
    assert json.loads(again.body) == answer
    assert [m.msgid for m in gateway.sim.ledger.messages].count(str(doc["msgid"])) == 1
    assert len(gateway.sim.ledger.by_msgid(str(doc["msgid"]))) == 1
    # the same msgid with a different request is still a conflict, loose or not
    other = doc | {"input": {"data": {**doc["input"]["data"], "medfee_sumamt": 1}}}  # type: ignore[dict-item]
    conflict = await gateway.post(loose(other))
    assert json.loads(conflict.body)["gateway_error"] == "msgid_conflict"


async def test_what_the_platform_refuses_stays_refused(gateway: Gateway) -> None:
    doc = fresh("1101_query_request.json")
    short = json.loads(loose(doc)) | {"msgid": str(doc["msgid"])[:29]}
    reply = await gateway.post(short)
    assert json.loads(reply.body)["gateway_error"] == "bad_envelope" and "msgid" in json.loads(reply.body)["err_msg"]
    no_infno = {k: v for k, v in json.loads(loose(doc)).items() if k != "infno"}
    assert json.loads((await gateway.post(no_infno)).body)["gateway_error"] == "bad_envelope"
    assert gateway.sim.ledger.messages == []
