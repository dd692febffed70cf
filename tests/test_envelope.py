"""Envelope validation: each field refused with its name and what was expected; GBK and infcode quirks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import EnvelopeError, RequestError
from gateway.platform.envelope import (
    charset_of,
    decode_request,
    decode_response,
    describe,
    error_body,
    parse_infcode,
)

from conftest import example


def body(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode()


def with_field(name: str, value: Any) -> bytes:
    doc = example("1101_query_request.json")
    doc[name] = value
    return body(doc)


def without(name: str) -> bytes:
    doc = example("1101_query_request.json")
    del doc[name]
    return body(doc)


def test_the_examples_are_valid() -> None:
    for name in (
        "1101_query_request.json",
        "2207_settle_request.json",
        "2601_reversal_request.json",
        "9001_signin_request.json",
    ):
        env = decode_request(body(example(name)))
        assert env.msgid == example(name)["msgid"]
        assert env.infno == name[:4]
    settle = decode_request(body(example("2207_settle_request.json")))
    assert settle.psn_no == "44000000000000000012"
    assert decode_request(body(example("9001_signin_request.json"))).psn_no is None


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("infno", "110", "expected 4 digits"),
        ("infno", 1101, "expected 4 digits"),
        ("infno", "2203a", "expected 4 digits"),
        ("msgid", "H4403000000120261124081502000", "got 29 characters"),
        ("msgid", "H44030000001202611240815020002X", "got 31 characters"),
        ("msgid", "H4403000000120261124081502000-", "30 letters or digits"),
        ("msgid", "H44030000001202613240815020002", "must be a time"),
        ("msgid", "H44030000009202611240815020002", "must start with the 12 characters of fixmedins_code"),
        ("msgid", None, "got null"),
        ("inf_time", "2026-11-24T08:15", "yyyy-MM-dd HH:mm:ss"),
        ("inf_time", "2026-11-24 08:15:02.123", "yyyy-MM-dd HH:mm:ss"),
        ("inf_time", "2026-02-30 08:15:02", "yyyy-MM-dd HH:mm:ss"),
        ("inf_time", 1732436102, "yyyy-MM-dd HH:mm:ss"),
        ("input", [], "expected a JSON object, got a list"),
        ("input", "[]", "a string that is not a JSON object"),
        ("input", "{", "a string that is not a JSON object (body is not JSON"),
        ("input", '{"a": 1, "a": 2}', "names the key 'a' twice"),
        ("opter_name", True, "expected a string, got bool"),
        ("sign_no", {"a": 1}, "expected a string, got dict"),
        ("mdtrtarea_admvs", "4403", "6-digit region code"),
        ("opter_type", "4", "expected '1', '2' or '3'"),
    ],
)
def test_each_field_is_checked(field: str, value: Any, fragment: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_request(with_field(field, value))
    assert info.value.field == field
    assert fragment in info.value.message
    assert info.value.http_status == 400


@pytest.mark.parametrize("field", ["infno", "msgid", "inf_time", "input"])
def test_missing_required_fields(field: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_request(without(field))
    assert info.value.field == field


def test_null_optional_fields_are_tolerated() -> None:
    env = decode_request(with_field("dev_no", None))
    assert env.fields["dev_no"] is None


def test_url_infno_must_match_body() -> None:
    with pytest.raises(EnvelopeError, match="URL names '2207'"):
        decode_request(body(example("1101_query_request.json")), path_infno="2207")
    assert decode_request(body(example("1101_query_request.json")), path_infno="1101").infno == "1101"


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b"", "bad_json"),
        (b"{", "bad_json"),
        (b"[1, 2]", "bad_json"),
        (b'"text"', "bad_json"),
        (b"\xff\xfe{}", "bad_encoding"),
    ],
)
def test_not_an_envelope(raw: bytes, kind: str) -> None:
    with pytest.raises(RequestError) as info:
        decode_request(raw)
    assert info.value.kind == kind


def test_gbk_is_converted_to_utf8_at_the_edge() -> None:
    doc = example("1101_query_request.json")
    gbk = json.dumps(doc, ensure_ascii=False).encode("gbk")
    env = decode_request(gbk, charset=charset_of("application/json; charset=GBK"))
    assert env.charset == "gb18030"
    assert json.loads(env.body.decode("utf-8"))["input"]["data"]["psn_name"] == "李四"


def test_gbk_bytes_without_declared_charset_are_refused() -> None:
    gbk = json.dumps(example("1101_query_request.json"), ensure_ascii=False).encode("gbk")
    with pytest.raises(RequestError) as info:
        decode_request(gbk)
    assert info.value.kind == "bad_encoding"
    assert "declare the charset" in info.value.message


def test_charset_parsing() -> None:
    assert charset_of(None) == "utf-8"
    assert charset_of("application/json") == "utf-8"
    assert charset_of("application/json;charset=UTF-8") == "utf-8"
    assert charset_of('application/json; charset="gb2312"') == "gb18030"
    with pytest.raises(RequestError) as info:
        charset_of("application/json; charset=latin-1")
    assert info.value.http_status == 415


def test_infcode_number_or_string() -> None:
    assert parse_infcode(0) == 0
    assert parse_infcode("0") == 0
    assert parse_infcode(" -1 ") == -1
    for bad in (True, "ok", 0.5, None, "1e3"):
        with pytest.raises(ValueError, match="infcode"):
            parse_infcode(bad)


def test_decode_response_examples() -> None:
    ok = decode_response(body(example("2207_settle_response.json")))
    assert ok.ok and ok.infcode == 0 and ok.output["setlinfo"]["setl_id"]
    fail = decode_response(body(example("failure_response.json")))
    assert not fail.ok and fail.err_msg == "签到信息已失效，请重新签到"
    for bad in (b"<html>", b"{}", b'{"infcode": "x"}', b"\xff"):
        with pytest.raises(ValueError):
            decode_response(bad)


def test_error_body_is_platform_shaped() -> None:
    doc = json.loads(error_body("msgid: expected 30", kind="bad_envelope"))
    assert doc["infcode"] == -1
    assert doc["output"] is None
    assert doc["err_msg"].startswith("[ybgate] msgid")
    assert doc["gateway_error"] == "bad_envelope"


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        # the bypass: classed and policed as the last infno, while a parser that keeps the first books a 2207
        (b'{"infno": "2207", "infno": "1101"}', "infno"),
        (b'{"msgid": "a", "msgid": "b"}', "msgid"),
        # anywhere in the envelope, not only at the top: the payload is what the platform books
        (b'{"input": {"data": {"psn_no": "1", "medfee_sumamt": 1, "medfee_sumamt": 100}}}', "medfee_sumamt"),
        (b'{"input": {"feedetail": [{"a": 1}, {"fee": 1, "fee": 2}]}}', "fee"),
        # an escaped spelling is the same key once decoded
        (b'{"infno": "2207", "inf\\u006eo": "1101"}', "infno"),
    ],
)
def test_a_key_named_twice_is_refused(raw: bytes, key: str) -> None:
    # splice the fragment into a valid envelope, in place of the fields it names, so nothing else is wrong
    fragment_keys = {k for k, _ in json.loads(raw, object_pairs_hook=list)}
    rest = body({k: v for k, v in example("1101_query_request.json").items() if k not in fragment_keys})
    spliced = rest[:-1] + b", " + raw[1:-1] + b"}"
    assert json.loads(spliced)  # Python's own parser takes it, keeping the last value
    with pytest.raises(RequestError) as info:
        decode_request(spliced)
    assert info.value.kind == "duplicate_key"
    assert f"names the key {key!r} twice" in info.value.message


def test_the_same_key_in_different_objects_is_not_a_duplicate() -> None:
    doc = example("2207_settle_request.json")
    doc["input"]["extra"] = {"infno": "x", "msgid": "y"}
    assert decode_request(body(doc)).infno == "2207"


# Personal values a HIS may put in the wrong field: a name, an ID number whose check digit is wrong (so no
# shape-based mask recognises it), the same as a JSON number, a phone number with spaces.
PERSONAL = ("欧阳娜娜", "440301198001011235", 440301198001011234, "138 0013 8000")


@pytest.mark.parametrize("value", PERSONAL)
@pytest.mark.parametrize(
    "field", [*example("1101_query_request.json"), "infno", "msgid", "inf_time", "unknown_extra_field"]
)
def test_a_refusal_describes_a_value_and_never_echoes_it(field: str, value: Any) -> None:
    """(#20) A refusal's reason goes to the log, the admin /status page's recent errors and the HIS: whatever
    field holds a personal value, the reason names the field and the value's shape, never the value."""
    try:
        decode_request(with_field(field, value))
    except RequestError as err:
        for part in str(value).split():
            assert part not in err.message
        assert not any("\u4e00" <= c <= "\u9fff" for c in err.message)  # no Chinese characters of a name
    # an accepted value is forwarded, and only the platform judges it


@pytest.mark.parametrize(
    ("value", "shape"),
    [
        (None, "null"),
        (True, "true/false"),
        (4, "a number"),
        ("", "an empty string"),
        ("张三", "2 characters (non-ASCII)"),
        ("4403 01-X", "9 characters (digits, letters, spaces, other ASCII)"),
        ({"a": 1}, "an object"),
        ([1], "a list"),
    ],
)
def test_describe_says_the_shape(value: Any, shape: str) -> None:
    assert describe(value) == shape


def test_loose_shapes_the_platform_accepts_are_normalised() -> None:
    """(#21) input as a JSON string holding the object, numbers for header strings, inf_time with a T: accepted,
    and what goes on (the stored and forwarded body) is the specification's shape. The same raw body always
    gives the same bytes, so a replay of it matches what the outbox stored under its msgid."""
    doc = example("2207_settle_request.json")
    loose = doc | {
        "input": json.dumps(doc["input"], ensure_ascii=False),
        "opter_type": 1,
        "inf_time": doc["inf_time"].replace(" ", "T"),
        "dev_no": None,  # nulls for optional fields, as before
        "extra_vendor_field": {"x": 1},  # unknown fields pass through
    }
    env = decode_request(body(loose))
    assert env.normalised == ("input", "opter_type", "inf_time")
    forwarded = json.loads(env.body)
    assert forwarded["input"] == doc["input"] and forwarded["opter_type"] == "1"
    assert forwarded["inf_time"] == doc["inf_time"] and forwarded["extra_vendor_field"] == {"x": 1}
    assert env.psn_no == "44000000000000000012"
    assert decode_request(body(loose)).body == env.body  # deterministic: the replay's bytes are the stored ones
    assert decode_request(env.body).normalised == ()  # and normalising is idempotent (stored rows re-read)
    plain = decode_request(body(doc))
    assert plain.normalised == () and plain.body == body(doc)  # a spec-shaped body goes on byte for byte


def test_a_list_as_input_data_is_forwarded() -> None:
    doc = example("2207_settle_request.json")
    doc["input"]["data"] = [doc["input"]["data"]]
    env = decode_request(body(doc))
    assert env.normalised == () and json.loads(env.body)["input"]["data"][0]["psn_no"] == "44000000000000000012"
