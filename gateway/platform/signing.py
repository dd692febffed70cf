"""Applying a province profile to the wire, both ways, as pure functions of (profile, keys, bytes, now, nonce).

Hospital side (the gateway): `encode_request` turns the HIS's plain envelope into what the province expects
(path, TIF headers, `cainfo`, SM4-encrypted `input`, charset) and `decode_response` undoes the platform's side
(charset, SM4 `output`, signature check, clock skew). Platform side (the simulator): `decode_request` enforces
the profile on what arrives and `encode_response` signs and encrypts answers. Keeping both directions in one
module keeps them symmetric; tests check the crypto against independent implementations (OpenSSL, gmssl).

Time and randomness are parameters: TIF timestamp and nonce are fresh per send, so the relay passes them in;
`cainfo` depends only on `input` and is the same for every send of one message.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.crypto import (
    CryptoError,
    DecryptionError,
    InvalidSignature,
)
from gateway.platform.envelope import RequestEnvelope, ResponseEnvelope
from gateway.platform.envelope import decode_response as decode_plain_response
from gateway.platform.profile import Charset, Profile, SignedContent
from gateway.platform.signing_pieces import (
    DEFAULT_SKEW_WARNING,
    NONCE_FORM,
    RESPOND_TIME_FORM,
    TIF_NONCE,
    TIF_PAASID,
    TIF_SIGNATURE,
    TIF_TIMESTAMP,
    UNIX_SECONDS_FORM,
    ProfileKeyError,
    ProfileKeys,
    Refusal,
    RequestNotEncodable,
    UntrustedAnswer,
    charset_from,
    compact_json,
    content_type_for,
    encode_text,
    sign_payload,
    sm4_key_from_secret,
    sm4_open,
    sm4_seal,
    sorted_kv,
    tif_headers,
    tif_signature,
    verify_payload,
)

# -- hospital side ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundRequest:
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class InboundResponse:
    envelope: ResponseEnvelope
    #: platform clock minus ours, in seconds, where the answer tells its time; None where it does not
    skew: float | None
    #: the skew is beyond the profile's warning threshold
    skew_warning: bool = False


class ProfileCodec:
    """One profile with its keys, for the side that holds them (the hospital's unless `platform`).
    Construction checks the keys fit."""

    def __init__(self, profile: Profile, keys: ProfileKeys, *, platform: bool = False) -> None:
        missing = keys.missing(profile, platform=platform)
        if missing:
            raise ProfileKeyError(f"profile {profile.name!r} needs {', '.join(missing)}")
        if keys.sm4_key is not None and len(keys.sm4_key) != 16:
            raise ProfileKeyError("SM4 keys are 16 bytes")
        self.profile = profile
        self.keys = keys

    def __repr__(self) -> str:
        return f"ProfileCodec({self.profile.name}, {self.keys!r})"

    # The gateway, sending.

    def encode_request(self, envelope: RequestEnvelope, *, base_path: str, now: float, nonce: str) -> OutboundRequest:
        p, k = self.profile, self.keys
        path = p.path_for(envelope.infno, base_path)
        headers: list[tuple[str, str]] = [("Content-Type", content_type_for(p.charset))]
        if p.tif is not None:
            assert k.paasid is not None and k.tif_secret is not None
            headers += tif_headers(k.paasid, k.tif_secret, now, nonce)
        if p.sign is None and p.encrypt is None and p.charset is Charset.UTF8:
            return OutboundRequest(path, tuple(headers), envelope.body)  # the HIS's bytes, untouched
        fields = dict(envelope.fields)
        plain_input = compact_json(fields["input"])
        sealed = None
        if p.encrypt is not None:
            assert k.sm4_key is not None
            sealed = sm4_seal(k.sm4_key, plain_input)
        if p.sign is not None:
            assert k.own_key is not None
            data = self._signed_data(fields["input"], plain_input, sealed)
            fields["cainfo"] = sign_payload(k.own_key, data, p.sign.form, p.sign.uid)
            fields["signtype"] = p.sign.signtype
        if sealed is not None:
            assert p.encrypt is not None
            fields["input"] = sealed
            fields["enc_type"] = p.encrypt.enc_type
            fields["app_id"] = k.app_id
        text = compact_json(fields).decode("utf-8")
        try:
            body = encode_text(text, p.charset)
        except UnicodeEncodeError as exc:
            raise RequestNotEncodable(
                f"request not sent: {text[exc.start : exc.end]!r} has no {p.charset.header} encoding "
                f"(profile {p.name}); the platform takes {p.charset.header} only"
            ) from None
        return OutboundRequest(path, tuple(headers), body)

    def _signed_data(self, value: Any, plain: bytes, sealed: str | None) -> bytes:
        """What a cainfo covers: the Base64 ciphertext where the profile signs after encrypting, else the
        plaintext as JSON (the exact bytes that were encrypted, if they were) or as a sorted k=v string."""
        sign = self.profile.sign
        assert sign is not None
        if sign.over_ciphertext and sealed is not None:
            return sealed.encode("ascii")
        return plain if sign.content is SignedContent.JSON else sorted_kv(value)

    def decode_response(self, body: bytes, headers: Mapping[str, str], *, now: float) -> InboundResponse:
        """`headers` with lower-case names. Raises UntrustedAnswer when the answer is not what the profile says."""
        p = self.profile
        charset = charset_from(headers.get("content-type"), p.charset)
        if p.sign is None and p.encrypt is None and charset == "utf-8":
            try:
                envelope = decode_plain_response(body)
            except ValueError as exc:
                raise UntrustedAnswer(str(exc)) from None
            return self._with_skew(envelope, headers, now)
        try:
            fields = json.loads(body.decode(charset))
        except (ValueError, LookupError, RecursionError) as exc:
            # The charset is the platform's word: a codec that is no text encoding raises LookupError, and some
            # (idna, undefined) a bare UnicodeError. json raises ValueError past 4300 digits, RecursionError past
            # the nesting the interpreter allows.
            raise UntrustedAnswer(f"platform answer is not {charset} JSON: {exc}") from None
        if not isinstance(fields, dict):
            raise UntrustedAnswer("platform answer is not a JSON object")
        try:
            self._open_output(fields)
            envelope = decode_plain_response(compact_json(fields))
        except UnicodeEncodeError:
            # a \u escape of an unpaired surrogate: no UTF-8 to sign, verify or pass on
            raise UntrustedAnswer("platform answer holds an unpaired surrogate, which is not a character") from None
        except ValueError as exc:
            raise UntrustedAnswer(str(exc)) from None
        return self._with_skew(envelope, headers, now)

    def _open_output(self, fields: dict[str, Any]) -> None:
        """Decrypt `output` in place and check the platform's signature over it, as the profile says."""
        p, k = self.profile, self.keys
        output = fields.get("output")
        plain: bytes | None = None
        sealed: str | None = None
        if p.encrypt is not None and p.encrypt.output and output is not None:
            if not isinstance(output, str):
                raise UntrustedAnswer(f"output is not encrypted as profile {p.name} says")
            assert k.sm4_key is not None
            sealed = output
            try:
                plain = sm4_open(k.sm4_key, output)
                output = json.loads(plain.decode("utf-8"))
            except (DecryptionError, ValueError, RecursionError) as exc:
                raise UntrustedAnswer(f"output does not decrypt with the profile's SM4 key: {exc}") from None
            fields["output"] = output
        if p.sign is None or not p.sign.verify_response or output is None:
            return
        assert k.peer_key is not None
        cainfo = fields.get("cainfo")
        if not isinstance(cainfo, str) or not cainfo:
            raise UntrustedAnswer("the answer carries output but no cainfo signature")
        data = self._signed_data(output, plain if plain is not None else compact_json(output), sealed)
        try:
            verify_payload(k.peer_key, cainfo, data, p.sign.form, p.sign.uid)
        except (InvalidSignature, CryptoError):
            raise UntrustedAnswer("the platform's signature (cainfo) over output does not verify") from None

    def _with_skew(self, envelope: ResponseEnvelope, headers: Mapping[str, str], now: float) -> InboundResponse:
        # Every profile: a 前置机 whose clock drifts sends wrong inf_time/msgid times and, under TIF, stale
        # timestamps the platform refuses; the platform's respond_time shows it before that happens.
        theirs = _platform_time(envelope, headers, self.profile)
        if theirs is None:
            return InboundResponse(envelope, None)
        skew = theirs - now
        warn_after = self.profile.tif.warn_after if self.profile.tif is not None else DEFAULT_SKEW_WARNING
        return InboundResponse(envelope, skew, abs(skew) > warn_after)

    # The platform (simulator), receiving and answering.

    def decode_request(self, path: str, headers: Mapping[str, str], body: bytes, *, now: float) -> dict[str, Any]:
        """The plain envelope fields of a request that passes every check of the profile, else Refusal with
        the platform's err_msg. Nonce replay is the caller's to track (it needs memory)."""
        p = self.profile
        if p.tif is not None:
            self._check_tif(headers, now)
        declared = charset_from(headers.get("content-type"), Charset.UTF8)
        expected = "utf-8" if p.charset is Charset.UTF8 else "gb18030"
        if declared != expected:
            raise Refusal(f"报文字符集不正确，应为{p.charset.header}")
        try:
            fields = json.loads(body.decode(expected))
        except (ValueError, RecursionError):  # not the charset, not JSON, past json's digit or nesting limits
            raise Refusal(f"报文不是合法的{p.charset.header}编码JSON") from None
        if not isinstance(fields, dict):
            raise Refusal("报文格式错误，无法解析")
        infno = str(fields.get("infno", ""))
        if infno in p.paths and path != p.path_for(infno, path):
            raise Refusal(f"交易[{infno}]的请求路径不正确")
        sealed = fields.get("input") if p.encrypt is not None else None
        plain_input = self._open_input(fields) if p.encrypt is not None else None
        if p.sign is not None:
            try:
                self._check_cainfo(fields, plain_input, sealed if isinstance(sealed, str) else None)
            except UnicodeEncodeError:  # an unpaired surrogate escape: nothing a signature can cover
                raise Refusal("报文含有非法字符，签名验证失败") from None
        return fields

    def _open_input(self, fields: dict[str, Any]) -> bytes:
        """Decrypt `input` in place; the decrypted bytes are what a JSON signature covers."""
        p, k = self.profile, self.keys
        assert p.encrypt is not None and k.sm4_key is not None
        if fields.get("enc_type") != p.encrypt.enc_type or fields.get("app_id") != k.app_id:
            raise Refusal("加密类型[enc_type]或应用ID[app_id]不正确")
        if not isinstance(fields.get("input"), str):
            raise Refusal("输入参数[input]未加密")
        try:
            plain = sm4_open(k.sm4_key, fields["input"])
            fields["input"] = json.loads(plain.decode("utf-8"))
        except (DecryptionError, ValueError, RecursionError):
            raise Refusal("报文解密失败") from None
        return plain

    def _check_cainfo(self, fields: dict[str, Any], plain_input: bytes | None, sealed: str | None) -> None:
        p, k = self.profile, self.keys
        assert p.sign is not None and k.peer_key is not None
        cainfo = fields.get("cainfo")
        if not isinstance(cainfo, str) or not cainfo or fields.get("signtype") != p.sign.signtype:
            raise Refusal("报文签名[cainfo]或签名类型[signtype]不能为空")
        value = fields.get("input")
        data = self._signed_data(value, plain_input if plain_input is not None else compact_json(value), sealed)
        try:
            verify_payload(k.peer_key, cainfo, data, p.sign.form, p.sign.uid)
        except (InvalidSignature, CryptoError):
            raise Refusal("报文签名验证失败") from None

    def _check_tif(self, headers: Mapping[str, str], now: float) -> None:
        assert self.profile.tif is not None
        k = self.keys
        paasid, stamp = headers.get(TIF_PAASID), headers.get(TIF_TIMESTAMP, "")
        nonce, signature = headers.get(TIF_NONCE, ""), headers.get(TIF_SIGNATURE, "")
        if not paasid or paasid != k.paasid:
            raise Refusal("网关校验失败：x-tif-paasid 不正确")
        if not UNIX_SECONDS_FORM.match(stamp):
            raise Refusal("网关校验失败：x-tif-timestamp 格式不正确")
        if abs(now - int(stamp)) > self.profile.tif.allowance:
            raise Refusal("网关校验失败：x-tif-timestamp 已过期，请校准时间")
        if not NONCE_FORM.match(nonce):
            raise Refusal("网关校验失败：x-tif-nonce 格式不正确")
        assert k.tif_secret is not None
        if not hmac.compare_digest(signature.encode(), tif_signature(stamp, k.tif_secret, nonce).encode()):
            raise Refusal("网关校验失败：x-tif-signature 签名不正确")

    def encode_response(self, fields: dict[str, Any], *, now: float) -> tuple[list[tuple[str, str]], bytes]:
        """The answer as the profile says the platform sends it: (headers, body)."""
        p, k = self.profile, self.keys
        out = dict(fields)
        output = out.get("output")
        if output is not None:
            plain = compact_json(output)
            sealed = None
            if p.encrypt is not None and p.encrypt.output:
                assert k.sm4_key is not None
                sealed = out["output"] = sm4_seal(k.sm4_key, plain)
            if p.sign is not None and p.sign.verify_response:
                assert k.own_key is not None
                out["cainfo"] = sign_payload(
                    k.own_key, self._signed_data(output, plain, sealed), p.sign.form, p.sign.uid
                )
                out["signtype"] = p.sign.signtype
        headers = [("x-tif-timestamp", str(int(now)))] if p.tif is not None else []
        # The platform's own charset: GB18030 covers every character its data can hold.
        charset = Charset.UTF8 if p.charset is Charset.UTF8 else Charset.GB18030
        return [("Content-Type", content_type_for(charset)), *headers], compact_json(out).decode().encode(charset.value)


def _platform_time(envelope: ResponseEnvelope, headers: Mapping[str, str], profile: Profile) -> float | None:
    """The platform's clock at answering: its TIF timestamp header if sent (unambiguous Unix seconds), else
    respond_time read in the platform's zone."""
    stamp = headers.get(TIF_TIMESTAMP)
    if stamp and UNIX_SECONDS_FORM.match(stamp):
        return float(stamp)
    raw = envelope.fields.get("respond_time")
    if not isinstance(raw, str) or not RESPOND_TIME_FORM.match(raw):
        return None
    try:
        # Fields by position: strptime costs ~20 µs and takes a lock, on every answer's path.
        local = datetime(
            int(raw[0:4]),
            int(raw[4:6]),
            int(raw[6:8]),
            int(raw[8:10]),
            int(raw[10:12]),
            int(raw[12:14]),
            tzinfo=profile.utc_offset,
        )
    except ValueError:
        return None
    return local.timestamp() + int(raw[14:]) / 1000


# what importers of this module use from the pieces, besides the codec
__all__ = [
    "TIF_NONCE",
    "InboundResponse",
    "OutboundRequest",
    "ProfileCodec",
    "ProfileKeyError",
    "ProfileKeys",
    "Refusal",
    "RequestNotEncodable",
    "UntrustedAnswer",
    "compact_json",
    "sm4_key_from_secret",
    "sorted_kv",
]
