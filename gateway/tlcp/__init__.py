"""Sans-IO TLCP (GB/T 38636-2020): records, handshake messages, key schedule, client and server.

Typical use (an adapter owns the socket)::

    conn = ClientConnection(TLCPConfig(credentials=..., verify_peer=...))
    conn.start()
    sock.send(conn.data_to_send())
    for event in conn.receive_data(sock.recv(65536)): ...
"""

from gateway.tlcp.alerts import AlertDescription, AlertLevel, TLCPAlert
from gateway.tlcp.client import ClientConnection
from gateway.tlcp.config import (
    AlertStyle,
    CertVerifyForm,
    ClientCertShape,
    Credentials,
    PeerVerifier,
    TLCPConfig,
)
from gateway.tlcp.connection import TlcpState
from gateway.tlcp.events import AlertReceived, ApplicationData, ClientAuth, CloseNotify, Event, HandshakeComplete
from gateway.tlcp.server import ServerConnection
from gateway.tlcp.session import MemorySessionCache, SessionCache, TlcpSession
from gateway.tlcp.suites import (
    ALL_SUITES,
    ECC_SM4_CBC_SM3,
    ECC_SM4_GCM_SM3,
    ECDHE_SM4_CBC_SM3,
    ECDHE_SM4_GCM_SM3,
    CipherSuite,
)

__all__ = [
    "ALL_SUITES",
    "ECC_SM4_CBC_SM3",
    "ECC_SM4_GCM_SM3",
    "ECDHE_SM4_CBC_SM3",
    "ECDHE_SM4_GCM_SM3",
    "AlertDescription",
    "AlertLevel",
    "AlertReceived",
    "AlertStyle",
    "ApplicationData",
    "CertVerifyForm",
    "CipherSuite",
    "ClientAuth",
    "ClientCertShape",
    "ClientConnection",
    "CloseNotify",
    "Credentials",
    "Event",
    "HandshakeComplete",
    "MemorySessionCache",
    "PeerVerifier",
    "ServerConnection",
    "SessionCache",
    "TLCPAlert",
    "TLCPConfig",
    "TlcpSession",
    "TlcpState",
]
