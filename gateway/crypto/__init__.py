"""National crypto: SM2, SM3, SM4, HMAC-SM3, SM2 certificates and key files.

One interface for the rest of ybgate; the implementations behind it are `cryptography` (SM3, HMAC-SM3, SM4)
and Tongsuo via tongsuopy (SM2), chosen by measurement (see _backend.py).
"""

from gateway.crypto.certs import Certificate, check_role, verify_chain
from gateway.crypto.errors import CertificateError, CryptoError, DecryptionError, InvalidSignature, KeyFileError
from gateway.crypto.kex import sm2_key_exchange
from gateway.crypto.keyfile import check_key_file_permissions, read_key_file
from gateway.crypto.sm2 import DEFAULT_SM2_ID, SM2PrivateKey, SM2PublicKey, z_value
from gateway.crypto.symmetric import (
    HmacSm3,
    Sm3Hash,
    hmac_sm3,
    pkcs7_pad,
    pkcs7_unpad,
    random_bytes,
    sm3,
    sm4_cbc_decrypt,
    sm4_cbc_encrypt,
    sm4_ecb_decrypt,
    sm4_ecb_encrypt,
    sm4_gcm_decrypt,
    sm4_gcm_encrypt,
)

__all__ = [
    "DEFAULT_SM2_ID",
    "Certificate",
    "CertificateError",
    "CryptoError",
    "DecryptionError",
    "HmacSm3",
    "InvalidSignature",
    "KeyFileError",
    "SM2PrivateKey",
    "SM2PublicKey",
    "Sm3Hash",
    "check_key_file_permissions",
    "check_role",
    "hmac_sm3",
    "pkcs7_pad",
    "pkcs7_unpad",
    "random_bytes",
    "read_key_file",
    "sm2_key_exchange",
    "sm3",
    "sm4_cbc_decrypt",
    "sm4_cbc_encrypt",
    "sm4_ecb_decrypt",
    "sm4_ecb_encrypt",
    "sm4_gcm_decrypt",
    "sm4_gcm_encrypt",
    "verify_chain",
    "z_value",
]
