"""SM2 signing, verification, encryption and decryption in Tongsuo (BabaSSL), through tongsuopy's compiled
binding.

Chosen by measurement against the other candidates (gmssl-fast, gmssl-pyx, pure-Python gmssl): Tongsuo
signs and verifies at ~0.95x `openssl speed sm2` on the same machine. tongsuopy's public API signs only
with the default ID and has no SM2 encryption, so this module calls the EVP_PKEY functions its binding
exposes: the digest e = SM3(Z_A || M) is computed by the caller (any user ID, and both TLCP
CertificateVerify forms), and Tongsuo does the curve work. This file is the only place that knows.
"""

from __future__ import annotations

from typing import Any

from tongsuopy.backends.tongsuo import backend as _tongsuo
from tongsuopy.crypto.asymciphers import ec as _ec

_lib: Any = _tongsuo._lib
_ffi: Any = _tongsuo._ffi


class Handle:
    """An EVP_PKEY marked as SM2 (so sign/encrypt use SM2, not ECDSA/ECIES on the SM2 curve)."""

    __slots__ = ("_key", "evp")

    def __init__(self, key: Any) -> None:
        self._key = key  # keeps the EVP_PKEY alive
        self.evp = key._evp_pkey
        if _lib.EVP_PKEY_set_alias_type(self.evp, _lib.EVP_PKEY_SM2) != 1:
            _tongsuo._consume_errors()
            raise ValueError("not an SM2 key")

    def __repr__(self) -> str:
        return "Handle(<SM2 key>)"


def private_handle(d: int) -> Handle:
    return Handle(_ec.derive_private_key(d, _ec.SM2()))


def public_handle(x: int, y: int) -> Handle:
    return Handle(_ec.EllipticCurvePublicNumbers(x, y, _ec.SM2()).public_key())


def public_point(handle: Handle) -> tuple[int, int]:
    numbers = handle._key.public_key().public_numbers()
    return numbers.x, numbers.y


def generate() -> tuple[int, Handle]:
    key = _ec.generate_private_key(_ec.SM2())
    return key.private_numbers().private_value, Handle(key)


def _ctx(handle: Handle) -> Any:
    ctx = _lib.EVP_PKEY_CTX_new(handle.evp, _ffi.NULL)
    if ctx == _ffi.NULL:
        raise MemoryError("EVP_PKEY_CTX_new failed")
    return _ffi.gc(ctx, _lib.EVP_PKEY_CTX_free)


def sign_digest(handle: Handle, e: bytes) -> bytes:
    """DER SEQUENCE{r, s} over the 32-byte digest e, with a fresh random k from Tongsuo's CSPRNG."""
    ctx = _ctx(handle)
    if _lib.EVP_PKEY_sign_init(ctx) != 1:
        _tongsuo._consume_errors()
        raise ValueError("this key cannot sign")
    size = _ffi.new("size_t *", 80)
    buf = _ffi.new("unsigned char[]", 80)
    if _lib.EVP_PKEY_sign(ctx, buf, size, e, len(e)) != 1:
        _tongsuo._consume_errors()
        raise ValueError("SM2 signing failed")
    return bytes(_ffi.buffer(buf, size[0]))


def verify_digest(handle: Handle, signature_der: bytes, e: bytes) -> bool:
    ctx = _ctx(handle)
    if _lib.EVP_PKEY_verify_init(ctx) != 1:
        _tongsuo._consume_errors()
        return False
    ok = _lib.EVP_PKEY_verify(ctx, signature_der, len(signature_der), e, len(e)) == 1
    if not ok:
        _tongsuo._consume_errors()
    return ok


def encrypt(handle: Handle, plaintext: bytes) -> bytes:
    """GM/T 0009 DER ciphertext (C1 point, C3 = SM3 hash, C2)."""
    ctx = _ctx(handle)
    if _lib.EVP_PKEY_encrypt_init(ctx) != 1:
        _tongsuo._consume_errors()
        raise ValueError("this key cannot encrypt")
    size = _ffi.new("size_t *")
    if _lib.EVP_PKEY_encrypt(ctx, _ffi.NULL, size, plaintext, len(plaintext)) != 1:
        _tongsuo._consume_errors()
        raise ValueError("SM2 encryption failed")
    buf = _ffi.new("unsigned char[]", size[0])
    if _lib.EVP_PKEY_encrypt(ctx, buf, size, plaintext, len(plaintext)) != 1:
        _tongsuo._consume_errors()
        raise ValueError("SM2 encryption failed")
    return bytes(_ffi.buffer(buf, size[0]))


def decrypt(handle: Handle, ciphertext_der: bytes) -> bytes | None:
    """The plaintext, or None when the ciphertext is malformed or its C3 hash does not match."""
    ctx = _ctx(handle)
    if _lib.EVP_PKEY_decrypt_init(ctx) != 1:
        _tongsuo._consume_errors()
        return None
    size = _ffi.new("size_t *", len(ciphertext_der))
    buf = _ffi.new("unsigned char[]", max(1, len(ciphertext_der)))
    if _lib.EVP_PKEY_decrypt(ctx, buf, size, ciphertext_der, len(ciphertext_der)) != 1:
        _tongsuo._consume_errors()
        return None
    return bytes(_ffi.buffer(buf, size[0]))
