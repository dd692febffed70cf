"""Malformed certificates from a peer become CertificateError (a TLCP bad_certificate alert), never a stray
exception from the X.509 library."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.crypto import Certificate
from gateway.crypto.errors import CertificateError

PKI = Path(__file__).resolve().parents[1] / "data" / "crypto" / "pki"


def test_a_version_the_library_refuses_is_a_certificate_error() -> None:
    der = Certificate.from_pem((PKI / "ca.crt.pem").read_bytes()).der
    v3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2 (v3)
    assert v3 in der
    # cryptography raises InvalidVersion (not a ValueError) for this: found by the TLCP fuzz tests.
    with pytest.raises(CertificateError, match=r"not a valid X\.509 certificate"):
        Certificate.from_der(der.replace(v3, bytes.fromhex("a003020105"), 1))
