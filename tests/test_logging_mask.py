"""Patient data is masked in every log event, whatever logged it and however deep it sits."""

from __future__ import annotations

import io
import json

import structlog

from gateway.logging import configure, is_resident_id, mask_text, mask_value

from conftest import example

REAL_LOOKING_IDS = ["11010519491231002X", "440301199001011234", "320106198512300010"]


def test_resident_id_check_digit() -> None:
    for rid in REAL_LOOKING_IDS:
        assert is_resident_id(rid)
    assert not is_resident_id("440301199001011235")  # wrong check digit
    assert not is_resident_id("44030119900101123")


def test_text_masking_keeps_non_personal_numbers() -> None:
    text = (
        "certno 11010519491231002X tel 13812345678; msgid H44030000001202611240815020002 "
        "psn_no 44000000000000000012 bad-id 440301199001011235 amount 128.50"
    )
    masked = mask_text(text)
    assert "11010519491231002X" not in masked and "110***********002X" in masked
    assert "13812345678" not in masked and "138****5678" in masked
    assert "H44030000001202611240815020002" in masked
    assert "44000000000000000012" in masked
    assert "440301199001011235" in masked  # not an ID: check digit fails
    assert "128.50" in masked


def test_fields_by_name_nested() -> None:
    doc = example("1101_query_request.json")
    masked = mask_value(None, doc)
    data = masked["input"]["data"]
    assert data["psn_name"] == "李*"
    assert masked["opter_name"] == "张*"
    assert data["certno"] == "440***********1234"
    assert data["mdtrt_cert_no"] == "440***********1234"
    assert masked["msgid"] == doc["msgid"]
    assert masked["fixmedins_name"] == doc["fixmedins_name"]


def test_every_event_is_masked_in_json_output() -> None:
    out = io.StringIO()
    configure("info", "json", stream=out)
    log = structlog.get_logger("any.module")
    log.info(
        "lookup",
        psn_name="王小明",
        payload={"data": {"certno": "320106198512300010", "mob": "15912345678"}},
        note="patient 320106198512300010 called from 15912345678",
    )
    log.warning("free text 11010519491231002X")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    raw = out.getvalue()
    for secret in ("王小明", "320106198512300010", "15912345678", "11010519491231002X"):
        assert secret not in raw
    assert lines[0]["psn_name"] == "王**"
    assert lines[0]["payload"]["data"]["mob"] == "159****5678"
    assert lines[0]["level"] == "info" and "timestamp" in lines[0]
    assert lines[1]["event"] == "free text 110***********002X"
