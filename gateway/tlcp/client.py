"""The client side of a TLCP handshake (ECC and ECDHE suites, optional client auth, resumption)."""

from __future__ import annotations

from collections.abc import Callable

from gateway.crypto import Certificate, CryptoError, SM2PrivateKey, SM2PublicKey, sm2_key_exchange
from gateway.tlcp import keyschedule
from gateway.tlcp.alerts import AlertDescription, TLCPAlert
from gateway.tlcp.config import ClientCertShape, Credentials
from gateway.tlcp.connection import Connection, TlcpState, check_usage, load_certificate
from gateway.tlcp.events import ClientAuth, HandshakeComplete
from gateway.tlcp.key_exchange import (
    ClientKeyExchangeECC,
    ClientKeyExchangeECDHE,
    ServerKeyExchangeECC,
    ServerKeyExchangeECDHE,
)
from gateway.tlcp.messages import (
    CertificateMessage,
    CertificateRequest,
    CertificateVerify,
    ClientHello,
    HandshakeType,
    NewSessionTicket,
    RawHandshake,
    ServerHello,
    ServerHelloDone,
    server_name_extension,
)
from gateway.tlcp.record import TLCP_VERSION
from gateway.tlcp.session import TlcpSession
from gateway.tlcp.suites import BY_CODE, KeyExchange

H = HandshakeType
#: GmSSL servers ask for ecdsa_sign alone, and take a second certificate for a CA certificate
GMSSL_CERTIFICATE_TYPES = b"\x40"


def ske_ecc_payload(client_random: bytes, server_random: bytes, enc_cert_der: bytes) -> bytes:
    return client_random + server_random + len(enc_cert_der).to_bytes(3, "big") + enc_cert_der


class ClientConnection(Connection):
    is_client = True

    def _init_role(self) -> None:
        self._offered: TlcpSession | None = None
        self._resumed = False
        self._server_certs: tuple[Certificate, ...] = ()
        self._server_point: bytes | None = None
        self._cert_request: CertificateRequest | None = None
        self.session: TlcpSession | None = None
        #: what this handshake did about client authentication, known once ServerHelloDone is answered; read
        #: it after a failed handshake to tell a refused client certificate from other failures
        self.client_auth = ClientAuth()

    def start(self) -> None:
        """Queue the ClientHello."""
        cfg = self.config
        self._move(TlcpState.CLIENT_WAIT_SERVER_HELLO)
        self.client_random = self._random(32)
        offered = cfg.session
        # An empty id offers nothing: a server that keeps no sessions answers with an empty id too, and that
        # must not read as a resumption.
        if offered is not None and offered.session_id and offered.cipher_suite in {s.code for s in cfg.cipher_suites}:
            self._offered = offered
        extensions = (server_name_extension(cfg.server_name),) if cfg.server_name else ()
        hello = ClientHello(
            random=self.client_random,
            session_id=self._offered.session_id if self._offered else b"",
            cipher_suites=tuple(s.code for s in cfg.cipher_suites),
            extensions=extensions,
        )
        self._send_handshake(H.client_hello, hello.encode())

    def _handlers(self) -> dict[tuple[TlcpState, HandshakeType], Callable[[RawHandshake], None]]:
        return {
            (TlcpState.CLIENT_WAIT_SERVER_HELLO, H.server_hello): self._on_server_hello,
            (TlcpState.CLIENT_WAIT_CERTIFICATE, H.certificate): self._on_certificate,
            (TlcpState.CLIENT_WAIT_KEY_EXCHANGE, H.server_key_exchange): self._on_key_exchange,
            (TlcpState.CLIENT_WAIT_REQUEST_OR_DONE, H.certificate_request): self._on_certificate_request,
            (TlcpState.CLIENT_WAIT_REQUEST_OR_DONE, H.server_hello_done): self._on_hello_done,
            (TlcpState.CLIENT_WAIT_DONE, H.server_hello_done): self._on_hello_done,
            (TlcpState.WAIT_CCS, H.new_session_ticket): self._on_ticket,
            (TlcpState.WAIT_FINISHED, H.finished): self._on_finished,
        }

    def _on_server_hello(self, msg: RawHandshake) -> None:
        hello = ServerHello.decode(msg.body)
        if hello.cipher_suite not in {s.code for s in self.config.cipher_suites}:
            raise TLCPAlert(AlertDescription.illegal_parameter, f"server chose suite 0x{hello.cipher_suite:04x}")
        if hello.compression_method != 0:
            raise TLCPAlert(AlertDescription.illegal_parameter, "server chose compression")
        self._hash(msg)
        self.suite = BY_CODE[hello.cipher_suite]
        self.server_random = hello.random
        offered = self._offered
        if offered is not None and hello.session_id and hello.session_id == offered.session_id:
            if hello.cipher_suite != offered.cipher_suite:
                raise TLCPAlert(AlertDescription.illegal_parameter, "resumed session with another suite")
            self._resumed = True
            self.session = offered
            self._server_certs = tuple(load_certificate(d) for d in offered.peer_certificates)
            self._install_keys(offered.master_secret)
            self._move(TlcpState.WAIT_CCS)
            return
        self.session = TlcpSession(hello.session_id, hello.cipher_suite, b"", (), self._now(), self.config.server_name)
        self._move(TlcpState.CLIENT_WAIT_CERTIFICATE)

    def _on_certificate(self, msg: RawHandshake) -> None:
        ders = CertificateMessage.decode(msg.body).certificates
        if len(ders) < 2:
            raise TLCPAlert(AlertDescription.bad_certificate, "server must send sign and enc certificates")
        certs = tuple(load_certificate(d) for d in ders)
        check_usage(certs[0], sign=True)
        check_usage(certs[1], sign=False)
        self._verify_peer_chain(certs)
        self._server_certs = certs
        self._hash(msg)
        self._move(TlcpState.CLIENT_WAIT_KEY_EXCHANGE)

    def _on_key_exchange(self, msg: RawHandshake) -> None:
        assert self.suite is not None
        sign_key = self._server_certs[0].public_key
        if self.suite.key_exchange is KeyExchange.ECC:
            ske = ServerKeyExchangeECC.decode(msg.body)
            payload = ske_ecc_payload(self.client_random, self.server_random, self._server_certs[1].der)
            self._verify(sign_key, ske.signature, payload, "ServerKeyExchange")
        else:
            ecdhe = ServerKeyExchangeECDHE.decode(msg.body)
            payload = self.client_random + self.server_random + ecdhe.params
            self._verify(sign_key, ecdhe.signature, payload, "ServerKeyExchange")
            self._server_point = ecdhe.point
        self._hash(msg)
        self._move(TlcpState.CLIENT_WAIT_REQUEST_OR_DONE)

    def _on_certificate_request(self, msg: RawHandshake) -> None:
        self._cert_request = CertificateRequest.decode(msg.body)
        self._hash(msg)
        self._move(TlcpState.CLIENT_WAIT_DONE)

    def _on_hello_done(self, msg: RawHandshake) -> None:
        ServerHelloDone.decode(msg.body)
        self._hash(msg)
        assert self.suite is not None
        creds = self.config.credentials
        ecdhe = self.suite.key_exchange is KeyExchange.ECDHE
        if ecdhe and (self._cert_request is None or creds is None):
            raise TLCPAlert(AlertDescription.handshake_failure, "ECDHE needs client sign and enc certificates")
        request = self._cert_request
        authenticate = request is not None and creds is not None
        if request is not None:
            shape = self._cert_shape(request, ecdhe) if creds is not None else None
            self.client_auth = ClientAuth(
                True,
                request.certificate_types,
                request.authorities,
                shape,
                self.config.cert_verify_form if authenticate else None,
            )
            certs = _certificates(creds, shape) if creds is not None and shape is not None else ()
            self._send_handshake(H.certificate, CertificateMessage(certs).encode())
        server_enc = self._server_certs[1].public_key
        if not ecdhe:
            pre_master = TLCP_VERSION.to_bytes(2, "big") + self._random(46)
            encrypted = self._encrypt_pre_master(server_enc, pre_master)
            self._send_handshake(H.client_key_exchange, ClientKeyExchangeECC(encrypted).encode())
        else:
            assert creds is not None and self._server_point is not None
            pre_master = self._ecdhe(creds.enc_key, server_enc)
        if authenticate:
            assert creds is not None
            signature = self._sign(creds.sign_key, self._cert_verify_payload(self.config.cert_verify_form))
            self._send_handshake(H.certificate_verify, CertificateVerify(signature).encode())
        self._install_keys(keyschedule.master_secret(pre_master, self.client_random, self.server_random))
        self._send_ccs()
        self._send_finished()
        self._move(TlcpState.WAIT_CCS)

    def _encrypt_pre_master(self, server_enc: SM2PublicKey, pre_master: bytes) -> bytes:
        try:
            return server_enc.encrypt(pre_master)
        except CryptoError:
            raise TLCPAlert(AlertDescription.bad_certificate, "server enc key unusable") from None

    def _cert_shape(self, request: CertificateRequest, ecdhe: bool) -> ClientCertShape:
        shape = self.config.client_cert_shape
        if ecdhe:
            return ClientCertShape.SIGN_ENC  # the server needs our enc key for the key exchange
        if shape is ClientCertShape.AUTO:
            gmssl = request.certificate_types == GMSSL_CERTIFICATE_TYPES
            return ClientCertShape.SIGN_ONLY if gmssl else ClientCertShape.SIGN_ENC
        return shape

    def _ecdhe(self, own_static: SM2PrivateKey, server_enc: SM2PublicKey) -> bytes:
        assert self._server_point is not None
        ephemeral = self._ephemeral_key()
        try:
            peer_ephemeral = SM2PublicKey.from_point(self._server_point)
            pre_master = sm2_key_exchange(
                own_static=own_static,
                own_ephemeral=ephemeral,
                peer_static=server_enc,
                peer_ephemeral=peer_ephemeral,
                own_id=self.config.sm2_id,
                peer_id=self.config.sm2_id,
                initiator=False,
                klen=48,
            )
        except CryptoError:
            raise TLCPAlert(AlertDescription.illegal_parameter, "server ECDHE point rejected") from None
        point = ephemeral.public_key().point
        cke = ClientKeyExchangeECDHE(point, with_params=self.config.ecdhe_point_with_params)
        self._send_handshake(H.client_key_exchange, cke.encode())
        return pre_master

    def _on_ticket(self, msg: RawHandshake) -> None:
        # Tongsuo servers send one before CCS even without our asking; it counts in the Finished hash.
        NewSessionTicket.decode(msg.body)
        self._hash(msg)

    def _on_finished(self, msg: RawHandshake) -> None:
        self._check_finished(msg)
        if self._resumed:
            self._send_ccs()
            self._send_finished()
        assert self.suite is not None and self.session is not None
        if not self._resumed:
            self.session = TlcpSession(
                self.session.session_id,
                self.suite.code,
                self._master,
                tuple(c.der for c in self._server_certs),
                self.session.created,
                self.config.server_name,
            )
        self._move(TlcpState.ESTABLISHED)
        self._events.append(
            HandshakeComplete(
                self.suite,
                self.session,
                self._resumed,
                self._server_certs,
                self.config.server_name,
                client_auth=self.client_auth,
            )
        )


def _certificates(creds: Credentials, shape: ClientCertShape) -> tuple[bytes, ...]:
    pair = (creds.sign_cert, creds.enc_cert) if shape is ClientCertShape.SIGN_ENC else (creds.sign_cert,)
    return tuple(c.der for c in (*pair, *creds.chain))
