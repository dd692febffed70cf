"""What a TLCP connection reports to its owner after :meth:`receive_data`."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.crypto import Certificate
from gateway.tlcp.alerts import AlertDescription, AlertLevel, TLCPAlert
from gateway.tlcp.config import CertVerifyForm, ClientCertShape
from gateway.tlcp.session import TlcpSession
from gateway.tlcp.suites import CipherSuite


@dataclass(frozen=True)
class Event:
    pass


@dataclass(frozen=True)
class ClientAuth:
    """What a client did about authenticating itself in one handshake."""

    #: the server sent a CertificateRequest
    requested: bool = False
    #: its certificate_types (GmSSL: ecdsa_sign only; Tongsuo and ybgate: rsa_sign, ecdsa_sign)
    certificate_types: bytes = b""
    #: its certificate-authorities list (DER names; GmSSL clients present a certificate only if its CA is here)
    authorities: tuple[bytes, ...] = ()
    #: what went into our Certificate message; None: no certificate (not asked, or none configured)
    shape: ClientCertShape | None = None
    #: how our CertificateVerify was signed; None: none sent
    form: CertVerifyForm | None = None


@dataclass(frozen=True)
class HandshakeComplete(Event):
    cipher_suite: CipherSuite
    session: TlcpSession = field(repr=False)
    resumed: bool
    #: [sign, enc?, chain...] as the peer sent them (empty for an anonymous client)
    peer_certificates: tuple[Certificate, ...] = field(repr=False)
    server_name: str | None = None
    #: which CertificateVerify form the client used ("sm3" or "raw"), server side only
    peer_cert_verify_form: str | None = None
    #: whether the client's ECDHE point came with the ECParameters prefix, server side only
    peer_ecdhe_with_params: bool | None = None
    #: client side only: whether the server asked for our certificate and what we sent (nothing on resumption)
    client_auth: ClientAuth | None = None


@dataclass(frozen=True)
class ApplicationData(Event):
    data: bytes = field(repr=False)


@dataclass(frozen=True)
class CloseNotify(Event):
    """The peer closed its sending side cleanly; our close_notify answer is already queued."""


@dataclass(frozen=True)
class AlertReceived(Event):
    """Any alert but a close_notify after the handshake. A fatal one ends the connection, and any alert (a
    close_notify too) ends a handshake in progress."""

    level: int
    description: int

    @property
    def fatal(self) -> bool:
        return self.level == AlertLevel.FATAL

    def error(self) -> TLCPAlert:
        return TLCPAlert(self.description, remote=True)


def is_close_notify(description: int) -> bool:
    return description == AlertDescription.close_notify
