"""The server side of a TLCP handshake (ECC and ECDHE suites, optional client auth, resumption)."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from gateway.crypto import Certificate, CryptoError, SM2PrivateKey, SM2PublicKey, sm2_key_exchange
from gateway.tlcp import keyschedule
from gateway.tlcp.alerts import AlertDescription, TLCPAlert
from gateway.tlcp.client import ske_ecc_payload
from gateway.tlcp.config import CertVerifyForm, Credentials
from gateway.tlcp.connection import Connection, TlcpState, check_usage, load_certificate
from gateway.tlcp.events import HandshakeComplete
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
    RawHandshake,
    ServerHello,
)
from gateway.tlcp.record import TLCP_VERSION
from gateway.tlcp.session import TlcpSession
from gateway.tlcp.suites import BY_CODE, KeyExchange

H = HandshakeType
PRE_MASTER_LEN = 48


class ServerConnection(Connection):
    is_client = False

    def _init_role(self) -> None:
        if self.config.credentials is None:
            raise ValueError("a TLCP server needs sign and enc credentials")
        self._creds: Credentials = self.config.credentials
        self._resumed = False
        self._requested = False
        self._client_certs: tuple[Certificate, ...] = ()
        self._client_enc: Certificate | None = None
        self._ephemeral: SM2PrivateKey | None = None
        self._server_name: str | None = None
        self._session_id = b""
        self._cv_form: str | None = None
        self._ecdhe_with_params: bool | None = None
        self.session: TlcpSession | None = None

    def start(self) -> None:
        self._move(TlcpState.SERVER_WAIT_CLIENT_HELLO)

    def _handlers(self) -> dict[tuple[TlcpState, HandshakeType], Callable[[RawHandshake], None]]:
        return {
            (TlcpState.SERVER_WAIT_CLIENT_HELLO, H.client_hello): self._on_client_hello,
            (TlcpState.SERVER_WAIT_CERTIFICATE, H.certificate): self._on_certificate,
            (TlcpState.SERVER_WAIT_KEY_EXCHANGE, H.client_key_exchange): self._on_key_exchange,
            (TlcpState.SERVER_WAIT_CERT_VERIFY, H.certificate_verify): self._on_certificate_verify,
            (TlcpState.WAIT_FINISHED, H.finished): self._on_finished,
        }

    def _on_client_hello(self, msg: RawHandshake) -> None:
        hello = ClientHello.decode(msg.body)
        if 0 not in hello.compression_methods:
            raise TLCPAlert(AlertDescription.illegal_parameter, "client does not offer null compression")
        offered = set(hello.cipher_suites)
        suites = [s for s in self.config.cipher_suites if s.code in offered]
        if not suites:
            raise TLCPAlert(AlertDescription.handshake_failure, "no cipher suite in common")
        self._server_name = hello.server_name
        self._hash(msg)
        self.client_random = hello.random
        self.server_random = self._random(32)
        cache = self.config.session_cache
        cached = cache.get(hello.session_id) if cache is not None and hello.session_id else None
        if cached is not None and cached.cipher_suite in offered:
            self._resume(cached)
            return
        self.suite = suites[0]
        self._session_id = self._random(32) if cache is not None else b""
        self._send_handshake(
            H.server_hello, ServerHello(self.server_random, self._session_id, self.suite.code).encode()
        )
        creds = self._creds
        chain = (creds.sign_cert, creds.enc_cert, *creds.chain)
        self._send_handshake(H.certificate, CertificateMessage(tuple(c.der for c in chain)).encode())
        if self.suite.key_exchange is KeyExchange.ECC:
            payload = ske_ecc_payload(self.client_random, self.server_random, creds.enc_cert.der)
            ske: ServerKeyExchangeECC | ServerKeyExchangeECDHE = ServerKeyExchangeECC(
                self._sign(creds.sign_key, payload)
            )
        else:
            self._ephemeral = self._ephemeral_key()
            point = self._ephemeral.public_key().point
            params = ServerKeyExchangeECDHE(point, b"").params
            signature = self._sign(creds.sign_key, self.client_random + self.server_random + params)
            ske = ServerKeyExchangeECDHE(point, signature)
        self._send_handshake(H.server_key_exchange, ske.encode())
        # ECDHE cannot run without the client's enc key, so it always asks for the client's certificates.
        self._requested = (
            self.config.request_client_cert
            or self.config.require_client_cert
            or (self.suite.key_exchange is KeyExchange.ECDHE)
        )
        if self._requested:
            request = CertificateRequest(authorities=self.config.client_ca_names)
            self._send_handshake(H.certificate_request, request.encode())
        self._send_handshake(H.server_hello_done, b"")
        self._move(TlcpState.SERVER_WAIT_CERTIFICATE if self._requested else TlcpState.SERVER_WAIT_KEY_EXCHANGE)

    def _resume(self, cached: TlcpSession) -> None:
        self._resumed = True
        self.session = cached
        self.suite = BY_CODE[cached.cipher_suite]
        self._session_id = cached.session_id
        self._client_certs = tuple(load_certificate(d) for d in cached.peer_certificates)
        self._send_handshake(
            H.server_hello, ServerHello(self.server_random, cached.session_id, self.suite.code).encode()
        )
        self._install_keys(cached.master_secret)
        self._send_ccs()
        self._send_finished()
        self._move(TlcpState.WAIT_CCS)

    def _on_certificate(self, msg: RawHandshake) -> None:
        assert self.suite is not None
        ders = CertificateMessage.decode(msg.body).certificates
        ecdhe = self.suite.key_exchange is KeyExchange.ECDHE
        if not ders:
            if self.config.require_client_cert or ecdhe:
                raise TLCPAlert(AlertDescription.handshake_failure, "client sent no certificate")
        else:
            certs = tuple(load_certificate(d) for d in ders)
            check_usage(certs[0], sign=True)
            # [sign, enc, chain...] from Tongsuo, [sign, chain...] from GmSSL: a CA cert in second place
            # is chain, not an enc certificate.
            if len(certs) > 1 and not certs[1].is_ca:
                check_usage(certs[1], sign=False)
                self._client_enc = certs[1]
            if ecdhe and self._client_enc is None:
                raise TLCPAlert(AlertDescription.handshake_failure, "ECDHE needs the client's enc certificate")
            self._verify_peer_chain(certs)
            self._client_certs = certs
        self._hash(msg)
        self._move(TlcpState.SERVER_WAIT_KEY_EXCHANGE)

    def _on_key_exchange(self, msg: RawHandshake) -> None:
        assert self.suite is not None
        if self.suite.key_exchange is KeyExchange.ECC:
            pre_master = self._decrypt_pre_master(ClientKeyExchangeECC.decode(msg.body).encrypted_pre_master)
        else:
            cke = ClientKeyExchangeECDHE.decode(msg.body)
            self._ecdhe_with_params = cke.with_params
            pre_master = self._ecdhe(cke.point)
        self._hash(msg)
        self._install_keys(keyschedule.master_secret(pre_master, self.client_random, self.server_random))
        self._move(TlcpState.SERVER_WAIT_CERT_VERIFY if self._client_certs else TlcpState.WAIT_CCS)

    def _decrypt_pre_master(self, ciphertext: bytes) -> bytes:
        # Whatever goes wrong, carry on with a random pre-master: the Finished check then fails the same
        # way as for a wrong key, and the peer learns nothing about why (RFC 5246 §7.4.7.1).
        fallback = self._random(PRE_MASTER_LEN)
        try:
            pre_master = self._creds.enc_key.decrypt(ciphertext)
        except CryptoError:
            return fallback
        good = len(pre_master) == PRE_MASTER_LEN and hmac.compare_digest(
            pre_master[:2], TLCP_VERSION.to_bytes(2, "big")
        )
        return pre_master if good else fallback

    def _ecdhe(self, point: bytes) -> bytes:
        assert self._ephemeral is not None and self._client_enc is not None
        try:
            peer_ephemeral = SM2PublicKey.from_point(point)
            return sm2_key_exchange(
                own_static=self._creds.enc_key,
                own_ephemeral=self._ephemeral,
                peer_static=self._client_enc.public_key,
                peer_ephemeral=peer_ephemeral,
                own_id=self.config.sm2_id,
                peer_id=self.config.sm2_id,
                initiator=True,
                klen=PRE_MASTER_LEN,
            )
        except CryptoError:
            raise TLCPAlert(AlertDescription.illegal_parameter, "client ECDHE point rejected") from None

    def _on_certificate_verify(self, msg: RawHandshake) -> None:
        signature = CertificateVerify.decode(msg.body).signature
        key = self._client_certs[0].public_key
        for form in (CertVerifyForm.SM3, CertVerifyForm.RAW):
            try:
                key.verify(signature, self._cert_verify_payload(form), self.config.sm2_id)
            except CryptoError:
                continue
            self._cv_form = form.value
            break
        else:
            raise TLCPAlert(AlertDescription.decrypt_error, "CertificateVerify signature does not verify")
        self._hash(msg)
        self._move(TlcpState.WAIT_CCS)

    def _on_finished(self, msg: RawHandshake) -> None:
        self._check_finished(msg)
        assert self.suite is not None
        if not self._resumed:
            self._send_ccs()
            self._send_finished()
            self.session = TlcpSession(
                self._session_id,
                self.suite.code,
                self._master,
                tuple(c.der for c in self._client_certs),
                self._now(),
                self._server_name,
            )
            if self.config.session_cache is not None and self._session_id:
                self.config.session_cache.put(self.session)
        assert self.session is not None
        self._move(TlcpState.ESTABLISHED)
        self._events.append(
            HandshakeComplete(
                self.suite,
                self.session,
                self._resumed,
                self._client_certs,
                self._server_name,
                self._cv_form,
                self._ecdhe_with_params,
            )
        )
