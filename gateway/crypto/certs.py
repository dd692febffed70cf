"""SM2 X.509 certificates: parsing, chain verification to configured CAs, and TLCP role checks.

`cryptography` parses SM2-signed certificates (names, dates, extensions) but cannot load an SM2 public key,
so the SubjectPublicKeyInfo point is read with asn1crypto and signatures are checked with our SM2.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass

from asn1crypto import pem as asn1_pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from gateway.crypto.errors import CertificateError, CryptoError, InvalidSignature
from gateway.crypto.sm2 import SM2PublicKey

SM2_WITH_SM3 = "1.2.156.10197.1.501"
SM2_CURVE = "1.2.156.10197.1.301"
_USAGE_NAMES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)


@dataclass(frozen=True, eq=False)
class Certificate:
    der: bytes
    subject: str
    issuer: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    public_key: SM2PublicKey
    key_usage: frozenset[str]
    is_ca: bool
    tbs: bytes
    signature: bytes
    signature_algorithm: str

    @classmethod
    def from_der(cls, der: bytes) -> Certificate:
        try:
            c = x509.load_der_x509_certificate(der)
            spki = asn1_x509.Certificate.load(der)["tbs_certificate"]["subject_public_key_info"]
            algorithm = spki["algorithm"]
            curve_oid = algorithm["parameters"].chosen.dotted if algorithm["parameters"].name == "named" else None
            point = spki["public_key"].native
        except (ValueError, TypeError, KeyError, x509.InvalidVersion) as exc:
            # InvalidVersion is not a ValueError: a peer's certificate claiming version 1 was found by fuzzing.
            raise CertificateError(f"not a valid X.509 certificate ({exc.__class__.__name__})") from None
        try:
            return cls._build(der, c, point, algorithm["algorithm"].dotted, curve_oid)
        except ValueError as exc:
            # cryptography parses names and extensions lazily: a malformed one surfaces only here.
            raise CertificateError(f"not a valid X.509 certificate ({exc.__class__.__name__})") from None

    @classmethod
    def _build(
        cls, der: bytes, c: x509.Certificate, point: bytes, algorithm: str, curve_oid: str | None
    ) -> Certificate:
        if SM2_CURVE not in (algorithm, curve_oid):
            raise CertificateError(f"not an SM2 certificate: {c.subject.rfc4514_string()}")
        try:
            public_key = SM2PublicKey.from_point(point)
        except CryptoError as exc:
            raise CertificateError(f"{c.subject.rfc4514_string()}: {exc.message}") from None
        usage: frozenset[str] = frozenset()
        is_ca = False
        with contextlib.suppress(x509.ExtensionNotFound):
            ku = c.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value
            usage = frozenset(n for n in _USAGE_NAMES if getattr(ku, n))
        with contextlib.suppress(x509.ExtensionNotFound):
            is_ca = c.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        return cls(
            der=der,
            subject=c.subject.rfc4514_string(),
            issuer=c.issuer.rfc4514_string(),
            serial=c.serial_number,
            not_before=c.not_valid_before_utc,
            not_after=c.not_valid_after_utc,
            public_key=public_key,
            key_usage=usage,
            is_ca=is_ca,
            tbs=c.tbs_certificate_bytes,
            signature=c.signature,
            signature_algorithm=c.signature_algorithm_oid.dotted_string,
        )

    @classmethod
    def from_pem(cls, data: bytes) -> Certificate:
        chain = cls.load_pem_chain(data)
        if len(chain) != 1:
            raise CertificateError(f"expected one certificate, found {len(chain)}")
        return chain[0]

    @staticmethod
    def load_pem_chain(data: bytes) -> list[Certificate]:
        out = []
        try:
            for kind, _headers, der in asn1_pem.unarmor(data, multiple=True):
                if kind == "CERTIFICATE":
                    out.append(Certificate.from_der(der))
        except ValueError as exc:
            raise CertificateError(f"not PEM certificates ({exc})") from None
        return out

    @property
    def subject_der(self) -> bytes:
        """The subject Name as DER: what a CertificateRequest lists for a CA."""
        return x509.load_der_x509_certificate(self.der).subject.public_bytes()

    @property
    def extended_key_usage(self) -> frozenset[str] | None:
        """Dotted OIDs of the extendedKeyUsage extension; None when there is none (no restriction)."""
        try:
            eku = x509.load_der_x509_certificate(self.der).extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            return None
        return frozenset(oid.dotted_string for oid in eku.value)

    def verify_signed_by(self, issuer: Certificate) -> None:
        if self.signature_algorithm != SM2_WITH_SM3:
            raise InvalidSignature(f"{self.subject}: signed with {self.signature_algorithm}, not SM2-with-SM3")
        issuer.public_key.verify(self.signature, self.tbs)

    def valid_at(self, now: dt.datetime) -> bool:
        return self.not_before <= now <= self.not_after

    def days_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def __repr__(self) -> str:
        return f"Certificate({self.subject}, serial={self.serial:x})"


SIGN, ENC = "sign", "enc"
_ENC_USAGES = frozenset({"key_encipherment", "data_encipherment", "key_agreement"})


def check_role(cert: Certificate, role: str) -> None:
    """TLCP uses two certificates: a signing one (digitalSignature) and an encryption one."""
    if role == SIGN and "digital_signature" not in cert.key_usage:
        what = "an encryption certificate" if cert.key_usage & _ENC_USAGES else "not a signing certificate"
        raise CertificateError(f"{cert.subject}: no digitalSignature key usage: {what}, not usable as the sign cert")
    if role == ENC and not cert.key_usage & _ENC_USAGES:
        raise CertificateError(
            f"{cert.subject}: no keyEncipherment/dataEncipherment/keyAgreement key usage: "
            "not usable as the enc cert (is it the sign cert?)"
        )
    if cert.is_ca:
        raise CertificateError(f"{cert.subject}: is a CA certificate, not an end-entity {role} certificate")


def verify_chain(
    leaf: Certificate,
    intermediates: list[Certificate],
    roots: list[Certificate],
    now: dt.datetime,
    role: str | None = None,
) -> list[Certificate]:
    """The path leaf → … → trusted root, or CertificateError saying what is wrong with which certificate."""
    if role is not None:
        check_role(leaf, role)
    path = [leaf]
    current = leaf
    for _ in range(8):
        if not current.valid_at(now):
            when = "expired on" if now > current.not_after else "not valid before"
            date = current.not_after if now > current.not_after else current.not_before
            raise CertificateError(f"{current.subject}: {when} {date:%Y-%m-%d %H:%M} UTC")
        root = next((r for r in roots if r.subject == current.issuer and _signed(current, r)), None)
        if root is not None:
            _check_ca(root, now)
            return [*path, root] if root.der != current.der else path
        seen = {c.der for c in path}
        parent = next(
            (c for c in intermediates if c.der not in seen and c.subject == current.issuer and _signed(current, c)),
            None,
        )
        if parent is not None and parent.subject == parent.issuer:
            parent = None  # a self-signed issuer that is not among the roots: an unknown CA, however it came
        if parent is None:
            raise CertificateError(
                f"{current.subject}: issuer {current.issuer} is not a trusted CA (or its signature does not verify)"
            )
        _check_ca(parent, now)
        path.append(parent)
        current = parent
    raise CertificateError(f"{leaf.subject}: certificate chain too long")


def _signed(cert: Certificate, issuer: Certificate) -> bool:
    try:
        cert.verify_signed_by(issuer)
    except InvalidSignature:
        return False
    return True


def _check_ca(cert: Certificate, now: dt.datetime) -> None:
    if not cert.is_ca:
        raise CertificateError(f"{cert.subject}: issues certificates but is not a CA (basicConstraints)")
    if cert.key_usage and "key_cert_sign" not in cert.key_usage:
        raise CertificateError(f"{cert.subject}: CA without keyCertSign key usage")
    if not cert.valid_at(now):
        raise CertificateError(f"{cert.subject}: CA certificate outside its validity ({cert.not_after:%Y-%m-%d})")
