"""Crypto errors. Messages name files and reasons, never key material."""

from __future__ import annotations

from gateway.errors import GatewayError


class CryptoError(GatewayError):
    kind = "crypto"


class InvalidSignature(CryptoError):
    kind = "invalid_signature"


class DecryptionError(CryptoError):
    kind = "decryption_failed"


class KeyFileError(CryptoError):
    """A key file that cannot be used: unreadable, wrong password, not SM2, or too open."""

    kind = "key_file"


class CertificateError(CryptoError):
    kind = "certificate"
