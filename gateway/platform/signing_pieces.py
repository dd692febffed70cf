"""The pieces a province profile is built from, each with its known-answer tests (tests/platform): TIF headers,
canonical JSON for signing, SM2 signatures over it, SM4 sealing of `input`/`output`, charsets; and the errors the
profile codec (signing.py) raises."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from gateway.crypto import (
    CryptoError,
    DecryptionError,
    InvalidSignature,
    SM2PrivateKey,
    SM2PublicKey,
    pkcs7_pad,
    pkcs7_unpad,
    sm3,
    sm4_ecb_decrypt,
    sm4_ecb_encrypt,
)
from gateway.errors import GatewayError, UpstreamError
from gateway.platform.profile import Charset, Profile, SignatureForm, SignedContent, Sm4KeySource

TIF_PAASID = "x-tif-paasid"
TIF_TIMESTAMP = "x-tif-timestamp"
TIF_NONCE = "x-tif-nonce"
TIF_SIGNATURE = "x-tif-signature"
NONCE_FORM = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
RESPOND_TIME_FORM = re.compile(r"^[0-9]{17}$")
# ASCII digits only: str.isdigit() also takes "²" and other digits int() refuses.
UNIX_SECONDS_FORM = re.compile(r"^[0-9]{1,12}$")

#: clock skew (seconds) worth a warning where the profile sets no TIF allowance of its own
DEFAULT_SKEW_WARNING = 60.0


class ProfileKeyError(GatewayError):
    """The key material does not fit the profile (missing, wrong length): a configuration problem."""

    kind = "profile_keys"


class RequestNotEncodable(UpstreamError):
    """The envelope cannot be put on the wire as the profile says (e.g. a character GBK lacks). Nothing was
    sent, so the relay may report "not sent"."""

    kind = "profile_encode"


class UntrustedAnswer(GatewayError):
    """An answer arrived but is not what the profile promises (bad signature, undecryptable, wrong charset):
    the request left and we cannot believe what came back, so its outcome is unknown."""

    kind = "untrusted_answer"


class Refusal(GatewayError):
    """The platform side refuses a request for a profile reason; `message` is the Chinese err_msg it sends."""

    kind = "profile_refused"


@dataclass(frozen=True, repr=False)
class ProfileKeys:
    """Key material for one side of a profile. `own_key` signs what this side sends, `peer_key` verifies what
    it receives: the hospital's key and the platform's public key on the gateway, the other way round on
    the platform (simulator)."""

    paasid: str | None = None
    tif_secret: str | None = None
    app_id: str | None = None
    sm4_key: bytes | None = None
    own_key: SM2PrivateKey | None = None
    peer_key: SM2PublicKey | None = None

    def __repr__(self) -> str:
        names = ("paasid", "tif_secret", "app_id", "sm4_key", "own_key", "peer_key")
        held = [name for name in names if getattr(self, name)]
        return f"ProfileKeys(<{', '.join(held) or 'none'}>)"

    def missing(self, profile: Profile, *, platform: bool = False) -> list[str]:
        return sorted(name for name in profile.needs(platform=platform) if not getattr(self, name))


def sm4_key_from_secret(secret: str, source: Sm4KeySource) -> bytes:
    """The 16-byte SM4 key from the text of a secret file, as the profile derives it."""
    text = secret.strip()
    if source is Sm4KeySource.HEX:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            raise ProfileKeyError("the SM4 key file must hold 32 hex digits") from None
        if len(key) != 16:
            raise ProfileKeyError(f"the SM4 key file must hold 32 hex digits (16 bytes), got {len(key)} bytes")
        return key
    if not text:
        raise ProfileKeyError("the app secret file is empty")
    return sm3(text.encode("utf-8"))[:16]


# -- the pieces, each with its known-answer tests --------------------------------------------------------------


def tif_signature(timestamp: str, secret: str, nonce: str) -> str:
    """x-tif-signature: lowercase hex SHA-256 of timestamp + secret + nonce + timestamp."""
    return hashlib.sha256((timestamp + secret + nonce + timestamp).encode("utf-8")).hexdigest()


def tif_headers(paasid: str, secret: str, now: float, nonce: str) -> list[tuple[str, str]]:
    timestamp = str(int(now))
    return [
        (TIF_PAASID, paasid),
        (TIF_TIMESTAMP, timestamp),
        (TIF_NONCE, nonce),
        (TIF_SIGNATURE, tif_signature(timestamp, secret, nonce)),
    ]


def compact_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """The UTF-8 JSON a signature covers: no spaces, Chinese as itself (not \\u escapes)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys).encode("utf-8")


def sorted_kv(value: Any) -> bytes:
    """k=v&k=v over the non-empty fields, keys sorted; nested values as compact JSON with sorted keys."""
    if not isinstance(value, dict):
        return compact_json(value, sort_keys=True)
    parts = []
    for key in sorted(value):
        v = value[key]
        if v in (None, "", [], {}):
            continue
        text = v if isinstance(v, str) else compact_json(v, sort_keys=True).decode("utf-8")
        parts.append(f"{key}={text}")
    return "&".join(parts).encode("utf-8")


def signed_bytes(value: Any, content: SignedContent) -> bytes:
    return compact_json(value) if content is SignedContent.JSON else sorted_kv(value)


def sign_payload(key: SM2PrivateKey, data: bytes, form: SignatureForm, uid: bytes) -> str:
    return base64.b64encode(key.sign(data, uid, raw=form is SignatureForm.RAW)).decode("ascii")


def verify_payload(key: SM2PublicKey, cainfo: str, data: bytes, form: SignatureForm, uid: bytes) -> None:
    try:
        signature = base64.b64decode(cainfo, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidSignature("cainfo is not Base64") from None
    key.verify(signature, data, uid, raw=form is SignatureForm.RAW)


def sm4_seal(key: bytes, plain: bytes) -> str:
    """SM4-ECB with PKCS#7, Base64 — the provinces' message encryption (ECB is theirs, not our choice)."""
    return base64.b64encode(sm4_ecb_encrypt(key, pkcs7_pad(plain))).decode("ascii")


def sm4_open(key: bytes, sealed: str) -> bytes:
    try:
        raw = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError("not Base64") from None
    try:
        return pkcs7_unpad(sm4_ecb_decrypt(key, raw))
    except CryptoError as exc:
        raise DecryptionError(exc.message) from None


def encode_text(text: str, charset: Charset) -> bytes:
    return text.encode(charset.value)


def charset_from(content_type: str | None, fallback: Charset) -> str:
    for part in (content_type or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset":
            cs = value.strip().strip('"').lower()
            if cs in ("utf-8", "utf8"):
                return "utf-8"
            if cs in ("gbk", "gb2312", "gb18030", "cp936"):
                return "gb18030"  # superset: reads GBK and GB2312 without loss
            return cs
    return "gb18030" if fallback is not Charset.UTF8 else "utf-8"


def content_type_for(charset: Charset) -> str:
    return f"application/json;charset={charset.header}"
