"""TLCP alert codes and the exception that carries one.

Every protocol error raised by the sans-IO core is a :class:`TLCPAlert`: its ``description`` is exactly the
alert the connection sends to the peer (or received from it), so the adapter never has to translate.
"""

from __future__ import annotations

from enum import IntEnum

from gateway.errors import GatewayError


class AlertLevel(IntEnum):
    WARNING = 1
    FATAL = 2


class AlertDescription(IntEnum):
    close_notify = 0
    unexpected_message = 10
    bad_record_mac = 20
    decryption_failed = 21
    record_overflow = 22
    decompression_failure = 30
    handshake_failure = 40
    bad_certificate = 42
    unsupported_certificate = 43
    certificate_revoked = 44
    certificate_expired = 45
    certificate_unknown = 46
    illegal_parameter = 47
    unknown_ca = 48
    access_denied = 49
    decode_error = 50
    decrypt_error = 51
    protocol_version = 70
    insufficient_security = 71
    internal_error = 80
    user_canceled = 90
    no_renegotiation = 100
    unsupported_extension = 110
    # GB/T 38636-2020 additions
    unsupported_site2site = 200
    no_area = 201
    unsupported_areatype = 202
    bad_ibcparam = 203
    unsupported_ibcparam = 204
    identity_need = 205


def describe(code: int) -> str:
    """Name of an alert code, also for codes we do not know (a peer may send anything)."""
    try:
        return AlertDescription(code).name
    except ValueError:
        return f"alert_{code}"


class TLCPAlert(GatewayError):
    """A TLCP protocol failure; ``description`` is the alert put on the wire.

    ``remote`` is True when the peer sent the alert (we received it) rather than us detecting the problem.
    """

    kind = "tlcp"

    def __init__(self, description: int, message: str = "", *, remote: bool = False) -> None:
        self.description = description
        self.remote = remote
        who = "peer sent" if remote else "local"
        super().__init__(f"{describe(description)} ({who}){': ' + message if message else ''}")


def alert(description: AlertDescription, message: str = "") -> TLCPAlert:
    return TLCPAlert(description, message)
