"""TLCP key exchange messages (ECC: SM2 encryption of the pre-master secret; ECDHE: SM2 key agreement), in the
style of messages.py: frozen dataclasses with ``encode``/``decode`` side by side, bodies without the handshake
header."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.tlcp.alerts import AlertDescription, TLCPAlert
from gateway.tlcp.buffer import Buffer
from gateway.tlcp.messages import CURVE_SM2, CURVE_TYPE_NAMED, HandshakeType


@dataclass(frozen=True)
class ServerKeyExchangeECC:
    """ECC suites: only a signature over randoms and the enc certificate."""

    signature: bytes

    msg_type = HandshakeType.server_key_exchange

    def encode(self) -> bytes:
        buf = Buffer()
        buf.push_vector(2, self.signature)
        return buf.data()

    @classmethod
    def decode(cls, body: bytes) -> ServerKeyExchangeECC:
        buf = Buffer(body)
        sig = buf.pull_vector(2, minimum=1)
        buf.expect_end("ServerKeyExchange")
        return cls(sig)


def encode_ec_params(point: bytes) -> bytes:
    """ServerECDHParams: curve_type named_curve, SM2 curve id, uint8-prefixed point."""
    buf = Buffer()
    buf.push_uint8(CURVE_TYPE_NAMED)
    buf.push_uint16(CURVE_SM2)
    buf.push_vector(1, point)
    return buf.data()


def _pull_ec_params(buf: Buffer) -> bytes:
    curve_type = buf.pull_uint8()
    curve = buf.pull_uint16()
    if curve_type != CURVE_TYPE_NAMED or curve != CURVE_SM2:
        raise TLCPAlert(AlertDescription.illegal_parameter, f"curve {curve_type}/{curve} is not SM2")
    return buf.pull_vector(1, minimum=1)


@dataclass(frozen=True)
class ServerKeyExchangeECDHE:
    point: bytes
    signature: bytes

    msg_type = HandshakeType.server_key_exchange

    @property
    def params(self) -> bytes:
        return encode_ec_params(self.point)

    def encode(self) -> bytes:
        buf = Buffer(self.params)
        buf.push_vector(2, self.signature)
        return buf.data()

    @classmethod
    def decode(cls, body: bytes) -> ServerKeyExchangeECDHE:
        buf = Buffer(body)
        point = _pull_ec_params(buf)
        sig = buf.pull_vector(2, minimum=1)
        buf.expect_end("ServerKeyExchange")
        return cls(point, sig)


@dataclass(frozen=True)
class ClientKeyExchangeECC:
    """SM2 ciphertext (GM/T 0009 DER) of the 48-byte pre-master, uint16-prefixed."""

    encrypted_pre_master: bytes

    msg_type = HandshakeType.client_key_exchange

    def encode(self) -> bytes:
        buf = Buffer()
        buf.push_vector(2, self.encrypted_pre_master)
        return buf.data()

    @classmethod
    def decode(cls, body: bytes) -> ClientKeyExchangeECC:
        buf = Buffer(body)
        data = buf.pull_vector(2, minimum=1)
        buf.expect_end("ClientKeyExchange")
        return cls(data)


@dataclass(frozen=True)
class ClientKeyExchangeECDHE:
    """The client's ephemeral point; Tongsuo prefixes it with ECParameters, the bare form is accepted too."""

    point: bytes
    with_params: bool = True

    msg_type = HandshakeType.client_key_exchange

    def encode(self) -> bytes:
        if self.with_params:
            return encode_ec_params(self.point)
        buf = Buffer()
        buf.push_vector(1, self.point)
        return buf.data()

    @classmethod
    def decode(cls, body: bytes) -> ClientKeyExchangeECDHE:
        buf = Buffer(body)
        # A bare point starts with its length byte (65 for 04||x||y); a prefixed one with curve_type 3.
        if body[:1] == bytes([CURVE_TYPE_NAMED]):
            point, with_params = _pull_ec_params(buf), True
        else:
            point, with_params = buf.pull_vector(1, minimum=1), False
        buf.expect_end("ClientKeyExchange")
        return cls(point, with_params)
