"""The platform envelope under hypothesis: whatever a HIS sends, decode_request accepts a well-formed envelope or
raises RequestError (EnvelopeError naming the field); whatever comes back, decode_response yields an answer or a
ValueError. What the gateway encodes it decodes to the same fields, in UTF-8 and in GBK."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.errors import RequestError
from gateway.platform.envelope import (
    RequestEnvelope,
    charset_of,
    decode_request,
    decode_response,
    error_body,
)

from conftest import fuzz_examples

ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
VALID_MSGID = "H44030000001202611240800000001"
FREE_FIELDS = ("recer_sys_code", "dev_no", "dev_safe_info", "cainfo", "signtype", "infver", "opter", "opter_name")
FREE_FIELDS += ("fixmedins_name", "sign_no", "app_id", "enc_type")

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)
inputs = st.dictionaries(st.text(max_size=8), json_values, max_size=4)
# Strategies of one draw each (an integer mapped to the value): a 10⁵-example run spends its time in the parser,
# not in drawing thirty characters one by one.
EPOCH, LAST = datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59)
times = st.integers(0, int((LAST - EPOCH).total_seconds())).map(lambda s: EPOCH + timedelta(seconds=s))


def _base62(n: int, width: int) -> str:
    out = ""
    for _ in range(width):
        n, digit = divmod(n, 62)
        out += ALNUM[digit]
    return out


codes = st.integers(0, 62**12 - 1).map(lambda n: _base62(n, 12))
serials = st.integers(0, 62**4 - 1).map(lambda n: _base62(n, 4))
infnos = st.builds("{:04d}{}".format, st.integers(0, 9999), st.sampled_from(["", "A", "B", "Z"]))
admdvs = st.integers(0, 999_999).map("{:06d}".format) | st.sampled_from(["", None])
optional_text = st.none() | st.text(max_size=12)


def _stamp14(t: datetime) -> str:
    # strftime("%Y") drops the leading zeros of years below 1000 on glibc; the wire format keeps four digits.
    return f"{t.year:04d}{t.month:02d}{t.day:02d}{t.hour:02d}{t.minute:02d}{t.second:02d}"


def _inf_time(t: datetime) -> str:
    return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"


@st.composite
def envelopes(draw: st.DrawFn) -> dict[str, Any]:
    """A request envelope that satisfies every rule of decode_request."""
    code = draw(codes)
    doc: dict[str, Any] = {
        "infno": draw(infnos),
        "msgid": code + _stamp14(draw(times)) + draw(serials),
        "inf_time": _inf_time(draw(times)),
        "input": draw(inputs),
    }
    for name in draw(st.lists(st.sampled_from(FREE_FIELDS), unique=True, max_size=3)):
        doc[name] = draw(optional_text)
    if draw(st.booleans()):
        doc["fixmedins_code"] = draw(st.sampled_from([code, "", None, code[:11]]))
    for name in ("mdtrtarea_admvs", "insuplc_admdvs"):
        if draw(st.booleans()):
            doc[name] = draw(admdvs)
    if draw(st.booleans()):
        doc["opter_type"] = draw(st.sampled_from([None, "", "1", "2", "3"]))
    return doc


# Values each field's rule must refuse or survive: near misses (a trailing newline, non-ASCII digits), wrong types.
near_misses = st.sampled_from(
    [
        "1101\n", "1101 ", "١١٠١", "１１０１", "H44030000001202611240800000001\n", "2026-11-24 08:00:00\n",
        "2026-02-30 08:00:00", "0000-01-01 00:00:00", "440300\n", "4403OO", "1\n", "\ud800", "a\udfffb", "",
        0, -1, 1.5, True, None, [], {}, "H4403000000120261324080000000I",
    ]
)  # fmt: skip
fields = st.sampled_from(["infno", "msgid", "inf_time", "input", "fixmedins_code", "insuplc_admdvs", "opter_type"])
odd_values = near_misses | json_values


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> dict[str, Any]:
    doc = draw(envelopes())
    for name in draw(st.lists(fields | st.sampled_from(FREE_FIELDS), max_size=3)):
        if draw(st.booleans()):
            doc[name] = draw(odd_values)
        else:
            doc.pop(name, None)
    return doc


# Raw JSON text spliced into an otherwise valid body: escapes that decode to unpaired surrogates, numbers the
# int parser refuses, nesting deeper than the recursion limit, non-finite numbers, a BOM, broken structure.
splices = st.sampled_from(
    [
        '"\\ud800"', '"\\udc00\\ud800"', '"\\ud83d\\ude00"', "1" * 4301, "-" + "9" * 5000, "[" * 5000,
        "[" * 3000 + "]" * 3000, '{"a":' * 3000, "NaN", "-Infinity", "1e999", "\ufeff", "\x00", '"\\u0000"',
        ",", ":", '"infno":"1101\\n",', '"input":"x",', '"input":{"a":"\\udfff"},', "}", "]",
    ]
)  # fmt: skip


@st.composite
def spliced_bodies(draw: st.DrawFn) -> bytes:
    text = json.dumps(draw(envelopes()), ensure_ascii=draw(st.booleans()))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(splices) + text[at:]
    return text.encode("utf-8", "surrogatepass")


def encoded(doc: dict[str, Any], charset: str) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode(charset, "surrogatepass" if charset == "utf-8" else "strict")


request_bodies = (
    st.binary(max_size=300)
    | spliced_bodies()
    | mutated_envelopes().map(lambda d: json.dumps(d).encode())
    | mutated_envelopes().map(lambda d: encoded(d, "utf-8"))
)


def check_accepted(env: RequestEnvelope, charset: str, path_infno: str | None) -> None:
    """What decode_request returns is fit to forward: each checked field matches its rule exactly, and the body is
    UTF-8 JSON of the same fields, which the profile codecs can re-encode."""
    assert re.fullmatch(r"[0-9]{4}[A-Z]?", env.infno) and path_infno in (None, env.infno)
    assert re.fullmatch(r"[A-Za-z0-9]{30}", env.msgid)
    assert _inf_time(env.inf_time) == env.fields["inf_time"]
    assert isinstance(env.input, dict) and env.charset == charset
    assert json.loads(env.body.decode("utf-8")) == env.fields
    json.dumps(env.fields, ensure_ascii=False).encode("utf-8")
    for name in ("mdtrtarea_admvs", "insuplc_admdvs"):
        assert env.fields.get(name) in (None, "") or re.fullmatch(r"[0-9]{6}", env.fields[name])


@settings(max_examples=fuzz_examples(300))
@given(request_bodies, st.sampled_from(["utf-8", "gb18030"]), st.sampled_from([None, "1101", "2207"]))
@example(b'{"infno":"1101\\n"}', "utf-8", None)
@example(b"[" * 100_000, "utf-8", None)
@example(b'{"a":' + b"1" * 5000 + b"}", "gb18030", None)
@example(
    encoded(
        {"infno": "1101", "msgid": VALID_MSGID, "inf_time": "2026-11-24 08:00:00", "input": {"x": "\ud800"}}, "utf-8"
    ),
    "gb18030",
    None,
)
def test_decode_request_accepts_well_formed_or_raises_request_error(
    body: bytes, charset: str, path_infno: str | None
) -> None:
    try:
        env = decode_request(body, charset=charset, path_infno=path_infno)
    except RequestError as err:
        assert err.message and 400 <= err.http_status < 500
        return
    check_accepted(env, charset, path_infno)


@settings(max_examples=fuzz_examples(150))
@given(envelopes(), st.sampled_from(["utf-8", "gbk", "gb18030"]), st.booleans(), st.booleans())
def test_what_a_his_encodes_decodes_to_the_same_fields(
    doc: dict[str, Any], codec: str, ascii_escapes: bool, in_path: bool
) -> None:
    try:
        body = json.dumps(doc, ensure_ascii=ascii_escapes).encode(codec)
    except UnicodeEncodeError:
        body = json.dumps(doc, ensure_ascii=ascii_escapes).encode("gb18030")  # GBK lacks it; GB18030 has all
    charset = "utf-8" if codec == "utf-8" else "gb18030"
    path_infno = doc["infno"] if in_path else None
    env = decode_request(body, charset=charset, path_infno=path_infno)
    assert env.fields == doc and (env.infno, env.msgid) == (doc["infno"], doc["msgid"])
    assert _inf_time(env.inf_time) == doc["inf_time"]
    check_accepted(env, charset, path_infno)
    if charset == "utf-8":
        assert env.body == body  # forwarded untouched


response_bodies = (
    st.binary(max_size=200)
    | spliced_bodies()
    | st.fixed_dictionaries(
        {"infcode": st.sampled_from([0, "0", " -1 ", "1" * 5000, "x", None, 1.0, True, "٠"]) | json_values},
        optional={"err_msg": json_values, "output": json_values},
    ).map(lambda d: json.dumps(d).encode())
)


@settings(max_examples=fuzz_examples(300))
@given(response_bodies)
@example(b'{"infcode":' + b"1" * 5000 + b"}")
@example(b"[" * 100_000)
def test_decode_response_answers_or_raises_value_error(body: bytes) -> None:
    try:
        resp = decode_response(body)
    except ValueError as exc:
        assert str(exc)
        return
    assert type(resp.infcode) is int and resp.body == body
    assert resp.err_msg is None or isinstance(resp.err_msg, str)


@settings(max_examples=fuzz_examples(100))
@given(st.text(max_size=60), st.integers(-(10**6), 10**6), st.none() | st.text(max_size=10))
def test_gateway_error_bodies_decode_as_answers(message: str, infcode: int, kind: str | None) -> None:
    resp = decode_response(error_body(message, infcode=infcode, kind=kind))
    assert (resp.infcode, resp.err_msg) == (infcode, f"[ybgate] {message}")
    assert resp.fields.get("gateway_error") == (kind or None)


@settings(max_examples=fuzz_examples(200))
@given(
    st.none()
    | st.text(max_size=40)
    | st.builds(
        "{}; {}={}".format,
        st.sampled_from(["application/json", "text/plain", ""]),
        st.sampled_from(["charset", "CHARSET", " charset ", "q"]),
        st.sampled_from(["utf-8", "UTF8", '"GBK"', "gb2312", "GB18030", "cp936", "latin-1", "idna", ""]),
    )
)
def test_charset_of_names_a_decodable_charset_or_refuses(content_type: str | None) -> None:
    try:
        charset = charset_of(content_type)
    except RequestError as err:
        assert err.http_status == 415
        return
    assert charset in ("utf-8", "gb18030")
