"""The parts of a TLCP connection both roles share: record I/O, transcript, alerts, data, close.

Sans-IO, in the manner of h11/aioquic: :meth:`receive_data` takes wire bytes and returns events,
:meth:`data_to_send` hands back the bytes to write. A local protocol error raises
:class:`~gateway.tlcp.alerts.TLCPAlert` after the matching fatal alert has been queued for the peer; an alert
from the peer arrives as an :class:`~gateway.tlcp.events.AlertReceived` event.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Sequence

from gateway.crypto import Certificate, CryptoError, SM2PrivateKey, SM2PublicKey, random_bytes, sm3
from gateway.tlcp import keyschedule
from gateway.tlcp.alerts import AlertDescription, AlertLevel, TLCPAlert
from gateway.tlcp.config import AlertStyle, CertVerifyForm, TLCPConfig
from gateway.tlcp.events import AlertReceived, ApplicationData, CloseNotify, Event, is_close_notify
from gateway.tlcp.messages import Finished, HandshakeReader, HandshakeType, RawHandshake, encode_handshake
from gateway.tlcp.record import ContentType, RecordLayer, RecordProtection, protection_for
from gateway.tlcp.suites import CipherSuite, KeyExchange

RandomSource = Callable[[int], bytes]
KeyFactory = Callable[[], SM2PrivateKey]


class TlcpState(enum.Enum):
    START = "start"
    CLIENT_WAIT_SERVER_HELLO = "client_wait_server_hello"
    CLIENT_WAIT_CERTIFICATE = "client_wait_certificate"
    CLIENT_WAIT_KEY_EXCHANGE = "client_wait_key_exchange"
    CLIENT_WAIT_REQUEST_OR_DONE = "client_wait_request_or_done"
    CLIENT_WAIT_DONE = "client_wait_done"
    SERVER_WAIT_CLIENT_HELLO = "server_wait_client_hello"
    SERVER_WAIT_CERTIFICATE = "server_wait_certificate"
    SERVER_WAIT_KEY_EXCHANGE = "server_wait_key_exchange"
    SERVER_WAIT_CERT_VERIFY = "server_wait_cert_verify"
    WAIT_CCS = "wait_ccs"  # the peer's ChangeCipherSpec (a client also takes NewSessionTicket here)
    WAIT_FINISHED = "wait_finished"
    ESTABLISHED = "established"
    CLOSING = "closing"  # we sent close_notify, the peer has not yet
    CLOSED = "closed"


_S = TlcpState
LEGAL_MOVES: dict[TlcpState, frozenset[TlcpState]] = {
    _S.START: frozenset({_S.CLIENT_WAIT_SERVER_HELLO, _S.SERVER_WAIT_CLIENT_HELLO}),
    _S.CLIENT_WAIT_SERVER_HELLO: frozenset({_S.CLIENT_WAIT_CERTIFICATE, _S.WAIT_CCS}),
    _S.CLIENT_WAIT_CERTIFICATE: frozenset({_S.CLIENT_WAIT_KEY_EXCHANGE}),
    _S.CLIENT_WAIT_KEY_EXCHANGE: frozenset({_S.CLIENT_WAIT_REQUEST_OR_DONE}),
    _S.CLIENT_WAIT_REQUEST_OR_DONE: frozenset({_S.CLIENT_WAIT_DONE, _S.WAIT_CCS}),
    _S.CLIENT_WAIT_DONE: frozenset({_S.WAIT_CCS}),
    _S.SERVER_WAIT_CLIENT_HELLO: frozenset({_S.SERVER_WAIT_CERTIFICATE, _S.SERVER_WAIT_KEY_EXCHANGE, _S.WAIT_CCS}),
    _S.SERVER_WAIT_CERTIFICATE: frozenset({_S.SERVER_WAIT_KEY_EXCHANGE}),
    _S.SERVER_WAIT_KEY_EXCHANGE: frozenset({_S.SERVER_WAIT_CERT_VERIFY, _S.WAIT_CCS}),
    _S.SERVER_WAIT_CERT_VERIFY: frozenset({_S.WAIT_CCS}),
    _S.WAIT_CCS: frozenset({_S.WAIT_FINISHED}),
    _S.WAIT_FINISHED: frozenset({_S.ESTABLISHED}),
    _S.ESTABLISHED: frozenset({_S.CLOSING}),
    _S.CLOSING: frozenset(),
    _S.CLOSED: frozenset(),
}
# CLOSED is reachable from every state (a fatal alert either way, close_notify) and is not listed.
_HANDSHAKING = frozenset(LEGAL_MOVES) - {_S.START, _S.ESTABLISHED, _S.CLOSING, _S.CLOSED}


def load_certificate(der: bytes) -> Certificate:
    try:
        return Certificate.from_der(der)
    except (CryptoError, ValueError):
        raise TLCPAlert(AlertDescription.bad_certificate, "certificate does not parse") from None


def check_usage(cert: Certificate, *, sign: bool) -> None:
    """Refuse a sign certificate that cannot sign or an enc certificate that cannot encrypt (swapped pair)."""
    usage = cert.key_usage
    if not usage:
        return  # no KeyUsage extension: no restriction
    ok = "digital_signature" in usage if sign else bool(usage & {"key_encipherment", "key_agreement"})
    if not ok:
        which = "sign" if sign else "enc"
        raise TLCPAlert(AlertDescription.bad_certificate, f"{which} certificate key usage {sorted(usage)}")


class Connection:
    """Base of the client and server connections (:mod:`gateway.tlcp.client`, :mod:`gateway.tlcp.server`)."""

    is_client: bool = False

    def __init__(
        self,
        config: TLCPConfig,
        *,
        random: RandomSource = random_bytes,
        ephemeral_key: KeyFactory = SM2PrivateKey.generate,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self._random = random
        self._ephemeral_key = ephemeral_key
        self._now = now or (lambda: 0.0)
        self._state = TlcpState.START
        self._records = RecordLayer(random)
        self._hs_reader = HandshakeReader()
        self._transcript = bytearray()
        self._out = bytearray()
        self._events: list[Event] = []
        self._pending_read: RecordProtection | None = None
        self._pending_write: RecordProtection | None = None
        self.suite: CipherSuite | None = None
        self.client_random = b""
        self.server_random = b""
        self._master = b""
        self._sent_close = False
        #: the peer sent an alert in the clear after its ChangeCipherSpec (GmSSL 3.1.1 does, for every alert)
        self.peer_sends_clear_alerts = False
        if config.verify_peer is None and not config.insecure_no_verify and self._verifies_peer():
            raise ValueError("TLCPConfig.verify_peer is required (or set insecure_no_verify)")
        self._init_role()

    def _verifies_peer(self) -> bool:
        cfg = self.config
        # an ECDHE server always asks for the client's certificates
        ecdhe = any(s.key_exchange is KeyExchange.ECDHE for s in cfg.cipher_suites)
        return self.is_client or cfg.request_client_cert or cfg.require_client_cert or ecdhe

    def _init_role(self) -> None:
        """Role-specific fields; subclasses extend."""

    # -- public API ----------------------------------------------------------------------------------------
    @property
    def state(self) -> TlcpState:
        return self._state

    @property
    def handshake_complete(self) -> bool:
        return self._state in (TlcpState.ESTABLISHED, TlcpState.CLOSING)

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        # The property, not _state: the type checker would take _state as open in the loop below, which closes it.
        if self.state is TlcpState.CLOSED:
            return []
        self._records.feed(data)
        try:
            while self._state is not TlcpState.CLOSED and (record := self._records.next_record()) is not None:
                if record.unprotected:
                    self.peer_sends_clear_alerts = True
                self._on_record(record.content_type, record.fragment)
        except TLCPAlert as exc:
            self._fail(exc)
            raise
        events, self._events = self._events, []
        return events

    def send_data(self, data: bytes) -> None:
        if self._state is not TlcpState.ESTABLISHED:
            raise TLCPAlert(AlertDescription.internal_error, f"cannot send application data in {self._state.value}")
        self._out += self._records.encode(ContentType.application_data, data)

    def close(self) -> None:
        """Send close_notify; the connection is closed once the peer answers with its own."""
        if self._state in (TlcpState.CLOSING, TlcpState.CLOSED):
            return
        self._send_alert(AlertLevel.WARNING, AlertDescription.close_notify)
        self._sent_close = True
        self._state = TlcpState.CLOSING if self._state is TlcpState.ESTABLISHED else TlcpState.CLOSED

    # -- state ---------------------------------------------------------------------------------------------
    def _move(self, new: TlcpState) -> None:
        if new not in LEGAL_MOVES[self._state]:
            raise TLCPAlert(AlertDescription.internal_error, f"illegal move {self._state.value} -> {new.value}")
        self._state = new

    def _fail(self, exc: TLCPAlert) -> None:
        if self._state is not TlcpState.CLOSED and not exc.remote:
            self._send_alert(AlertLevel.FATAL, exc.description)
        self._state = TlcpState.CLOSED

    # -- records in ----------------------------------------------------------------------------------------
    def _on_record(self, content_type: ContentType, fragment: bytes) -> None:
        if content_type is not ContentType.handshake and not self._hs_reader.empty():
            raise TLCPAlert(AlertDescription.unexpected_message, "record interleaved with a split handshake message")
        if content_type is ContentType.alert:
            self._on_alert(fragment)
        elif content_type is ContentType.change_cipher_spec:
            self._on_ccs(fragment)
        elif content_type is ContentType.handshake:
            if not fragment:
                raise TLCPAlert(AlertDescription.unexpected_message, "empty handshake record")
            self._hs_reader.feed(fragment)
            while self._state is not TlcpState.CLOSED and (msg := self._hs_reader.next_message()) is not None:
                self._on_handshake_message(msg)
        elif self._state not in (TlcpState.ESTABLISHED, TlcpState.CLOSING):
            raise TLCPAlert(AlertDescription.unexpected_message, f"application data in {self._state.value}")
        elif fragment:  # Tongsuo sends empty records ahead of CBC data; they carry nothing
            self._events.append(ApplicationData(fragment))

    def _on_alert(self, fragment: bytes) -> None:
        if len(fragment) != 2:
            raise TLCPAlert(AlertDescription.decode_error, f"alert of {len(fragment)} bytes")
        level, description = fragment[0], fragment[1]
        if is_close_notify(description) and self._state in _HANDSHAKING:
            # The peer gave up on the handshake: it ends here, like a fatal alert, rather than waiting for more.
            self._state = TlcpState.CLOSED
            self._events.append(AlertReceived(level, description))
            return
        if is_close_notify(description):
            # GmSSL 3.1.1 sends close_notify at fatal level; it is still a clean close.
            if not self._sent_close:
                self._send_alert(AlertLevel.WARNING, AlertDescription.close_notify)
                self._sent_close = True
            self._state = TlcpState.CLOSED
            self._events.append(CloseNotify())
            return
        self._events.append(AlertReceived(level, description))
        if level != AlertLevel.WARNING or self._state in _HANDSHAKING:
            # A warning during the handshake (e.g. no_renegotiation in answer to our hello) ends it too.
            self._state = TlcpState.CLOSED

    def _on_ccs(self, fragment: bytes) -> None:
        if fragment != b"\x01":
            raise TLCPAlert(AlertDescription.decode_error, "ChangeCipherSpec is not 0x01")
        if self._state is not TlcpState.WAIT_CCS or self._pending_read is None:
            raise TLCPAlert(AlertDescription.unexpected_message, f"ChangeCipherSpec in {self._state.value}")
        self._records.set_read_protection(self._pending_read)
        self._pending_read = None
        self._move(TlcpState.WAIT_FINISHED)

    def _on_handshake_message(self, msg: RawHandshake) -> None:
        if self._state in (TlcpState.ESTABLISHED, TlcpState.CLOSING):
            self._post_handshake(msg)
            return
        self._handle(msg)

    def _post_handshake(self, msg: RawHandshake) -> None:
        renegotiation = HandshakeType.client_hello if not self.is_client else HandshakeType.hello_request
        if msg.msg_type is renegotiation:
            # Refuse politely (warning): the session stays usable.
            self._send_alert(AlertLevel.WARNING, AlertDescription.no_renegotiation)
            return
        raise TLCPAlert(AlertDescription.unexpected_message, f"{msg.msg_type.name} after the handshake")

    def _handle(self, msg: RawHandshake) -> None:
        handler = self._handlers().get((self._state, msg.msg_type))
        if handler is None:
            raise TLCPAlert(AlertDescription.unexpected_message, f"{msg.msg_type.name} in {self._state.value}")
        handler(msg)

    def _handlers(self) -> dict[tuple[TlcpState, HandshakeType], Callable[[RawHandshake], None]]:
        raise NotImplementedError

    # -- records out ---------------------------------------------------------------------------------------
    def _send_alert(self, level: AlertLevel, description: int) -> None:
        style = self.config.alerts
        clear = style is AlertStyle.CLEAR or (style is AlertStyle.AUTO and self.peer_sends_clear_alerts)
        self._out += self._records.encode(ContentType.alert, bytes([level, description]), clear=clear)

    def _send_handshake(self, msg_type: HandshakeType, body: bytes) -> None:
        raw = encode_handshake(msg_type, body)
        self._transcript += raw
        # one message per record: GmSSL reads handshake messages record by record
        self._out += self._records.encode(ContentType.handshake, raw)

    def _send_ccs(self) -> None:
        assert self._pending_write is not None
        self._out += self._records.encode(ContentType.change_cipher_spec, b"\x01")
        self._records.set_write_protection(self._pending_write)
        self._pending_write = None

    def _hash(self, msg: RawHandshake) -> None:
        self._transcript += msg.raw

    # -- key schedule ----------------------------------------------------------------------------------------
    def _install_keys(self, master: bytes) -> None:
        assert self.suite is not None
        self._master = master
        kb = keyschedule.key_block(self.suite, master, self.client_random, self.server_random)
        mine, theirs = (kb.client, kb.server) if self.is_client else (kb.server, kb.client)
        self._pending_write = protection_for(self.suite, mine, self._random)
        self._pending_read = protection_for(self.suite, theirs, self._random)

    def _finished_data(self, *, client: bool) -> bytes:
        return keyschedule.verify_data(self._master, client=client, handshake_hash=sm3(bytes(self._transcript)))

    def _send_finished(self) -> None:
        self._send_handshake(HandshakeType.finished, self._finished_data(client=self.is_client))

    def _check_finished(self, msg: RawHandshake) -> None:
        expected = self._finished_data(client=not self.is_client)
        if not hmac.compare_digest(Finished.decode(msg.body).verify_data, expected):
            raise TLCPAlert(AlertDescription.decrypt_error, "Finished verify_data mismatch")
        self._hash(msg)

    # -- signatures ------------------------------------------------------------------------------------------
    def _sign(self, key: SM2PrivateKey, data: bytes) -> bytes:
        return key.sign(data, self.config.sm2_id)

    def _verify(self, key: SM2PublicKey, signature: bytes, data: bytes, what: str) -> None:
        try:
            key.verify(signature, data, self.config.sm2_id)
        except CryptoError:
            raise TLCPAlert(AlertDescription.decrypt_error, f"{what} signature does not verify") from None

    def _verify_peer_chain(self, certs: Sequence[Certificate]) -> None:
        if self.config.verify_peer is not None:
            try:
                self.config.verify_peer(certs)
            except CryptoError as exc:
                raise TLCPAlert(AlertDescription.bad_certificate, str(exc)) from None

    def _cert_verify_payload(self, form: CertVerifyForm) -> bytes:
        data = bytes(self._transcript)
        return sm3(data) if form is CertVerifyForm.SM3 else data
