"""Profiles as pure functions: known answers for TIF and SM4, SM2 cainfo checked by OpenSSL and gmssl, both
directions of every bundled profile, and each way a platform refuses what does not fit."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from profilekit import (
    APP_ID,
    PAASID,
    SM4_HEX,
    TIF_SECRET,
    gmssl_verifies,
    new_pair,
    openssl,
    openssl_verifies,
    public_pem,
)

from gateway.crypto import SM2PrivateKey
from gateway.crypto.sm2 import raw_to_der_signature
from gateway.errors import ConfigError
from gateway.platform.envelope import decode_request
from gateway.platform.profile import (
    BUNDLED,
    Charset,
    SignatureForm,
    SignedContent,
    Sm4KeySource,
    bundled_profile,
    parse_profile,
)
from gateway.platform.signing import (
    ProfileCodec,
    ProfileKeyError,
    ProfileKeys,
    Refusal,
    RequestNotEncodable,
    UntrustedAnswer,
    compact_json,
    sm4_key_from_secret,
    sm4_open,
    sm4_seal,
    sorted_kv,
    tif_headers,
    tif_signature,
)
from gateway.relay.rules import rule_for

from conftest import example

NOW = 1_764_000_000.0
NONCE = "nonce-0001abcd"
BASE = "/fsi/api/rsfComIfsService/callService"


def settle_envelope():
    doc = example("2207_settle_request.json")
    return decode_request(json.dumps(doc, ensure_ascii=False).encode())


# -- known answers ---------------------------------------------------------------------------------------------


def test_tif_signature_known_answers() -> None:
    # Computed with coreutils sha256sum over the concatenation, not with Python.
    assert tif_signature("1764000000", TIF_SECRET, NONCE) == (
        "3df961a39eb7af24eabba00c12dfa92f499c00040b70ceea62ae8fbebfcd60e2"
    )
    assert tif_signature("1700000000", "secret", "a1b2c3d4e5f6") == (
        "0623b68380cd213b235ed1284bf4496ede8d97de0d9e916381bcd1f85d902c81"
    )


def test_tif_signature_matches_sha256sum_for_other_inputs() -> None:
    for stamp, secret, nonce in (("1", "", "n"), ("1764001234", "密钥 with spaces", "Zz-_09" * 5)):
        text = stamp + secret + nonce + stamp
        out = subprocess.run(["sha256sum"], input=text.encode(), capture_output=True, check=True, timeout=10)
        assert tif_signature(stamp, secret, nonce) == out.stdout.split()[0].decode()


def test_tif_headers_are_the_four_named_headers() -> None:
    headers = dict(tif_headers(PAASID, TIF_SECRET, NOW + 0.9, NONCE))
    assert headers == {
        "x-tif-paasid": PAASID,
        "x-tif-timestamp": "1764000000",  # whole seconds, truncated
        "x-tif-nonce": NONCE,
        "x-tif-signature": "3df961a39eb7af24eabba00c12dfa92f499c00040b70ceea62ae8fbebfcd60e2",
    }


def test_sm4_seal_known_answer_and_openssl() -> None:
    key = bytes.fromhex(SM4_HEX)
    # GB/T 32907 example: the standard's key encrypting itself gives 681edf34…; PKCS#7 adds a full block.
    sealed = base64.b64decode(sm4_seal(key, key))
    assert sealed[:16].hex() == "681edf34d206965e86b3e94f536e4246" and len(sealed) == 32
    assert sm4_seal(key, "hello 医保".encode()) == "crXOXRD2i8MFtMuSZCEbGQ=="  # from `openssl enc -sm4-ecb`
    msg = compact_json({"data": {"psn_no": "44001", "name": "张三"}})
    out = openssl("enc", "-sm4-ecb", "-K", SM4_HEX, "-nosalt", data=msg)
    assert out.returncode == 0, out.stderr
    assert sm4_seal(key, msg) == base64.b64encode(out.stdout).decode()
    assert sm4_open(key, base64.b64encode(out.stdout).decode()) == msg


def test_sm4_matches_gmssl() -> None:
    from gmssl.sm4 import SM4_DECRYPT, SM4_ENCRYPT, CryptSM4

    key = bytes.fromhex(SM4_HEX)
    msg = compact_json({"setl_id": "S1", "amount": 128.5})
    gm = CryptSM4()
    gm.set_key(key, SM4_ENCRYPT)
    assert base64.b64encode(gm.crypt_ecb(msg)).decode() == sm4_seal(key, msg)
    gm.set_key(key, SM4_DECRYPT)
    assert gm.crypt_ecb(base64.b64decode(sm4_seal(key, msg))) == msg


def test_sm4_key_sources() -> None:
    assert sm4_key_from_secret(SM4_HEX + "\n", Sm4KeySource.HEX) == bytes.fromhex(SM4_HEX)
    assert (
        sm4_key_from_secret("app-secret", Sm4KeySource.SM3_OF_SECRET)
        == bytes.fromhex(openssl("dgst", "-sm3", "-r", data=b"app-secret").stdout.split()[0].decode())[:16]
    )
    with pytest.raises(ProfileKeyError):
        sm4_key_from_secret("abcd", Sm4KeySource.HEX)
    with pytest.raises(ProfileKeyError):
        sm4_key_from_secret("zz" * 16, Sm4KeySource.HEX)


def test_sorted_kv_string() -> None:
    value = {"b": "2", "a": "1", "empty": "", "none": None, "data": {"z": 1, "y": "张"}, "list": []}
    assert sorted_kv(value) == 'a=1&b=2&data={"y":"张","z":1}'.encode()


# -- the bundled profiles --------------------------------------------------------------------------------------


def test_every_bundled_profile_parses() -> None:
    for name in BUNDLED:
        profile = bundled_profile(name)
        assert profile.name == name
        assert profile.catalogue.classify("2207").reversible
    assert bundled_profile("plain").is_plain and bundled_profile("national").is_plain
    tif = bundled_profile("tif")
    assert tif.tif is not None and tif.tif.allowance == 180 and tif.path == "/ebus/fsi/api/hsa/hgs/{infno}"
    sm = bundled_profile("sm2sm4")
    assert sm.sign is not None and sm.sign.form is SignatureForm.RAW and sm.sign.content is SignedContent.JSON
    assert sm.needs() == {"own_key", "peer_key", "sm4_key", "app_id"}
    assert bundled_profile("gbk").charset is Charset.GBK


def test_profile_errors_name_line_and_field() -> None:
    text = "name: bad\ncharset: latin-1\nsign:\n  form: pem\ntif:\n  allowance: 10\n  warn_after: 60\n"
    with pytest.raises(ConfigError) as err:
        parse_profile(text, "bad.yaml")
    lines = err.value.lines()
    assert any(line.startswith("bad.yaml:2:") and "charset" in line for line in lines)
    assert any(line.startswith("bad.yaml:4:") and "sign.form" in line for line in lines)
    with pytest.raises(ConfigError) as err:
        parse_profile("tif:\n  allowance: 10\n  warn_after: 60\n", "w.yaml")
    assert err.value.lines() == ["w.yaml:3:15: tif.warn_after: must not exceed tif.allowance"]
    with pytest.raises(ConfigError, match="unknown field"):
        parse_profile("signature: {}\n", "u.yaml")
    with pytest.raises(ConfigError, match="no bundled profile"):
        bundled_profile("atlantis")


def test_profile_paths_and_catalogue_overrides() -> None:
    p = parse_profile(
        'paths: {"9001": "/sign/{infno}", "2207": /settle}\ntransactions: {"5203": {name: q, class: money_moving}}\n',
        "p.yaml",
    )
    assert p.path_for("9001", BASE) == "/sign/9001" and p.path_for("2207", BASE) == "/settle"
    assert p.path_for("1101", BASE) == BASE
    assert not rule_for(p.catalogue.classify("5203")).resend and rule_for(p.catalogue.classify("5201")).resend


def test_codec_refuses_keys_the_profile_lacks() -> None:
    with pytest.raises(ProfileKeyError, match="needs own_key, peer_key, sm4_key"):
        ProfileCodec(bundled_profile("sm2sm4"), ProfileKeys(app_id=APP_ID))
    with pytest.raises(ProfileKeyError, match="paasid, tif_secret"):
        ProfileCodec(bundled_profile("tif"), ProfileKeys())
    keys = new_pair().gateway_keys()
    assert "s3cr3t" not in repr(keys) and "0123" not in repr(keys) and "tif_secret" in repr(keys)


# -- both directions -------------------------------------------------------------------------------------------


def test_plain_profile_sends_the_his_bytes_untouched() -> None:
    env = settle_envelope()
    codec = ProfileCodec(bundled_profile("plain"), ProfileKeys())
    out = codec.encode_request(env, base_path=BASE, now=NOW, nonce=NONCE)
    assert out.body == env.body and out.path == BASE
    assert dict(out.headers) == {"Content-Type": "application/json;charset=UTF-8"}


def test_tif_round_trip_and_platform_checks() -> None:
    pair = new_pair()
    profile = bundled_profile("tif")
    gw, plat = ProfileCodec(profile, pair.gateway_keys()), ProfileCodec(profile, pair.platform_keys(), platform=True)
    env = settle_envelope()
    out = gw.encode_request(env, base_path=BASE, now=NOW, nonce=NONCE)
    assert out.path == BASE  # the upstream's path is the base; the profile's default applies via config
    headers = {k.lower(): v for k, v in out.headers}
    assert plat.decode_request(out.path, headers, out.body, now=NOW + 179)["msgid"] == env.msgid
    with pytest.raises(Refusal, match="已过期"):
        plat.decode_request(out.path, headers, out.body, now=NOW + 181)
    with pytest.raises(Refusal, match="已过期"):
        plat.decode_request(out.path, headers, out.body, now=NOW - 181)
    with pytest.raises(Refusal, match="签名不正确"):
        plat.decode_request(out.path, headers | {"x-tif-nonce": "another-nonce"}, out.body, now=NOW)
    with pytest.raises(Refusal, match="paasid"):
        plat.decode_request(out.path, headers | {"x-tif-paasid": "someone"}, out.body, now=NOW)
    other = ProfileCodec(profile, ProfileKeys(paasid=PAASID, tif_secret="wrong"))
    with pytest.raises(Refusal, match="签名不正确"):
        other.decode_request(out.path, headers, out.body, now=NOW)


def test_tif_clock_skew_is_measured_and_warned() -> None:
    pair = new_pair()
    profile = bundled_profile("tif")
    gw, plat = ProfileCodec(profile, pair.gateway_keys()), ProfileCodec(profile, pair.platform_keys(), platform=True)
    answer = example("2207_settle_response.json")
    hdrs, body = plat.encode_response(answer, now=NOW + 90)
    got = gw.decode_response(body, {k.lower(): v for k, v in hdrs}, now=NOW)
    assert got.skew == 90 and got.skew_warning
    hdrs, body = plat.encode_response(answer, now=NOW - 5)
    got = gw.decode_response(body, {k.lower(): v for k, v in hdrs}, now=NOW)
    assert got.skew == -5 and not got.skew_warning
    # Without the header: respond_time in the platform's zone (+08:00). 20261124 16:00:00.250 +08 = 08:00:00.250Z
    doc = answer | {"respond_time": "20261124160000250"}
    import datetime as dt

    utc = dt.datetime(2026, 11, 24, 8, 0, 0, tzinfo=dt.UTC).timestamp()
    got = gw.decode_response(json.dumps(doc).encode(), {}, now=utc)
    assert got.skew == pytest.approx(0.25) and not got.skew_warning


def test_sm2sm4_round_trip_checked_by_openssl_and_gmssl(tmp_path: Path) -> None:
    pair = new_pair()
    profile = bundled_profile("sm2sm4")
    gw, plat = ProfileCodec(profile, pair.gateway_keys()), ProfileCodec(profile, pair.platform_keys(), platform=True)
    env = settle_envelope()
    out = gw.encode_request(env, base_path=BASE, now=NOW, nonce=NONCE)
    sent = json.loads(out.body)
    assert sent["enc_type"] == "SM4" and sent["app_id"] == APP_ID and sent["signtype"] == "SM2"
    assert isinstance(sent["input"], str) and "psn_no" not in out.body.decode()
    plain_input = compact_json(env.input)
    # The ciphertext is SM4-ECB/PKCS#7 by OpenSSL's account too.
    dec = openssl("enc", "-d", "-sm4-ecb", "-K", SM4_HEX, "-nosalt", data=base64.b64decode(sent["input"]))
    assert dec.returncode == 0 and dec.stdout == plain_input
    # cainfo: raw r||s over the UTF-8 JSON of input, ID 1234567812345678, as OpenSSL and gmssl verify it.
    raw = base64.b64decode(sent["cainfo"])
    assert len(raw) == 64
    pub = public_pem(pair.hospital, tmp_path, "hospital")
    assert openssl_verifies(pub, raw_to_der_signature(raw), plain_input, tmp_path)
    assert not openssl_verifies(pub, raw_to_der_signature(raw), plain_input + b" ", tmp_path)
    assert gmssl_verifies(pair.hospital.public_key().point, raw, plain_input)
    assert not gmssl_verifies(pair.hospital.public_key().point, raw, plain_input + b" ")
    # The platform side opens it; the HIS's cainfo depends only on input, so every send signs the same bytes.
    fields = plat.decode_request(out.path, {"content-type": "application/json;charset=UTF-8"}, out.body, now=NOW)
    assert fields["input"] == env.input
    again = json.loads(gw.encode_request(env, base_path=BASE, now=NOW + 50, nonce="other-nonce").body)
    assert again["input"] == sent["input"]
    # The answer: output signed by the platform and encrypted; the gateway verifies and decrypts.
    answer = example("2207_settle_response.json")
    hdrs, body = plat.encode_response(answer, now=NOW)
    wire = json.loads(body)
    assert isinstance(wire["output"], str)
    plat_pub = public_pem(pair.platform, tmp_path, "platform")
    assert openssl_verifies(
        plat_pub, raw_to_der_signature(base64.b64decode(wire["cainfo"])), compact_json(answer["output"]), tmp_path
    )
    got = gw.decode_response(body, {k.lower(): v for k, v in hdrs}, now=NOW)
    assert got.envelope.output == answer["output"] and got.envelope.ok
    # Without TIF the skew still comes from respond_time (here a recorded answer, far from NOW: a warning).
    assert got.skew is not None and got.skew_warning


def test_sm2sm4_refusals_and_untrusted_answers() -> None:
    pair = new_pair()
    profile = bundled_profile("sm2sm4")
    gw, plat = ProfileCodec(profile, pair.gateway_keys()), ProfileCodec(profile, pair.platform_keys(), platform=True)
    out = gw.encode_request(settle_envelope(), base_path=BASE, now=NOW, nonce=NONCE)
    sent = json.loads(out.body)
    ct = {"content-type": "application/json;charset=UTF-8"}

    def refused(doc: dict, match: str) -> None:
        with pytest.raises(Refusal, match=match):
            plat.decode_request(out.path, ct, compact_json(doc), now=NOW)

    refused(sent | {"input": sent["input"][:-8] + "AAAAAAA="}, "解密失败")
    refused(sent | {"input": "not base64!"}, "解密失败")
    refused(sent | {"input": {"data": {}}}, "未加密")
    refused(sent | {"enc_type": ""}, "enc_type")
    refused(sent | {"cainfo": ""}, "不能为空")
    forged = base64.b64encode(SM2PrivateKey.generate().sign(b"x", raw=True)).decode()
    refused(sent | {"cainfo": forged}, "签名验证失败")
    # Someone else's signature over the same input: still refused.
    other = ProfileCodec(
        profile,
        ProfileKeys(
            app_id=APP_ID,
            sm4_key=bytes.fromhex(SM4_HEX),
            own_key=SM2PrivateKey.generate(),
            peer_key=pair.platform.public_key(),
        ),
    )
    refused(json.loads(other.encode_request(settle_envelope(), base_path=BASE, now=NOW, nonce=NONCE).body),
            "签名验证失败")  # fmt: skip
    answer = example("2207_settle_response.json")
    _, body = plat.encode_response(answer, now=NOW)
    wire = json.loads(body)
    with pytest.raises(UntrustedAnswer, match="does not verify"):
        gw.decode_response(compact_json(wire | {"cainfo": forged}), {}, now=NOW)
    with pytest.raises(UntrustedAnswer, match="no cainfo"):
        gw.decode_response(compact_json(wire | {"cainfo": None}), {}, now=NOW)
    with pytest.raises(UntrustedAnswer, match="decrypt"):
        gw.decode_response(compact_json(wire | {"output": wire["output"][:-8] + "AAAAAAA="}), {}, now=NOW)
    with pytest.raises(UntrustedAnswer, match="not encrypted"):
        gw.decode_response(compact_json(answer), {}, now=NOW)
    # A failure answer has no output: nothing to verify or decrypt.
    failure = example("failure_response.json")
    got = gw.decode_response(compact_json(failure), {}, now=NOW)
    assert not got.envelope.ok


def test_gbk_profile_der_sorted_kv_and_refusals(tmp_path: Path) -> None:
    pair = new_pair()
    profile = bundled_profile("gbk")
    gw, plat = ProfileCodec(profile, pair.gateway_keys()), ProfileCodec(profile, pair.platform_keys(), platform=True)
    env = settle_envelope()
    out = gw.encode_request(env, base_path=BASE, now=NOW, nonce=NONCE)
    assert dict(out.headers)["Content-Type"] == "application/json;charset=GBK"
    text = out.body.decode("gbk")  # strict: the body is GBK through and through
    sent = json.loads(text)
    der = base64.b64decode(sent["cainfo"])
    assert der[0] == 0x30  # DER SEQUENCE
    pub = public_pem(pair.hospital, tmp_path, "hospital")
    assert openssl_verifies(pub, der, sorted_kv(env.input), tmp_path)
    headers = {k.lower(): v for k, v in out.headers}
    assert plat.decode_request(out.path, headers, out.body, now=NOW)["opter_name"] == env.fields["opter_name"]
    with pytest.raises(Refusal, match="字符集"):
        plat.decode_request(out.path, headers | {"content-type": "application/json"}, out.body, now=NOW)
    with pytest.raises(Refusal, match="GBK"):
        plat.decode_request(out.path, headers, out.body + b"\xff\xff", now=NOW)
    # A character GBK does not have is refused before sending, with a clear reason.
    rare = decode_request(json.dumps(example("1101_query_request.json") | {"opter_name": "𠀀先生"}).encode())
    with pytest.raises(RequestNotEncodable, match="GBK"):
        gw.encode_request(rare, base_path=BASE, now=NOW, nonce=NONCE)
    # Answers in GB18030 come back as UTF-8 for the HIS.
    hdrs, body = plat.encode_response(example("2207_settle_response.json"), now=NOW)
    got = gw.decode_response(body, {k.lower(): v for k, v in hdrs}, now=NOW)
    assert got.envelope.body.decode("utf-8") and got.envelope.ok
    with pytest.raises(UntrustedAnswer, match="JSON"):
        gw.decode_response(b'{"infcode":0,"err_msg":"\xff\xfe"}', {"content-type": "application/json;charset=GBK"},
                           now=NOW)  # fmt: skip


def test_hashlib_is_sha256_of_concatenation() -> None:
    """The TIF rule stated once more, so a refactor that reorders the parts fails here too."""
    assert tif_signature("a", "b", "c") == hashlib.sha256(b"abca").hexdigest()


def test_gateway_accepts_answers_signed_by_openssl(tmp_path: Path) -> None:
    """The platform's signature made by another implementation (OpenSSL, DER, ID 1234567812345678) over the
    sorted k=v form of output: our verification accepts it, and rejects it over anything else."""
    pair = new_pair()
    gw = ProfileCodec(bundled_profile("gbk"), pair.gateway_keys())
    answer = example("2207_settle_response.json")
    key_file = tmp_path / "platform.key.pem"
    key_file.write_bytes(pair.platform.to_pem())
    signed = openssl(
        "pkeyutl", "-sign", "-inkey", str(key_file), "-rawin", "-digest", "sm3", "-pkeyopt", "distid:1234567812345678",
        data=sorted_kv(answer["output"]),
    )  # fmt: skip
    assert signed.returncode == 0, signed.stderr
    doc = answer | {"cainfo": base64.b64encode(signed.stdout).decode(), "signtype": "SM2"}
    got = gw.decode_response(compact_json(doc), {}, now=NOW)
    assert got.envelope.output == answer["output"]
    tampered = doc | {"output": {"setlinfo": answer["output"]["setlinfo"] | {"psn_cash_pay": 0.0}}}
    with pytest.raises(UntrustedAnswer):
        gw.decode_response(compact_json(tampered), {}, now=NOW)


def test_plain_profile_reads_a_gbk_answer_by_its_content_type() -> None:
    codec = ProfileCodec(bundled_profile("plain"), ProfileKeys())
    answer = example("failure_response.json")
    body = json.dumps(answer, ensure_ascii=False).encode("gbk")
    got = codec.decode_response(body, {"content-type": "application/json; charset=GBK"}, now=NOW)
    assert got.envelope.err_msg == answer["err_msg"] and json.loads(got.envelope.body.decode("utf-8"))
    with pytest.raises(UntrustedAnswer, match="not UTF-8 JSON"):
        codec.decode_response(body, {}, now=NOW)  # undeclared: UTF-8, and GBK bytes are not


ENCRYPT_THEN_SIGN = """\
name: encrypt-then-sign
sign: {form: der, over: ciphertext}
encrypt: {key: sm3_of_secret}
"""


def test_profile_that_signs_the_ciphertext(tmp_path: Path) -> None:
    profile = parse_profile(ENCRYPT_THEN_SIGN, "ets.yaml")
    assert profile.sign is not None and profile.sign.over_ciphertext
    pair = new_pair()
    app_key = sm4_key_from_secret("the app secret", Sm4KeySource.SM3_OF_SECRET)
    gw_keys = ProfileKeys(app_id=APP_ID, sm4_key=app_key, own_key=pair.hospital, peer_key=pair.platform.public_key())
    pf_keys = ProfileKeys(app_id=APP_ID, sm4_key=app_key, own_key=pair.platform, peer_key=pair.hospital.public_key())
    gw, plat = ProfileCodec(profile, gw_keys), ProfileCodec(profile, pf_keys, platform=True)
    env = settle_envelope()
    out = gw.encode_request(env, base_path=BASE, now=NOW, nonce=NONCE)
    sent = json.loads(out.body)
    # OpenSSL: the DER cainfo covers the Base64 text of the encrypted input, not the plaintext.
    pub = public_pem(pair.hospital, tmp_path, "hospital")
    cainfo = base64.b64decode(sent["cainfo"])
    assert openssl_verifies(pub, cainfo, sent["input"].encode(), tmp_path)
    assert not openssl_verifies(pub, cainfo, compact_json(env.input), tmp_path)
    assert plat.decode_request(out.path, {"content-type": "application/json"}, out.body, now=NOW)["input"] == env.input
    hdrs, body = plat.encode_response(example("2207_settle_response.json"), now=NOW)
    wire = json.loads(body)
    plat_pub = public_pem(pair.platform, tmp_path, "platform")
    assert openssl_verifies(plat_pub, base64.b64decode(wire["cainfo"]), wire["output"].encode(), tmp_path)
    got = gw.decode_response(body, dict(hdrs), now=NOW)
    assert got.envelope.output == example("2207_settle_response.json")["output"]
    with pytest.raises(ConfigError, match="ciphertext needs an encrypt section"):
        parse_profile("sign: {over: ciphertext}\n", "bad.yaml")
