"""`ybgate certs gen-test-pki`: a throwaway SM2 PKI for the demo and the tests — never for production.

Root CA, server sign + enc, client sign + enc, with the key usages TLCP expects. Certificates are built
with asn1crypto and their TBS signed with our SM2 (ID 1234567812345678, as OpenSSL verifies with
`-vfyopt distid:1234567812345678`).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import keys as asn1_keys
from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509

from gateway.crypto.certs import SM2_CURVE, SM2_WITH_SM3
from gateway.crypto.keyfile import SM2_CURVE_OID  # noqa: F401 - registers the SM2 curve with asn1crypto
from gateway.crypto.sm2 import SM2PrivateKey
from gateway.crypto.symmetric import random_bytes, sm3

MARK = "ybgate TEST PKI - NOT FOR PRODUCTION"
SIGN_USAGE = {"digital_signature"}
ENC_USAGE = {"key_encipherment", "data_encipherment", "key_agreement"}


@dataclass(frozen=True)
class Issued:
    cert_pem: bytes
    key: SM2PrivateKey


def _name(cn: str, ou: str) -> asn1_x509.Name:
    return asn1_x509.Name.build(
        {"country_name": "CN", "organization_name": MARK, "organizational_unit_name": ou, "common_name": cn}
    )


def _spki(key: SM2PrivateKey) -> asn1_keys.PublicKeyInfo:
    return asn1_keys.PublicKeyInfo(
        {
            "algorithm": {"algorithm": "ec", "parameters": ("named", SM2_CURVE)},
            "public_key": key.public_key().point,
        }
    )


def issue(
    subject: asn1_x509.Name,
    key: SM2PrivateKey,
    issuer: asn1_x509.Name,
    issuer_key: SM2PrivateKey,
    *,
    usage: set[str],
    ca: bool = False,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    not_before: dt.datetime | None = None,
    days: int = 3650,
) -> bytes:
    start = (not_before or dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)).replace(microsecond=0)
    ski = sm3(key.public_key().point)[:20]
    extensions = [
        {"extn_id": "basic_constraints", "critical": True, "extn_value": {"ca": ca}},
        {"extn_id": "key_usage", "critical": True, "extn_value": set(usage)},
        {"extn_id": "key_identifier", "critical": False, "extn_value": ski},
        {
            "extn_id": "authority_key_identifier",
            "critical": False,
            "extn_value": {"key_identifier": sm3(issuer_key.public_key().point)[:20]},
        },
    ]
    if dns or ips:
        names = [asn1_x509.GeneralName(name="dns_name", value=d) for d in dns]
        names += [asn1_x509.GeneralName(name="ip_address", value=i) for i in ips]
        extensions.append({"extn_id": "subject_alt_name", "critical": False, "extn_value": names})
    tbs = asn1_x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": int.from_bytes(random_bytes(12), "big") | 1,
            "signature": {"algorithm": SM2_WITH_SM3},
            "issuer": issuer,
            "validity": {
                "not_before": asn1_x509.Time(name="utc_time", value=start),
                "not_after": asn1_x509.Time(name="utc_time", value=start + dt.timedelta(days=days)),
            },
            "subject": subject,
            "subject_public_key_info": _spki(key),
            "extensions": extensions,
        }
    )
    cert = asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": {"algorithm": SM2_WITH_SM3},
            "signature_value": issuer_key.sign(tbs.dump()),
        }
    )
    return asn1_pem.armor("CERTIFICATE", cert.dump())


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def generate_test_pki(
    directory: Path,
    *,
    server_names: tuple[str, ...] = ("localhost",),
    server_ips: tuple[str, ...] = ("127.0.0.1",),
    client_days: int = 3650,
    write_ca_key: bool = False,
) -> dict[str, Path]:
    """Write ca.crt.pem, {server,client}_{sign,enc}.{crt,key}.pem (keys 0600) and bundles; returns the paths.
    `client_days` sets the client (gateway) certificates' validity, for expiry tests."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = SM2PrivateKey.generate()
    ca_name = _name(f"{MARK} root CA", "root")
    files: dict[str, Path] = {}
    ca_pem = issue(ca_name, ca_key, ca_name, ca_key, usage={"key_cert_sign", "crl_sign"}, ca=True)
    _write(directory / "ca.crt.pem", ca_pem, 0o644)
    files["ca"] = directory / "ca.crt.pem"
    if write_ca_key:  # tests that issue more certificates later (rotation)
        _write(directory / "ca.key.pem", ca_key.to_pem(), 0o600)
        files["ca.key"] = directory / "ca.key.pem"
    for role in ("server", "client"):
        files |= _write_pair(
            directory, role, ca_name, ca_key, server_names=server_names, server_ips=server_ips, days=client_days
        )
    (directory / "README").write_text(f"{MARK}\nThrowaway keys and certificates for tests and the demo.\n")
    return files


def _write_pair(
    directory: Path,
    role: str,
    ca_name: asn1_x509.Name,
    ca_key: SM2PrivateKey,
    *,
    server_names: tuple[str, ...],
    server_ips: tuple[str, ...],
    days: int,
) -> dict[str, Path]:
    """Fresh keys and sign + enc certificates for `role` ("server" or "client"), each file replaced whole
    (written beside and renamed) so a daemon reloading its identity meanwhile never reads half a file."""
    cn = server_names[0] if role == "server" else "ybgate-test-client"
    files: dict[str, Path] = {}
    for kind, usage in (("sign", SIGN_USAGE), ("enc", ENC_USAGE)):
        key = SM2PrivateKey.generate()
        pem = issue(
            _name(cn, role),
            key,
            ca_name,
            ca_key,
            usage=usage,
            dns=server_names if role == "server" else (),
            ips=server_ips if role == "server" else (),
            days=days if role == "client" else 3650,
        )
        stem = f"{role}_{kind}"
        for suffix, data, mode in (("crt", pem, 0o644), ("key", key.to_pem(), 0o600)):
            final = directory / f"{stem}.{suffix}.pem"
            _write(final.with_name(final.name + ".new"), data, mode)
            os.replace(final.with_name(final.name + ".new"), final)
            files[f"{stem}.{suffix}"] = final
    return files


class KeptCAError(Exception):
    """The test PKI directory has no CA key to issue from (it was made without --keep-ca-key)."""


def issue_next(
    directory: Path,
    role: str,
    *,
    server_names: tuple[str, ...] = ("localhost",),
    server_ips: tuple[str, ...] = ("127.0.0.1",),
    days: int = 3650,
) -> dict[str, Path]:
    """`ybgate certs issue`: the next sign + enc pair for `role` from the test CA kept in `directory`,
    replacing that role's files there: a rotation drill (SIGHUP then picks them up)."""
    if role not in ("server", "client"):
        raise ValueError(f"role must be server or client, not {role!r}")
    ca_key_path = directory / "ca.key.pem"
    if not ca_key_path.exists():
        raise KeptCAError(f"{ca_key_path} does not exist: make the test PKI with gen-test-pki --keep-ca-key")
    ca_key = SM2PrivateKey.from_pem(ca_key_path.read_bytes())
    _, _, der = asn1_pem.unarmor((directory / "ca.crt.pem").read_bytes())
    ca_name = asn1_x509.Certificate.load(der).subject
    return _write_pair(directory, role, ca_name, ca_key, server_names=server_names, server_ips=server_ips, days=days)
