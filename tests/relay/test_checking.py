"""Resolution by query as data: the catalogue's check specs, the query they build, and the verdicts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest

from gateway.platform.catalogue import national
from gateway.platform.envelope import decode_request, decode_response
from gateway.relay.checking import Verdict, dig, judge, query_envelope

from conftest import fresh

UPLOAD = national().classify("2204")


def upload(*sns: str) -> Any:
    lines = [{"feedetl_sn": sn, "mdtrt_id": "MD1", "psn_no": "P1"} for sn in sns]
    doc = fresh("2207_settle_request.json", infno="2204", sign_no="S1", input={"feedetail": lines})
    return decode_request(json.dumps(doc, ensure_ascii=False).encode())


def answer(output: Any, infcode: int = 0, err: str | None = None) -> Any:
    doc = {"infcode": infcode, "err_msg": err, "output": output}
    return decode_response(json.dumps(doc, ensure_ascii=False).encode())


def test_the_query_carries_the_originals_header_and_the_specs_input() -> None:
    assert UPLOAD.check is not None
    original = upload("1", "2")
    query = query_envelope(UPLOAD.check, original, "H44030000001202611250900000001", datetime(2026, 11, 25, 9))
    assert query.infno == "5204" and query.msgid == "H44030000001202611250900000001"
    assert query.fields["sign_no"] == "S1" and query.fields["inf_time"] == "2026-11-25 09:00:00"
    assert query.fields["input"] == {"data": {"psn_no": "P1", "mdtrt_id": "MD1"}}


@pytest.mark.parametrize(
    ("held", "verdict"),
    [
        (["1", "2", "9"], Verdict.HELD),
        ([], Verdict.ABSENT),
        (["9"], Verdict.ABSENT),
        (["2"], Verdict.PARTIAL),
    ],
)
def test_the_verdict_compares_keys_sent_and_held(held: list[str], verdict: Verdict) -> None:
    assert UPLOAD.check is not None
    finding = judge(UPLOAD.check, upload("1", "2"), answer({"feedetail": [{"feedetl_sn": sn} for sn in held]}))
    assert finding.verdict is verdict
    assert "5204" in finding.detail and "feedetl_sn 1, 2" in finding.detail


def test_a_refused_query_or_nothing_to_look_for_decides_nothing() -> None:
    assert UPLOAD.check is not None
    refused = judge(UPLOAD.check, upload("1"), answer(None, -1, "签到信息已失效"))
    assert refused.verdict is Verdict.UNDECIDED and "签到信息已失效" in refused.detail
    nothing = judge(UPLOAD.check, upload(), answer({"feedetail": []}))
    assert nothing.verdict is Verdict.UNDECIDED


def test_dig_reads_dotted_paths_through_first_list_elements() -> None:
    doc = {"a": [{"b": {"c": 1}}, {"b": {"c": 2}}], "d": []}
    assert dig(doc, "a.b.c") == 1
    assert dig(doc, "a") == doc["a"]
    assert dig(doc, "d.x") is None and dig(doc, "missing.x") is None and dig("text", "a") is None


@pytest.mark.parametrize(
    ("check", "message"),
    [
        ("5204", "must be a mapping"),
        ({"infno": "5204", "input": {"a": "b"}, "sent": "x", "held": "y"}, "key must be a dotted field path"),
        ({"infno": "52", "input": {"a": "b"}, "sent": "x", "held": "y", "key": "k"}, "query transaction number"),
        ({"infno": "5204", "input": {}, "sent": "x", "held": "y", "key": "k"}, "map the query's fields"),
        ({"infno": "5204", "input": {"a": "b c"}, "sent": "x", "held": "y", "key": "k"}, "input.a must be"),
        ({"infno": "5204", "input": {"a": "b"}, "sent": "x", "held": "y", "key": "k", "when": 1}, "unknown field"),
    ],
)
def test_a_bad_check_spec_names_the_transaction_and_the_field(check: Any, message: str) -> None:
    with pytest.raises(ValueError, match="transaction 2204: check") as err:
        national().overridden({"transactions": {"2204": {"class": "check_first", "check": check}}})
    assert message in str(err.value)
