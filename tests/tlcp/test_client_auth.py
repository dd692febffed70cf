"""Client authentication as the client reports it, and the endings a handshake can have (sans-IO)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.tlcp.alerts import AlertDescription, AlertLevel
from gateway.tlcp.client import ClientConnection
from gateway.tlcp.config import AlertStyle, CertVerifyForm, ClientCertShape
from gateway.tlcp.connection import TlcpState
from gateway.tlcp.events import AlertReceived, CloseNotify, HandshakeComplete
from gateway.tlcp.messages import CertificateRequest
from gateway.tlcp.server import ServerConnection
from gateway.tlcp.session import TlcpSession
from gateway.tlcp.suites import ECC_SM4_CBC_SM3, ECC_SM4_GCM_SM3, ECDHE_SM4_CBC_SM3

from .peers import CLIENT, SERVER, client_with_certs, connect, pump

CLEAR_CLOSE_NOTIFY = bytes([21, 1, 1, 0, 2, AlertLevel.FATAL, AlertDescription.close_notify])


def done_of(events: list) -> HandshakeComplete:
    (done,) = [e for e in events if isinstance(e, HandshakeComplete)]
    return done


def test_client_with_certificates_reports_that_the_server_never_asked() -> None:
    _c, _s, ce, _se = connect(client_with_certs(), SERVER)
    auth = done_of(ce).client_auth
    assert auth is not None
    assert not auth.requested and auth.shape is None and auth.form is None


def test_client_reports_what_it_sent_when_asked() -> None:
    ccfg = client_with_certs(cipher_suites=(ECC_SM4_GCM_SM3,), cert_verify_form=CertVerifyForm.RAW)
    _c, _s, ce, se = connect(ccfg, replace(SERVER, require_client_cert=True))
    auth = done_of(ce).client_auth
    assert auth is not None and auth.requested
    assert auth.certificate_types == CertificateRequest().certificate_types
    assert auth.shape is ClientCertShape.SIGN_ENC and auth.form is CertVerifyForm.RAW
    assert done_of(se).peer_cert_verify_form == "raw"


def test_auto_shape_sends_sign_only_to_a_server_asking_the_gmssl_way() -> None:
    gmssl_like = CertificateRequest(certificate_types=b"\x40")
    client = ClientConnection(client_with_certs(cipher_suites=(ECC_SM4_CBC_SM3,)))
    server = ServerConnection(replace(SERVER, require_client_cert=True))
    # Our server asks the Tongsuo way; rewrite its request to GmSSL's (a GmSSL server is not available here).
    server._send_handshake = _rewrite_request(server, gmssl_like)  # type: ignore[method-assign]
    server.start()
    client.start()
    _ce, se = pump(client, server)
    assert client.client_auth.shape is ClientCertShape.SIGN_ONLY
    assert len(done_of(se).peer_certificates) == 1


def _rewrite_request(server: ServerConnection, request: CertificateRequest):
    original = server._send_handshake

    def send(msg_type, body):
        if msg_type.name == "certificate_request":
            body = request.encode()
        original(msg_type, body)

    return send


def test_ecdhe_sends_sign_and_enc_whatever_the_shape_setting() -> None:
    ccfg = client_with_certs(cipher_suites=(ECDHE_SM4_CBC_SM3,), client_cert_shape=ClientCertShape.SIGN_ONLY)
    _c, _s, ce, se = connect(ccfg, SERVER)
    assert done_of(ce).client_auth.shape is ClientCertShape.SIGN_ENC  # type: ignore[union-attr]
    assert len(done_of(se).peer_certificates) == 2


def test_a_session_with_an_empty_id_is_not_offered_nor_taken_for_a_resumption() -> None:
    # A server without a session cache answers with an empty id; an offered empty id must not make that a
    # resumption (the old code then took the server's Certificate for an unexpected message).
    empty = TlcpSession(b"", ECC_SM4_CBC_SM3.code, b"\x11" * 48)
    client, _s, ce, _se = connect(replace(CLIENT, session=empty), SERVER)
    done = done_of(ce)
    assert not done.resumed
    assert client.state is TlcpState.ESTABLISHED


def test_an_empty_server_session_id_never_resumes_an_offered_session() -> None:
    offered = TlcpSession(b"\x01" * 32, ECC_SM4_CBC_SM3.code, b"\x11" * 48)
    _c, _s, ce, _se = connect(replace(CLIENT, session=offered), SERVER)
    assert not done_of(ce).resumed


@pytest.mark.parametrize("level", [AlertLevel.WARNING, AlertLevel.FATAL])
def test_close_notify_during_the_handshake_ends_it(level: AlertLevel) -> None:
    client = ClientConnection(CLIENT)
    client.start()
    client.data_to_send()
    events = client.receive_data(bytes([21, 1, 1, 0, 2, level, AlertDescription.close_notify]))
    assert events == [AlertReceived(level, AlertDescription.close_notify)]
    assert client.state is TlcpState.CLOSED
    error = events[0].error()
    assert error.remote and error.description == AlertDescription.close_notify


def test_auto_alerts_turn_clear_once_the_peer_sends_one_in_the_clear() -> None:
    client, _server, _ce, _se = connect(CLIENT, SERVER)
    assert not client.peer_sends_clear_alerts
    # GmSSL 3.1.1 closes with a clear, fatal close_notify even after CCS
    events = client.receive_data(CLEAR_CLOSE_NOTIFY)
    assert events == [CloseNotify()]
    assert client.peer_sends_clear_alerts
    assert client.data_to_send() == bytes([21, 1, 1, 0, 2, AlertLevel.WARNING, AlertDescription.close_notify])


def test_encrypted_alerts_stay_encrypted_when_configured() -> None:
    client, _s, _ce, _se = connect(replace(CLIENT, alerts=AlertStyle.ENCRYPTED), SERVER)
    client.receive_data(CLEAR_CLOSE_NOTIFY)
    answer = client.data_to_send()
    assert answer[0] == 21 and len(answer) > 7  # a sealed record, not the 2 clear bytes


def test_clear_alerts_when_configured_from_the_start() -> None:
    client, _server, _ce, _se = connect(replace(CLIENT, alerts=AlertStyle.CLEAR), SERVER)
    client.close()
    assert client.data_to_send() == bytes([21, 1, 1, 0, 2, AlertLevel.WARNING, AlertDescription.close_notify])
