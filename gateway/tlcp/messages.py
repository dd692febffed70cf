"""TLCP handshake messages: frozen dataclasses with ``encode``/``decode`` side by side.

``decode`` takes the message body (without the 4-byte handshake header); :func:`encode_handshake` and
:class:`HandshakeReader` add and strip that header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from gateway.tlcp.alerts import AlertDescription, TLCPAlert
from gateway.tlcp.buffer import Buffer
from gateway.tlcp.record import TLCP_VERSION

#: named_curve id of sm2p256v1 in ECParameters (curve_type 3 = named_curve)
CURVE_SM2 = 0x0029
CURVE_TYPE_NAMED = 3
EXT_SERVER_NAME = 0x0000
EXT_SESSION_TICKET = 0x0023
#: Handshake messages bigger than this are refused before buffering them (a certificate chain of a
#: few SM2 certificates is ~2 KB).
MAX_HANDSHAKE_LEN = 1 << 16


class HandshakeType(IntEnum):
    hello_request = 0
    client_hello = 1
    server_hello = 2
    new_session_ticket = 4
    certificate = 11
    server_key_exchange = 12
    certificate_request = 13
    server_hello_done = 14
    certificate_verify = 15
    client_key_exchange = 16
    finished = 20


Extension = tuple[int, bytes]


def _pull_extensions(buf: Buffer) -> tuple[Extension, ...]:
    if buf.eof():
        return ()
    block = Buffer(buf.pull_vector(2))
    out = []
    seen = set()
    while not block.eof():
        ext_type = block.pull_uint16()
        if ext_type in seen:
            raise TLCPAlert(AlertDescription.decode_error, f"duplicate extension {ext_type}")
        seen.add(ext_type)
        out.append((ext_type, block.pull_vector(2)))
    return tuple(out)


def _push_extensions(buf: Buffer, extensions: tuple[Extension, ...]) -> None:
    if not extensions:
        return  # absent, not empty: GmSSL 3.1.1 rejects even an empty extensions block
    block = Buffer()
    for ext_type, data in extensions:
        block.push_uint16(ext_type)
        block.push_vector(2, data)
    buf.push_vector(2, block.data())


def _check_version(version: int) -> None:
    if version != TLCP_VERSION:
        raise TLCPAlert(AlertDescription.protocol_version, f"hello version 0x{version:04x}")


def server_name_extension(host: str) -> Extension:
    name = host.encode("idna")
    entry = Buffer()
    entry.push_uint8(0)  # host_name
    entry.push_vector(2, name)
    outer = Buffer()
    outer.push_vector(2, entry.data())
    return (EXT_SERVER_NAME, outer.data())


def parse_server_name(data: bytes) -> str | None:
    outer = Buffer(Buffer(data).pull_vector(2))
    while not outer.eof():
        kind = outer.pull_uint8()
        name = outer.pull_vector(2)
        if kind == 0:
            try:
                return name.decode("ascii")
            except UnicodeDecodeError:
                raise TLCPAlert(AlertDescription.decode_error, "server_name is not ASCII") from None
    return None


@dataclass(frozen=True)
class ClientHello:
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    compression_methods: bytes = b"\x00"
    extensions: tuple[Extension, ...] = ()
    version: int = TLCP_VERSION

    msg_type = HandshakeType.client_hello

    def encode(self) -> bytes:
        buf = Buffer()
        buf.push_uint16(self.version)
        buf.push_bytes(self.random)
        buf.push_vector(1, self.session_id)
        buf.push_vector(2, b"".join(s.to_bytes(2, "big") for s in self.cipher_suites))
        buf.push_vector(1, self.compression_methods)
        _push_extensions(buf, self.extensions)
        return buf.data()

    @classmethod
    def decode(cls, body: bytes) -> ClientHello:
        buf = Buffer(body)
        version = buf.pull_uint16()
        random = buf.pull_bytes(32)
        session_id = buf.pull_vector(1)
        if len(session_id) > 32:
            raise TLCPAlert(AlertDescription.illegal_parameter, "session id longer than 32")
        suites = buf.pull_vector(2, minimum=2)
        if len(suites) % 2:
            raise TLCPAlert(AlertDescription.decode_error, "odd cipher suite list")
        compression = buf.pull_vector(1, minimum=1)
        extensions = _pull_extensions(buf)
        buf.expect_end("ClientHello")
        _check_version(version)
        codes = tuple(int.from_bytes(suites[i : i + 2], "big") for i in range(0, len(suites), 2))
        return cls(random, session_id, codes, compression, extensions, version)

    @property
    def server_name(self) -> str | None:
        for ext_type, data in self.extensions:
            if ext_type == EXT_SERVER_NAME:
                return parse_server_name(data)
        return None


@dataclass(frozen=True)
class ServerHello:
    random: bytes
    session_id: bytes
    cipher_suite: int
    compression_method: int = 0
    extensions: tuple[Extension, ...] = ()
    version: int = TLCP_VERSION

    msg_type = HandshakeType.server_hello

    def encode(self) -> bytes:
        buf = Buffer()
        buf.push_uint16(self.version)
        buf.push_bytes(self.random)
        buf.push_vector(1, self.session_id)
        buf.push_uint16(self.cipher_suite)
        buf.push_uint8(self.compression_method)
        _push_extensions(buf, self.extensions)
        return buf.data()

    @classmethod
    def decode(cls, body: bytes) -> ServerHello:
        buf = Buffer(body)
        version = buf.pull_uint16()
        random = buf.pull_bytes(32)
        session_id = buf.pull_vector(1)
        if len(session_id) > 32:
            raise TLCPAlert(AlertDescription.illegal_parameter, "session id longer than 32")
        suite = buf.pull_uint16()
        compression = buf.pull_uint8()
        extensions = _pull_extensions(buf)
        buf.expect_end("ServerHello")
        _check_version(version)
        return cls(random, session_id, suite, compression, extensions, version)


@dataclass(frozen=True)
class CertificateMessage:
    """[sign cert, enc cert, chain...] as DER; a client may send [sign] only (GmSSL)."""

    certificates: tuple[bytes, ...]

    msg_type = HandshakeType.certificate

    def encode(self) -> bytes:
        inner = Buffer()
        for der in self.certificates:
            inner.push_vector(3, der)
        buf = Buffer()
        buf.push_vector(3, inner.data())
        return buf.data()

    @classmethod
    def decode(cls, body: bytes) -> CertificateMessage:
        buf = Buffer(body)
        inner = Buffer(buf.pull_vector(3))
        buf.expect_end("Certificate")
        certs = []
        while not inner.eof():
            certs.append(inner.pull_vector(3, minimum=1))
        return cls(tuple(certs))


@dataclass(frozen=True)
class CertificateRequest:
    #: rsa_sign, ecdsa_sign as Tongsuo sends them (GmSSL: ecdsa_sign only); clients of both stacks accept it
    certificate_types: bytes = b"\x01\x40"
    authorities: tuple[bytes, ...] = ()  # DER-encoded distinguished names

    msg_type = HandshakeType.certificate_request

    def encode(self) -> bytes:
        buf = Buffer()
        buf.push_vector(1, self.certificate_types)
        names = Buffer()
        for dn in self.authorities:
            names.push_vector(2, dn)
        buf.push_vector(2, names.data())
        return buf.data()

    @classmethod
    def decode(cls, body: bytes) -> CertificateRequest:
        buf = Buffer(body)
        types = buf.pull_vector(1, minimum=1)
        names = Buffer(buf.pull_vector(2))
        buf.expect_end("CertificateRequest")
        dns = []
        while not names.eof():
            dns.append(names.pull_vector(2, minimum=1))
        return cls(types, tuple(dns))


@dataclass(frozen=True)
class ServerHelloDone:
    msg_type = HandshakeType.server_hello_done

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, body: bytes) -> ServerHelloDone:
        Buffer(body).expect_end("ServerHelloDone")
        return cls()


@dataclass(frozen=True)
class CertificateVerify:
    signature: bytes

    msg_type = HandshakeType.certificate_verify

    def encode(self) -> bytes:
        buf = Buffer()
        buf.push_vector(2, self.signature)
        return buf.data()

    @classmethod
    def decode(cls, body: bytes) -> CertificateVerify:
        buf = Buffer(body)
        sig = buf.pull_vector(2, minimum=1)
        buf.expect_end("CertificateVerify")
        return cls(sig)


@dataclass(frozen=True)
class Finished:
    verify_data: bytes = field(repr=False)

    msg_type = HandshakeType.finished

    def encode(self) -> bytes:
        return self.verify_data

    @classmethod
    def decode(cls, body: bytes) -> Finished:
        if len(body) != 12:
            raise TLCPAlert(AlertDescription.decode_error, f"Finished of {len(body)} bytes")
        return cls(body)


@dataclass(frozen=True)
class NewSessionTicket:
    """Sent by Tongsuo servers before their CCS; we parse it (it is hashed) and do not use the ticket."""

    lifetime_hint: int
    ticket: bytes = field(repr=False)

    msg_type = HandshakeType.new_session_ticket

    def encode(self) -> bytes:
        buf = Buffer()
        buf.push_uint32(self.lifetime_hint)
        buf.push_vector(2, self.ticket)
        return buf.data()

    @classmethod
    def decode(cls, body: bytes) -> NewSessionTicket:
        buf = Buffer(body)
        hint = buf.pull_uint32()
        ticket = buf.pull_vector(2)
        buf.expect_end("NewSessionTicket")
        return cls(hint, ticket)


@dataclass(frozen=True)
class HelloRequest:
    msg_type = HandshakeType.hello_request

    def encode(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, body: bytes) -> HelloRequest:
        Buffer(body).expect_end("HelloRequest")
        return cls()


def encode_handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


@dataclass(frozen=True)
class RawHandshake:
    """One handshake message as it came off the wire: its type, body and the full bytes for the transcript."""

    msg_type: HandshakeType
    body: bytes
    raw: bytes = field(repr=False)


class HandshakeReader:
    """Reassembles handshake messages from handshake record fragments (messages may span records)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, fragment: bytes) -> None:
        self._buf += fragment

    def empty(self) -> bool:
        return not self._buf

    def next_message(self) -> RawHandshake | None:
        if len(self._buf) < 4:
            return None
        length = int.from_bytes(self._buf[1:4], "big")
        if length > MAX_HANDSHAKE_LEN:
            raise TLCPAlert(AlertDescription.decode_error, f"handshake message of {length} bytes")
        if len(self._buf) < 4 + length:
            return None
        try:
            msg_type = HandshakeType(self._buf[0])
        except ValueError:
            raise TLCPAlert(AlertDescription.unexpected_message, f"handshake type {self._buf[0]}") from None
        raw = bytes(self._buf[: 4 + length])
        del self._buf[: 4 + length]
        return RawHandshake(msg_type, raw[4:], raw)
