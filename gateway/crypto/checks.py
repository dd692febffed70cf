"""Findings for `ybgate certs check`: one line per problem with the configured TLCP identity."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from gateway.crypto.certs import ENC, SIGN, Certificate, verify_chain
from gateway.crypto.errors import CryptoError
from gateway.crypto.keyfile import read_key_file
from gateway.crypto.sm2 import SM2PrivateKey

EXPIRY_WARNING_DAYS = 30
SERVER_AUTH = "1.3.6.1.5.5.7.3.1"
CLIENT_AUTH = "1.3.6.1.5.5.7.3.2"
ANY_EKU = "2.5.29.37.0"
_EKU_NAMES = {SERVER_AUTH: "serverAuth", CLIENT_AUTH: "clientAuth", ANY_EKU: "anyExtendedKeyUsage"}


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" | "warning" | "ok"
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7} {self.file}: {self.message}"


def _load_certs(path: Path, findings: list[Finding]) -> list[Certificate]:
    try:
        certs = Certificate.load_pem_chain(path.read_bytes())
    except OSError as exc:
        findings.append(Finding("error", str(path), f"cannot read ({exc.strerror})"))
        return []
    except CryptoError as exc:
        findings.append(Finding("error", str(path), exc.message))
        return []
    if not certs:
        findings.append(Finding("error", str(path), "no certificate in the file"))
    return certs


def check_pair(
    role: str,
    *,
    cert_path: Path,
    key_path: Path,
    roots: list[Certificate],
    now: dt.datetime,
    password: bytes | None = None,
    serves_callbacks: bool = False,
) -> list[Finding]:
    findings: list[Finding] = []
    chain = _load_certs(cert_path, findings)
    if chain:
        leaf, extra = chain[0], chain[1:]
        try:
            verify_chain(leaf, extra, roots, now, role)
        except CryptoError as exc:
            findings.append(Finding("error", str(cert_path), exc.message))
        else:
            days = leaf.days_left(now)
            severity = "warning" if days <= EXPIRY_WARNING_DAYS else "ok"
            findings.append(
                Finding(
                    severity,
                    str(cert_path),
                    f"{role} certificate {leaf.subject} valid, {days:.0f} days to expiry ({leaf.not_after:%Y-%m-%d})",
                )
            )
        findings += check_roles(role, cert_path, leaf, serves_callbacks=serves_callbacks)
    try:
        key = SM2PrivateKey(read_key_file(key_path, password))
    except CryptoError as exc:
        findings.append(Finding("error", str(key_path), exc.message))
        return findings
    if chain and key.public_key() != chain[0].public_key:
        findings.append(Finding("error", str(key_path), f"does not match the {role} certificate {cert_path}"))
    elif chain:
        findings.append(Finding("ok", str(key_path), f"{role} key matches its certificate, mode ok"))
    return findings


def check_roles(role: str, cert_path: Path, cert: Certificate, *, serves_callbacks: bool) -> list[Finding]:
    """The identity is a TLCP client towards the upstreams and, with the callback listener on, a TLCP server to
    the platform. A certificate without extendedKeyUsage may be both; one with it must name each role it plays:
    peers refuse a clientAuth-only certificate as a server's, and a serverAuth-only one as a client's."""
    eku = cert.extended_key_usage
    if eku is None or ANY_EKU in eku:
        return []
    names = ", ".join(sorted(_EKU_NAMES.get(oid, oid) for oid in eku)) or "nothing"
    where = str(cert_path)
    findings = []
    if CLIENT_AUTH in eku:
        findings.append(Finding("ok", where, f"{role} certificate usable as TLCP client (upstreams)"))
    else:
        findings.append(
            Finding(
                "error",
                where,
                f"{role} certificate extendedKeyUsage ({names}) lacks clientAuth: the platform refuses it as "
                "the hospital's TLCP client certificate (upstreams)",
            )
        )
    if SERVER_AUTH in eku:
        findings.append(Finding("ok", where, f"{role} certificate usable as TLCP server (callback listener)"))
    elif serves_callbacks:
        findings.append(
            Finding(
                "error",
                where,
                f"{role} certificate extendedKeyUsage ({names}) lacks serverAuth: the platform refuses it as the "
                "callback listener's server certificate",
            )
        )
    else:
        findings.append(
            Finding(
                "ok",
                where,
                f"{role} certificate lacks serverAuth: not usable for the callback listener (which is off)",
            )
        )
    return findings


def check_identity(
    *,
    sign_cert: Path,
    sign_key: Path,
    enc_cert: Path,
    enc_key: Path,
    ca_bundle: Path,
    password: bytes | None = None,
    now: dt.datetime | None = None,
    serves_callbacks: bool = False,
) -> list[Finding]:
    now = now or dt.datetime.now(dt.UTC)
    findings: list[Finding] = []
    roots = _load_certs(ca_bundle, findings)
    for root in roots:
        if not root.is_ca:
            findings.append(Finding("error", str(ca_bundle), f"{root.subject} is not a CA certificate"))
    for role, cert_path, key_path in ((SIGN, sign_cert, sign_key), (ENC, enc_cert, enc_key)):
        findings += check_pair(
            role,
            cert_path=cert_path,
            key_path=key_path,
            roots=roots,
            now=now,
            password=password,
            serves_callbacks=serves_callbacks,
        )
    return findings
