"""SM2 private key files: PKCS#8 PEM, plain or password-protected, and the permissions they must have.

Encrypted PKCS#8 from the GmSSL tools uses PBES2 with PBKDF2-HMAC-SM3 and SM4-CBC, which neither OpenSSL 3 nor
Tongsuo can read; it is decoded here (asn1crypto for the structures, `cryptography` for PBKDF2 and SM4), and
keys we write use the same scheme so GmSSL reads them too. PBES2 with HMAC-SHA256 and AES-CBC (what
OpenSSL writes) is read as well.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

from asn1crypto import algos as asn1_algos
from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from asn1crypto.core import OctetString
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from gateway.crypto import curve
from gateway.crypto.errors import DecryptionError, KeyFileError
from gateway.crypto.symmetric import pkcs7_pad, pkcs7_unpad, random_bytes

SM2_CURVE_OID = "1.2.156.10197.1.301"
HMAC_SM3_OID = "1.2.156.10197.1.401.2"
SM4_CBC_OID = "1.2.156.10197.1.104.2"
_PRFS: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    HMAC_SM3_OID: hashes.SM3,
    "sha256": hashes.SHA256,
    "sha1": hashes.SHA1,
    "sha512": hashes.SHA512,
    "1.2.840.113549.2.9": hashes.SHA256,
    "1.2.840.113549.2.11": hashes.SHA512,
}
_CIPHERS = {
    SM4_CBC_OID: (algorithms.SM4, 16),
    "aes128_cbc": (algorithms.AES, 16),
    "aes256_cbc": (algorithms.AES, 32),
    "2.16.840.1.101.3.4.1.2": (algorithms.AES, 16),
    "2.16.840.1.101.3.4.1.42": (algorithms.AES, 32),
}
ITERATIONS = 65536

# asn1crypto knows the NIST curves; SM2's is registered through its public hook so keys round-trip.
asn1_keys.NamedCurve.register("sm2p256v1", SM2_CURVE_OID, 32)


def _decrypt_pbes2(der: bytes, password: bytes) -> bytes:
    info = asn1_keys.EncryptedPrivateKeyInfo.load(der)
    alg = info["encryption_algorithm"]
    if alg["algorithm"].native != "pbes2":
        raise KeyFileError(f"unsupported key encryption {alg['algorithm'].native} (PBES2 expected)")
    params = alg["parameters"]
    kdf = params["key_derivation_func"]
    if kdf["algorithm"].native != "pbkdf2":
        raise KeyFileError(f"unsupported key derivation {kdf['algorithm'].native}")
    kp = kdf["parameters"]
    prf_oid = kp["prf"]["algorithm"]
    prf = _PRFS.get(prf_oid.native) or _PRFS.get(prf_oid.dotted)
    enc_oid = params["encryption_scheme"]["algorithm"]
    cipher = _CIPHERS.get(enc_oid.native) or _CIPHERS.get(enc_oid.dotted)
    if prf is None or cipher is None:
        raise KeyFileError(f"unsupported key encryption (prf {prf_oid.dotted}, cipher {enc_oid.dotted})")
    algo, key_len = cipher
    iv = params["encryption_scheme"]["parameters"].native
    key = PBKDF2HMAC(prf(), key_len, kp["salt"].native, kp["iteration_count"].native).derive(password)
    dec = Cipher(algo(key), modes.CBC(iv)).decryptor()
    try:
        return pkcs7_unpad(dec.update(info["encrypted_data"].native) + dec.finalize())
    except DecryptionError:
        raise KeyFileError("wrong password for the key file (or the file is damaged)") from None


def _scalar_from_pkcs8(der: bytes) -> int:
    info = asn1_keys.PrivateKeyInfo.load(der)
    algorithm = info["private_key_algorithm"]
    oid = algorithm["algorithm"].dotted
    if oid == SM2_CURVE_OID:  # some tools name the key algorithm id-sm2 directly
        named: str | None = SM2_CURVE_OID
    elif algorithm["algorithm"].native == "ec":
        named = algorithm["parameters"].chosen.dotted if algorithm["parameters"].name == "named" else None
    else:
        raise KeyFileError(f"not an SM2 key (algorithm {oid})")
    ec_key = asn1_keys.ECPrivateKey.load(info["private_key"].contents)
    if named is None and ec_key["parameters"].native is not None:
        named = ec_key["parameters"].chosen.dotted
    if named != SM2_CURVE_OID:
        raise KeyFileError(f"not an SM2 key (curve {named})")
    return _scalar(ec_key)


def _scalar(ec_key: asn1_keys.ECPrivateKey) -> int:
    d = ec_key["private_key"].native
    if not isinstance(d, int) or not 1 <= d < curve.N - 1:
        raise KeyFileError("SM2 private key out of range")
    return d


def load_private_key_pem(data: bytes, password: bytes | None = None) -> int:
    """The private scalar from a PEM key (PKCS#8 plain or encrypted, or SEC1 'EC PRIVATE KEY')."""
    try:
        kind, _headers, der = asn1_pem.unarmor(data)
    except ValueError as exc:
        raise KeyFileError("not a PEM private key") from exc
    try:
        if kind == "ENCRYPTED PRIVATE KEY":
            if password is None:
                raise KeyFileError("the key file is encrypted: a password is needed")
            return _scalar_from_pkcs8(_decrypt_pbes2(der, password))
        if password is not None:
            raise KeyFileError("a password was given but the key file is not encrypted")
        if kind == "PRIVATE KEY":
            return _scalar_from_pkcs8(der)
        if kind == "EC PRIVATE KEY":
            ec_key = asn1_keys.ECPrivateKey.load(der)
            if ec_key["parameters"].native is not None and ec_key["parameters"].chosen.dotted != SM2_CURVE_OID:
                raise KeyFileError("not an SM2 key")
            return _scalar(ec_key)
    except (ValueError, TypeError, KeyError) as exc:
        raise KeyFileError(f"malformed key file ({exc.__class__.__name__})") from None
    raise KeyFileError(f"PEM block {kind!r} is not a private key")


def dump_private_key_pem(d: int, public_point: bytes, password: bytes | None = None) -> bytes:
    ec_key = asn1_keys.ECPrivateKey({"version": "ecPrivkeyVer1", "private_key": d, "public_key": public_point})
    info = asn1_keys.PrivateKeyInfo(
        {
            "version": 0,
            "private_key_algorithm": {"algorithm": "ec", "parameters": ("named", SM2_CURVE_OID)},
            "private_key": ec_key,
        }
    )
    der = info.dump()
    if password is None:
        return asn1_pem.armor("PRIVATE KEY", der)
    salt, iv = random_bytes(16), random_bytes(16)
    key = PBKDF2HMAC(hashes.SM3(), 16, salt, ITERATIONS).derive(password)
    enc = Cipher(algorithms.SM4(key), modes.CBC(iv)).encryptor()
    body = enc.update(pkcs7_pad(der)) + enc.finalize()
    encrypted = asn1_keys.EncryptedPrivateKeyInfo(
        {
            "encryption_algorithm": {
                "algorithm": "pbes2",
                "parameters": {
                    "key_derivation_func": {
                        "algorithm": "pbkdf2",
                        "parameters": {
                            "salt": asn1_algos.Pbkdf2Salt(name="specified", value=salt),
                            "iteration_count": ITERATIONS,
                            "key_length": 16,
                            "prf": {"algorithm": HMAC_SM3_OID, "parameters": None},
                        },
                    },
                    "encryption_scheme": {"algorithm": SM4_CBC_OID, "parameters": OctetString(iv)},
                },
            },
            "encrypted_data": body,
        }
    )
    return asn1_pem.armor("ENCRYPTED PRIVATE KEY", encrypted.dump())


def check_file_mode(path: Path, forbidden: int, problem: str) -> int:
    """The file's mode, or KeyFileError when it is not a regular file or has any of the `forbidden` bits;
    `problem` is the message, with {mode} in it, after the file name."""
    try:
        st = path.stat()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError(f"{path}: not a regular file")
    mode = stat.S_IMODE(st.st_mode)
    if mode & forbidden:
        raise KeyFileError(f"{path}: " + problem.replace("{mode}", f"{mode:04o}"))  # paths may hold braces
    return mode


def check_key_file_permissions(path: Path) -> None:
    """Refuse a key file that anyone but its owner can read or change."""
    check_file_mode(
        path,
        0o077,
        "private key with mode {mode} is readable or writable by group or others; "
        f"fix with: chmod 600 {path} (owned by the user ybgate runs as)",
    )


def read_key_file(path: Path, password: bytes | None = None) -> int:
    check_key_file_permissions(path)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    try:
        return load_private_key_pem(data, password)
    except KeyFileError as err:
        raise KeyFileError(f"{path}: {err.message}") from None
