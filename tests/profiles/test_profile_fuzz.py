"""Whatever arrives, each side of a profile answers with its own error and nothing else: the gateway with
UntrustedAnswer (outcome unknown), the platform with Refusal (a platform-shaped err_msg). And every envelope the
gateway encodes, the platform opens to the same fields."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from profilekit import new_pair

from gateway.platform.envelope import decode_request
from gateway.platform.profile import Charset, bundled_profile, parse_profile
from gateway.platform.signing import ProfileCodec, Refusal, RequestNotEncodable, UntrustedAnswer, compact_json

from conftest import example as platform_example
from conftest import fuzz_examples

PAIR = new_pair()
BY_NAME = {name: bundled_profile(name) for name in ("plain", "tif", "sm2sm4", "gbk")} | {
    "encrypt-then-sign": parse_profile("sign: {over: ciphertext, content: sorted_kv}\nencrypt: {}\n", "ets.yaml"),
    "sign-only": parse_profile("sign: {content: json}\n", "so.yaml"),
}
PROFILES = tuple(BY_NAME)
GATEWAY = {name: ProfileCodec(p, PAIR.gateway_keys()) for name, p in BY_NAME.items()}
PLATFORM = {name: ProfileCodec(p, PAIR.platform_keys(), platform=True) for name, p in BY_NAME.items()}
NOW = 1_764_000_000.0

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=40)
headers = st.fixed_dictionaries(
    {},
    optional={
        "content-type": st.sampled_from(["application/json;charset=GBK", "application/json", "text/x;charset=zz"])
        # codecs Python has that are no text charsets, or that fail with a bare UnicodeError
        | st.sampled_from(["a/j;charset=idna", "a/j;charset=undefined", "a/j;charset=rot13", "a/j;charset=utf-16"])
        | header_values,
        "x-tif-paasid": header_values,
        "x-tif-timestamp": st.sampled_from(["1764000000", "²", "9" * 30]) | header_values,
        "x-tif-nonce": header_values,
        "x-tif-signature": header_values,
    },
)
doc_fields = st.fixed_dictionaries(
    {"infcode": st.sampled_from([0, "0", -1, "x", None])},
    optional={
        "output": json_values | st.sampled_from(["AAAA", "not base64", "q83vASNFZ4mrze8BI0VniQ=="]),
        "cainfo": st.sampled_from(["", "AAAA", "MEUCIQ=="]) | st.text(max_size=10),
        "respond_time": st.sampled_from(["20261124160000250", "99999999999999999"]) | st.text(max_size=17),
        "input": json_values | st.sampled_from(["AAAA", "q83vASNFZ4mrze8BI0VniQ=="]),
        "enc_type": st.sampled_from(["SM4", ""]),
        "app_id": st.sampled_from(["YBGATE-APP-0001", "x"]),
        "signtype": st.sampled_from(["SM2", ""]),
        "infno": st.sampled_from(["9001", "1101"]),
    },
)
# Raw JSON spliced into a document: unpaired surrogate escapes, integers past json's digit limit, nesting past the
# recursion limit.
splices = st.sampled_from(['"\\ud800"', '"\\udfff"', "1" * 4400, "[" * 3000, '{"a":' * 2000, "NaN"])


@st.composite
def spliced(draw: st.DrawFn) -> bytes:
    text = json.dumps(draw(doc_fields), ensure_ascii=False)
    at = draw(st.sampled_from([1, len(text) - 1]) | st.integers(0, len(text)))
    return (text[:at] + draw(splices) + text[at:]).encode(draw(st.sampled_from(["utf-8", "gb18030"])))


bodies = (
    st.binary(max_size=200)
    | doc_fields.map(compact_json)
    | doc_fields.map(lambda d: json.dumps(d, ensure_ascii=False).encode("gb18030"))
    | spliced()
)
SURROGATE_ANSWER = b'{"infcode":0,"output":{"a":"\\ud800"},"cainfo":"AAAA"}'


@settings(max_examples=fuzz_examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PROFILES), bodies, headers)
@example("gbk", SURROGATE_ANSWER, {})
@example("plain", SURROGATE_ANSWER, {"content-type": "application/json;charset=GBK"})
@example("plain", b"{}", {"content-type": "a/j;charset=undefined"})
@example("sm2sm4", b'{"infcode":' + b"1" * 5000 + b"}", {})
@example("sm2sm4", b"[" * 5000, {})
def test_gateway_side_only_ever_says_untrusted(name: str, body: bytes, hdrs: dict[str, str]) -> None:
    try:
        got = GATEWAY[name].decode_response(body, hdrs, now=NOW)
    except UntrustedAnswer:
        return
    assert isinstance(got.envelope.infcode, int)


@settings(max_examples=fuzz_examples(300), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PROFILES), bodies, headers)
@example("sign-only", b'{"infno":"1101","cainfo":"AAAA","signtype":"SM2","input":"\\ud800"}', {})
@example("plain", b'{"infno":' + b"1" * 5000 + b"}", {})
@example("plain", b"[" * 5000, {})
def test_platform_side_only_ever_refuses(name: str, body: bytes, hdrs: dict[str, str]) -> None:
    try:
        fields = PLATFORM[name].decode_request("/p", hdrs, body, now=NOW)
    except Refusal:
        return
    assert isinstance(fields, dict)


names = st.text(
    st.characters(codec="gbk", exclude_categories=("Cs", "Cc")),
    min_size=1,
    max_size=12,
)


@settings(max_examples=fuzz_examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PROFILES), names, st.dictionaries(st.text(max_size=6), json_values, max_size=4))
def test_what_the_gateway_encodes_the_platform_opens(name: str, opter_name: str, extra: dict) -> None:
    doc = platform_example("2207_settle_request.json")
    doc["opter_name"] = opter_name
    doc["input"]["data"] |= extra
    env = decode_request(json.dumps(doc, ensure_ascii=False).encode())
    try:
        json.dumps(doc, ensure_ascii=False).encode("gbk")
    except UnicodeEncodeError:
        if BY_NAME[name].charset is Charset.GBK:
            with pytest.raises(RequestNotEncodable):
                GATEWAY[name].encode_request(env, base_path="/p", now=NOW, nonce="fuzz-nonce-01")
            return
    out = GATEWAY[name].encode_request(env, base_path="/p", now=NOW, nonce="fuzz-nonce-01")
    hdrs = {k.lower(): v for k, v in out.headers}
    fields = PLATFORM[name].decode_request(out.path, hdrs, out.body, now=NOW + 1)
    assert fields["input"] == env.input and fields["opter_name"] == opter_name
    answer = platform_example("2207_settle_response.json") | {"output": {"echo": env.input}}
    resp_headers, resp_body = PLATFORM[name].encode_response(answer, now=NOW + 2)
    back = GATEWAY[name].decode_response(resp_body, {k.lower(): v for k, v in resp_headers}, now=NOW + 3)
    assert back.envelope.output == {"echo": env.input}
