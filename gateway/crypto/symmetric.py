"""SM3, HMAC-SM3 and SM4 (ECB, CBC, GCM) from `cryptography`, which runs them at OpenSSL speed."""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from gateway.crypto.errors import CryptoError, DecryptionError

SM4_BLOCK = 16
GCM_TAG = 16


def random_bytes(n: int) -> bytes:
    """Bytes from the operating system's CSPRNG."""
    return os.urandom(n)


def sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


class Sm3Hash:
    """Incremental SM3 whose running state can be copied (a TLCP handshake hash is read mid-way)."""

    def __init__(self, _ctx: hashes.Hash | None = None) -> None:
        self._ctx = _ctx or hashes.Hash(hashes.SM3())

    def update(self, data: bytes) -> None:
        self._ctx.update(data)

    def copy(self) -> Sm3Hash:
        return Sm3Hash(self._ctx.copy())

    def digest(self) -> bytes:
        return self._ctx.copy().finalize()


def hmac_sm3(key: bytes, data: bytes) -> bytes:
    h = hmac.HMAC(key, hashes.SM3())
    h.update(data)
    return h.finalize()


class HmacSm3:
    """HMAC-SM3 keyed once; copy() gives a fresh context per record without re-keying."""

    def __init__(self, key: bytes, _ctx: hmac.HMAC | None = None) -> None:
        self._ctx = _ctx or hmac.HMAC(key, hashes.SM3())

    def copy(self) -> HmacSm3:
        return HmacSm3(b"", self._ctx.copy())

    def update(self, data: bytes) -> None:
        self._ctx.update(data)

    def digest(self) -> bytes:
        return self._ctx.copy().finalize()

    def __repr__(self) -> str:
        return "HmacSm3(<key hidden>)"


def _check_key(key: bytes) -> None:
    if len(key) != 16:
        raise CryptoError(f"SM4 keys are 16 bytes, got {len(key)}")


def _blocks(data: bytes) -> None:
    if len(data) % SM4_BLOCK:
        raise CryptoError(f"SM4 without padding needs whole 16-byte blocks, got {len(data)} bytes")


def sm4_ecb_encrypt(key: bytes, data: bytes) -> bytes:
    _check_key(key)
    _blocks(data)
    enc = Cipher(algorithms.SM4(key), modes.ECB()).encryptor()  # noqa: S305 - the platforms' message format
    return enc.update(data) + enc.finalize()


def sm4_ecb_decrypt(key: bytes, data: bytes) -> bytes:
    _check_key(key)
    _blocks(data)
    dec = Cipher(algorithms.SM4(key), modes.ECB()).decryptor()  # noqa: S305 - the platforms' message format
    return dec.update(data) + dec.finalize()


def sm4_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    _check_key(key)
    _blocks(data)
    enc = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def sm4_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    _check_key(key)
    _blocks(data)
    dec = Cipher(algorithms.SM4(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


def pkcs7_pad(data: bytes, block: int = SM4_BLOCK) -> bytes:
    n = block - len(data) % block
    return data + bytes([n]) * n


def pkcs7_unpad(data: bytes, block: int = SM4_BLOCK) -> bytes:
    if not data or len(data) % block:
        raise DecryptionError("padded data is not a whole number of blocks")
    n = data[-1]
    if not 1 <= n <= block or data[-n:] != bytes([n]) * n:
        raise DecryptionError("bad PKCS#7 padding")
    return data[:-n]


def sm4_gcm_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """ciphertext || 16-byte tag."""
    _check_key(key)
    enc = Cipher(algorithms.SM4(key), modes.GCM(nonce)).encryptor()
    enc.authenticate_additional_data(aad)
    ct = enc.update(plaintext) + enc.finalize()
    return ct + enc.tag


def sm4_gcm_decrypt(key: bytes, nonce: bytes, data: bytes, aad: bytes) -> bytes:
    _check_key(key)
    if len(data) < GCM_TAG:
        raise DecryptionError("SM4-GCM data shorter than its tag")
    dec = Cipher(algorithms.SM4(key), modes.GCM(nonce, data[-GCM_TAG:])).decryptor()
    dec.authenticate_additional_data(aad)
    try:
        return dec.update(data[:-GCM_TAG]) + dec.finalize()
    except InvalidTag:
        raise DecryptionError("SM4-GCM tag mismatch") from None
