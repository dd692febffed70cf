"""Key material for profile tests: both sides' ProfileKeys, and the same keys as files a config can name."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gateway.crypto import SM2PrivateKey
from gateway.platform.signing import ProfileKeys

SM4_HEX = "0123456789abcdeffedcba9876543210"
TIF_SECRET = "s3cr3t-TIF-密钥"
PAASID = "ybgate_test_paas"
APP_ID = "YBGATE-APP-0001"
DISTID = "distid:1234567812345678"


def openssl(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["openssl", *args], input=data, capture_output=True, timeout=30, check=False)


@dataclass
class Pair:
    hospital: SM2PrivateKey
    platform: SM2PrivateKey

    def gateway_keys(self) -> ProfileKeys:
        return _keys(self.hospital, self.platform)

    def platform_keys(self) -> ProfileKeys:
        return _keys(self.platform, self.hospital)


def _keys(own: SM2PrivateKey, peer: SM2PrivateKey) -> ProfileKeys:
    """The shared secrets are the same on both sides; each side signs with its key and verifies the other's."""
    return ProfileKeys(
        paasid=PAASID,
        tif_secret=TIF_SECRET,
        app_id=APP_ID,
        sm4_key=bytes.fromhex(SM4_HEX),
        own_key=own,
        peer_key=peer.public_key(),
    )


def new_pair() -> Pair:
    return Pair(SM2PrivateKey.generate(), SM2PrivateKey.generate())


def write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)
    return path


def public_pem(key: SM2PrivateKey, directory: Path, stem: str) -> Path:
    """The public half as a PEM OpenSSL reads (derived by OpenSSL itself from the private key file)."""
    priv = write_private(directory / f"{stem}.key.pem", key.to_pem())
    pub = directory / f"{stem}.pub.pem"
    out = openssl("pkey", "-in", str(priv), "-pubout", "-out", str(pub))
    assert out.returncode == 0, out.stderr
    return pub


def openssl_verifies(pub: Path, signature_der: bytes, data: bytes, tmp: Path) -> bool:
    sig = tmp / "sig.der"
    sig.write_bytes(signature_der)
    out = openssl(
        "pkeyutl", "-verify", "-pubin", "-inkey", str(pub), "-rawin", "-digest", "sm3",
        "-pkeyopt", DISTID, "-sigfile", str(sig), data=data,
    )  # fmt: skip
    return out.returncode == 0 and b"Verified Successfully" in out.stdout


def gmssl_verifies(point: bytes, raw_signature: bytes, data: bytes) -> bool:
    """gmssl (independent pure-Python SM2, ID 1234567812345678) as a second verifier of r||s signatures."""
    from gmssl import sm2 as gm_sm2

    verifier = gm_sm2.CryptSM2(private_key="", public_key=point[1:].hex())
    # Its constructor lstrip("04")s the key, eating the leading 0/4 digits of some x: set the key as it is.
    verifier.public_key = point[1:].hex()
    return bool(verifier.verify_with_sm3(raw_signature.hex(), data))
