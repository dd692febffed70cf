"""SM2 keys: signatures with a user ID (DER or raw r||s), encryption (GM/T 0009 DER or raw C1C3C2).

The digest e = SM3(Z_A || M) is computed here, so any user ID works and a caller can also sign a digest
it computed itself. Decryption always checks C3 (Tongsuo verifies it and refuses on mismatch).
"""

from __future__ import annotations

from typing import NoReturn

from asn1crypto.algos import DSASignature
from asn1crypto.core import Integer, OctetString, Sequence

from gateway.crypto import _backend, curve
from gateway.crypto.errors import CryptoError, DecryptionError, InvalidSignature
from gateway.crypto.symmetric import sm3

DEFAULT_SM2_ID = b"1234567812345678"
_CURVE_BYTES = b"".join(v.to_bytes(32, "big") for v in (curve.A, curve.B, curve.GX, curve.GY))


class _Sm2Cipher(Sequence):
    """GM/T 0009 SM2Cipher: SEQUENCE { x, y INTEGER, hash OCTET STRING (C3), ciphertext OCTET STRING (C2) }."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("x", Integer),
        ("y", Integer),
        ("hash", OctetString),
        ("ciphertext", OctetString),
    ]


def z_value(point: bytes, uid: bytes = DEFAULT_SM2_ID) -> bytes:
    """Z_A = SM3(ENTL_A || ID_A || a || b || x_G || y_G || x_A || y_A)."""
    if len(uid) * 8 > 0xFFFF:
        raise CryptoError("SM2 user ID too long")
    return sm3((len(uid) * 8).to_bytes(2, "big") + uid + _CURVE_BYTES + point[1:])


def der_to_raw_signature(der: bytes) -> bytes:
    """DER -> r || s, 32 bytes each. asn1crypto's to_p1363 pads both to the longer of the two instead: when r and
    s are both under 2^248 (one signature in 65,536) it gave 62 bytes, which a raw-form peer refuses."""
    try:
        sig = DSASignature.load(der, strict=True)
        r, s = sig["r"].native, sig["s"].native
    except (ValueError, TypeError) as exc:
        raise InvalidSignature("malformed DER signature") from exc
    if not (0 < r < curve.N and 0 < s < curve.N):
        raise InvalidSignature("SM2 signature values out of range")
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def raw_to_der_signature(raw: bytes) -> bytes:
    if len(raw) != 64:
        raise InvalidSignature(f"a raw SM2 signature is 64 bytes (r||s), got {len(raw)}")
    return DSASignature.from_p1363(raw).dump()


def der_to_raw_ciphertext(der: bytes) -> bytes:
    """GM/T 0009 DER -> 04 || x || y || C3 || C2."""
    try:
        c = _Sm2Cipher.load(der, strict=True)
        x, y = c["x"].native, c["y"].native
        c3, c2 = c["hash"].native, c["ciphertext"].native
    except (ValueError, TypeError) as exc:
        raise DecryptionError("malformed SM2 ciphertext") from exc
    if not (0 <= x < curve.P and 0 <= y < curve.P) or len(c3) != 32:
        raise DecryptionError("malformed SM2 ciphertext")
    return curve.encode((x, y)) + c3 + c2


def raw_to_der_ciphertext(raw: bytes) -> bytes:
    """04 || x || y || C3 || C2 -> GM/T 0009 DER. Libraries that drop the 04 must have it put back by the caller
    (a profile setting): without it, a ciphertext whose x starts with 0x04 could not be told apart."""
    if raw[:1] != b"\x04" or len(raw) < 97:
        raise DecryptionError("raw SM2 ciphertext must be 04 || x || y || C3 || C2")
    x, y = int.from_bytes(raw[1:33], "big"), int.from_bytes(raw[33:65], "big")
    return _Sm2Cipher({"x": x, "y": y, "hash": raw[65:97], "ciphertext": raw[97:]}).dump()


class SM2PublicKey:
    __slots__ = ("_handle", "point")

    def __init__(self, point: bytes) -> None:
        self.point = point
        self._handle: _backend.Handle | None = None

    @classmethod
    def from_point(cls, point: bytes) -> SM2PublicKey:
        try:
            x, y = curve.decode(point)
        except ValueError as exc:
            raise CryptoError(f"bad SM2 public key: {exc}") from None
        return cls(curve.encode((x, y)))

    def _h(self) -> _backend.Handle:
        if self._handle is None:
            x, y = curve.decode(self.point)
            self._handle = _backend.public_handle(x, y)
        return self._handle

    def z_value(self, uid: bytes = DEFAULT_SM2_ID) -> bytes:
        return z_value(self.point, uid)

    def digest(self, data: bytes, uid: bytes = DEFAULT_SM2_ID) -> bytes:
        """e = SM3(Z_A || M): what an SM2 signature actually signs."""
        return sm3(self.z_value(uid) + data)

    def verify(self, signature: bytes, data: bytes, uid: bytes = DEFAULT_SM2_ID, *, raw: bool = False) -> None:
        self.verify_digest(signature, self.digest(data, uid), raw=raw)

    def verify_digest(self, signature: bytes, e: bytes, *, raw: bool = False) -> None:
        der = raw_to_der_signature(signature) if raw else signature
        if not _backend.verify_digest(self._h(), der, e):
            raise InvalidSignature("SM2 signature does not verify")

    def encrypt(self, data: bytes, *, raw: bool = False) -> bytes:
        if not data:
            raise CryptoError("SM2 cannot encrypt an empty message")
        der = _backend.encrypt(self._h(), data)
        return der_to_raw_ciphertext(der) if raw else der

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SM2PublicKey) and other.point == self.point

    def __hash__(self) -> int:
        return hash(self.point)

    def __repr__(self) -> str:
        return f"SM2PublicKey({self.point[1:9].hex()}…)"


class SM2PrivateKey:
    """An SM2 private key. The scalar never appears in repr, str, logs or exceptions."""

    __slots__ = ("_d", "_handle", "_public")

    def __init__(self, d: int, handle: _backend.Handle | None = None) -> None:
        if not 1 <= d < curve.N - 1:
            raise CryptoError("SM2 private key out of range")
        self._d = d
        self._handle = handle or _backend.private_handle(d)
        self._public = SM2PublicKey(curve.encode(_backend.public_point(self._handle)))

    @classmethod
    def generate(cls) -> SM2PrivateKey:
        d, handle = _backend.generate()
        return cls(d, handle)

    @classmethod
    def from_pem(cls, data: bytes, password: bytes | None = None) -> SM2PrivateKey:
        from gateway.crypto.keyfile import load_private_key_pem

        return cls(load_private_key_pem(data, password))

    def to_pem(self, password: bytes | None = None) -> bytes:
        from gateway.crypto.keyfile import dump_private_key_pem

        return dump_private_key_pem(self._d, self._public.point, password)

    def public_key(self) -> SM2PublicKey:
        return self._public

    def sign(self, data: bytes, uid: bytes = DEFAULT_SM2_ID, *, raw: bool = False) -> bytes:
        return self.sign_digest(self._public.digest(data, uid), raw=raw)

    def sign_digest(self, e: bytes, *, raw: bool = False) -> bytes:
        der = _backend.sign_digest(self._handle, e)
        return der_to_raw_signature(der) if raw else der

    def decrypt(self, ciphertext: bytes, *, raw: bool = False) -> bytes:
        der = raw_to_der_ciphertext(ciphertext) if raw else ciphertext
        plain = _backend.decrypt(self._handle, der)
        if plain is None:
            raise DecryptionError("SM2 decryption failed (malformed ciphertext or C3 mismatch)")
        return plain

    def scalar_for_key_exchange(self) -> int:
        """The private scalar, for SM2 key agreement only (GB/T 32918.3 needs it in the arithmetic)."""
        return self._d

    def __repr__(self) -> str:
        return f"SM2PrivateKey(<private>, public={self._public!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("SM2 private keys are not picklable")
