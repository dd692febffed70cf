"""What a TLCP endpoint is configured with: its certificates and keys, suites, and interop choices."""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.crypto import DEFAULT_SM2_ID, Certificate, SM2PrivateKey
from gateway.tlcp.session import SessionCache, TlcpSession
from gateway.tlcp.suites import ALL_SUITES, CipherSuite

#: Checks the peer's certificate path ([sign, enc?, chain...]); raises TLCPAlert (bad_certificate,
#: unknown_ca, certificate_expired ...) to refuse it.
PeerVerifier = Callable[[Sequence[Certificate]], None]


class ClientCertShape(enum.Enum):
    #: what the CertificateRequest shows: GmSSL servers ask for ecdsa_sign only and take [sign]; anything else
    #: (Tongsuo, ybgate) gets [sign, enc]
    AUTO = "auto"
    SIGN_ENC = "sign_enc"  # Tongsuo; a Tongsuo server demands both
    SIGN_ONLY = "sign"  # GmSSL


class CertVerifyForm(enum.Enum):
    SM3 = "sm3"  # sign SM3(handshake): Tongsuo, GmSSL 3.1.1, the standard
    RAW = "raw"  # sign the handshake messages themselves: GmSSL 3.2.0


class AlertStyle(enum.Enum):
    #: encrypted after CCS until the peer sends an alert of its own in the clear (GmSSL 3.1.1), then clear
    AUTO = "auto"
    ENCRYPTED = "encrypted"  # the standard; Tongsuo, GmSSL 3.2.0
    CLEAR = "clear"  # what a GmSSL 3.1.1 peer can parse


@dataclass(frozen=True)
class Credentials:
    sign_key: SM2PrivateKey = field(repr=False)
    sign_cert: Certificate
    enc_key: SM2PrivateKey = field(repr=False)
    enc_cert: Certificate
    #: intermediates sent after the two end-entity certificates (never the root: GmSSL refuses it)
    chain: tuple[Certificate, ...] = ()


@dataclass(frozen=True)
class TLCPConfig:
    credentials: Credentials | None = None
    cipher_suites: tuple[CipherSuite, ...] = ALL_SUITES
    verify_peer: PeerVerifier | None = None
    sm2_id: bytes = DEFAULT_SM2_ID
    # -- client side --------------------------------------------------------------------------------------
    #: sent as an SNI extension only when set: GmSSL servers reject extensions they do not know
    server_name: str | None = None
    client_cert_shape: ClientCertShape = ClientCertShape.AUTO
    cert_verify_form: CertVerifyForm = CertVerifyForm.SM3
    #: a session from an earlier connection to offer for resumption
    session: TlcpSession | None = None
    ecdhe_point_with_params: bool = True
    # -- server side --------------------------------------------------------------------------------------
    request_client_cert: bool = False
    require_client_cert: bool = False
    #: DER distinguished names listed in CertificateRequest (GmSSL clients answer only if their CA is here)
    client_ca_names: tuple[bytes, ...] = ()
    session_cache: SessionCache | None = None
    # -- both ---------------------------------------------------------------------------------------------
    #: alerts after CCS: encrypted, in the clear (what a GmSSL 3.1.1 peer can parse), or as the peer does
    alerts: AlertStyle = AlertStyle.AUTO
    #: without a verifier a client (or a server asking for client certificates) refuses to start, unless
    #: this is set: certificate checks are never skipped by leaving a field out
    insecure_no_verify: bool = False
