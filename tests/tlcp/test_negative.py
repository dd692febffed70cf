"""What a TLCP endpoint must refuse, and the alert it refuses it with."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.tlcp.alerts import AlertDescription, AlertLevel, TLCPAlert
from gateway.tlcp.client import ClientConnection
from gateway.tlcp.config import AlertStyle, ClientCertShape, Credentials
from gateway.tlcp.connection import TlcpState
from gateway.tlcp.events import AlertReceived, ApplicationData, CloseNotify, HandshakeComplete
from gateway.tlcp.keyschedule import TrafficKeys
from gateway.tlcp.messages import ClientHello, HandshakeType, NewSessionTicket, ServerHello, encode_handshake
from gateway.tlcp.record import MAX_PLAINTEXT, CbcProtection, ContentType
from gateway.tlcp.server import ServerConnection
from gateway.tlcp.suites import ALL_SUITES, ECC_SM4_CBC_SM3, ECC_SM4_GCM_SM3

from .peers import CLIENT, SERVER, cert, client_with_certs, connect, key, pump


def record(content_type: int, body: bytes, version: int = 0x0101) -> bytes:
    return bytes([content_type]) + version.to_bytes(2, "big") + len(body).to_bytes(2, "big") + body


def hello_record(**changes: object) -> bytes:
    hello = ClientHello(random=b"\x11" * 32, session_id=b"", cipher_suites=(0xE053,))
    hello = replace(hello, **changes)  # type: ignore[arg-type]
    return record(22, encode_handshake(HandshakeType.client_hello, hello.encode()))


def fresh_server(**changes: object) -> ServerConnection:
    server = ServerConnection(replace(SERVER, **changes))  # type: ignore[arg-type]
    server.start()
    return server


def refuses(conn, data: bytes, description: AlertDescription) -> bytes:
    with pytest.raises(TLCPAlert) as info:
        conn.receive_data(data)
    assert info.value.description == description and not info.value.remote
    assert conn.state is TlcpState.CLOSED
    sent = conn.data_to_send()
    assert sent[-2:] == bytes([AlertLevel.FATAL, description]) or sent[0] == ContentType.alert
    return sent


@pytest.mark.parametrize("suite", [ECC_SM4_CBC_SM3, ECC_SM4_GCM_SM3], ids=["cbc", "gcm"])
@pytest.mark.parametrize("where", [5, 20, -1])
def test_tampered_ciphertext_is_bad_record_mac(suite, where) -> None:
    client, server, _ce, _se = connect(replace(CLIENT, cipher_suites=(suite,)), SERVER)
    client.send_data(b"money-moving request")
    wire = bytearray(client.data_to_send())
    wire[where] ^= 0x01
    refuses(server, bytes(wire), AlertDescription.bad_record_mac)


def test_fatal_alert_is_encrypted_after_ccs_unless_configured_clear() -> None:
    client, server, _ce, _se = connect(CLIENT, SERVER)
    wire = bytearray(client.data_to_send() or b"")
    client.send_data(b"x")
    wire = bytearray(client.data_to_send())
    wire[-1] ^= 1
    sent = refuses(server, bytes(wire), AlertDescription.bad_record_mac)
    assert len(sent) > 7  # protected
    client, server, _ce, _se = connect(CLIENT, replace(SERVER, alerts=AlertStyle.CLEAR))
    client.send_data(b"x")
    wire = bytearray(client.data_to_send())
    wire[-1] ^= 1
    assert refuses(server, bytes(wire), AlertDescription.bad_record_mac) == record(21, b"\x02\x14")


def test_oversized_record_header_is_record_overflow() -> None:
    refuses(
        fresh_server(),
        b"\x16\x01\x01" + (MAX_PLAINTEXT + 2049).to_bytes(2, "big"),
        AlertDescription.record_overflow,
    )


def test_oversized_plaintext_record_is_record_overflow() -> None:
    refuses(fresh_server(), record(22, b"\x01" * (MAX_PLAINTEXT + 1)), AlertDescription.record_overflow)


def test_oversized_decrypted_record_is_record_overflow() -> None:
    client, server, _ce, _se = connect(replace(CLIENT, cipher_suites=(ECC_SM4_CBC_SM3,)), SERVER)
    # Seal a too-long plaintext with the client's real write keys, bypassing the fragmenting encoder.
    protection = client._records._write
    seq = client._records._write_seq
    fragment = protection.seal(seq, ContentType.application_data, b"a" * (MAX_PLAINTEXT + 1))
    refuses(server, record(23, fragment), AlertDescription.record_overflow)


def test_truncated_client_hello_is_decode_error() -> None:
    good = hello_record()
    body = good[5:]
    cut = body[:4] + body[4:-3]  # handshake length still claims the full body: more bytes must come
    broken = body[:1] + (len(cut) - 4).to_bytes(3, "big") + cut[4:]
    refuses(fresh_server(), record(22, broken), AlertDescription.decode_error)


def test_cbc_record_not_whole_blocks_is_bad_record_mac() -> None:
    protection = CbcProtection(TrafficKeys(b"m" * 32, b"k" * 16, b""))
    with pytest.raises(TLCPAlert) as info:
        protection.open(0, 23, b"\x00" * 65)
    assert info.value.description == AlertDescription.bad_record_mac


def test_unexpected_handshake_message() -> None:
    hello = ServerHello(random=b"\x22" * 32, session_id=b"", cipher_suite=0xE053)
    data = record(22, encode_handshake(HandshakeType.server_hello, hello.encode()))
    refuses(fresh_server(), data, AlertDescription.unexpected_message)
    client = ClientConnection(CLIENT)
    client.start()
    refuses(
        client,
        record(22, encode_handshake(HandshakeType.finished, b"\x00" * 12)),
        AlertDescription.unexpected_message,
    )


def test_application_data_before_handshake_is_unexpected() -> None:
    refuses(fresh_server(), record(23, b"GET /"), AlertDescription.unexpected_message)


def test_version_downgrade_is_protocol_version() -> None:
    refuses(fresh_server(), hello_record(version=0x0303), AlertDescription.protocol_version)
    refuses(
        fresh_server(),
        hello_record()[:1] + b"\x03\x03" + hello_record()[3:],
        AlertDescription.protocol_version,
    )
    client = ClientConnection(CLIENT)
    client.start()
    hello = ServerHello(random=b"\x22" * 32, session_id=b"", cipher_suite=0xE053, version=0x0303)
    data = record(22, encode_handshake(HandshakeType.server_hello, hello.encode()))
    refuses(client, data, AlertDescription.protocol_version)


def test_swapped_sign_and_enc_certificates_are_refused() -> None:
    swapped = Credentials(key("server_enc"), cert("server_enc"), key("server_sign"), cert("server_sign"))
    with pytest.raises(TLCPAlert) as info:
        connect(CLIENT, replace(SERVER, credentials=swapped))
    assert info.value.description == AlertDescription.bad_certificate


def test_unknown_ca_from_verifier() -> None:
    def reject(_certs) -> None:
        raise TLCPAlert(AlertDescription.unknown_ca, "not our CA")

    with pytest.raises(TLCPAlert) as info:
        connect(replace(CLIENT, verify_peer=reject), SERVER)
    assert info.value.description == AlertDescription.unknown_ca


def test_required_client_certificate_missing_is_handshake_failure() -> None:
    with pytest.raises(TLCPAlert) as info:
        connect(CLIENT, replace(SERVER, require_client_cert=True))
    assert info.value.description == AlertDescription.handshake_failure


def test_no_common_suite_is_handshake_failure() -> None:
    refuses(fresh_server(cipher_suites=(ECC_SM4_CBC_SM3,)), hello_record(), AlertDescription.handshake_failure)


def test_renegotiation_is_refused_and_the_session_survives() -> None:
    client, server, _ce, _se = connect(CLIENT, SERVER)
    client._send_handshake(HandshakeType.client_hello, ClientHello(b"\x33" * 32, b"", (0xE053,)).encode())
    ce, _se = pump(client, server)
    assert ce == [AlertReceived(AlertLevel.WARNING, AlertDescription.no_renegotiation)]
    assert server.state is TlcpState.ESTABLISHED and client.state is TlcpState.ESTABLISHED
    server.send_data(b"still here")
    ce, _se = pump(client, server)
    assert ce == [ApplicationData(b"still here")]


def test_empty_application_records_are_accepted() -> None:
    client, server, _ce, _se = connect(CLIENT, SERVER)
    client.send_data(b"")
    client.send_data(b"after empty")
    _ce, se = pump(client, server)
    assert se == [ApplicationData(b"after empty")]


def test_clear_close_notify_and_fatal_alerts_after_ccs_are_accepted() -> None:
    client, server, _ce, _se = connect(CLIENT, SERVER)
    assert client.receive_data(record(21, b"\x02\x00")) == [CloseNotify()]  # GmSSL 3.1.1's close
    assert client.state is TlcpState.CLOSED
    assert server.receive_data(client.data_to_send()) == [CloseNotify()]  # our answer, protected
    client, _server, _ce, _se = connect(CLIENT, SERVER)
    events = client.receive_data(record(21, b"\x02\x28"))
    assert events == [AlertReceived(AlertLevel.FATAL, AlertDescription.handshake_failure)]
    assert events[0].error().remote and client.state is TlcpState.CLOSED


class TicketingServer(ServerConnection):
    """Sends NewSessionTicket before its CCS, as Tongsuo does."""

    def _send_ccs(self) -> None:
        if self.state is TlcpState.WAIT_FINISHED:
            self._send_handshake(HandshakeType.new_session_ticket, NewSessionTicket(7200, b"t" * 100).encode())
        super()._send_ccs()


def test_new_session_ticket_before_ccs_is_hashed() -> None:
    client = ClientConnection(CLIENT)
    server = TicketingServer(SERVER)
    server.start()
    client.start()
    ce, se = pump(client, server)
    assert any(isinstance(e, HandshakeComplete) for e in ce)
    assert any(isinstance(e, HandshakeComplete) for e in se)


def test_every_suite_refuses_a_wrong_finished() -> None:
    for suite in ALL_SUITES:
        client = ClientConnection(client_with_certs(cipher_suites=(suite,)))
        server = ServerConnection(SERVER)
        server.start()
        client.start()
        server.receive_data(client.data_to_send())
        client.receive_data(server.data_to_send())
        flight = bytearray(client.data_to_send())
        # the last record is the encrypted Finished: break its MAC-protected body
        flight[-1] ^= 0x80
        with pytest.raises(TLCPAlert) as info:
            server.receive_data(bytes(flight))
        assert info.value.description == AlertDescription.bad_record_mac


def test_change_cipher_spec_before_key_exchange_is_unexpected() -> None:
    server = fresh_server()
    server.receive_data(hello_record())
    refuses(server, record(20, b"\x01"), AlertDescription.unexpected_message)


def test_sign_certificate_followed_by_its_ca_is_a_chain_not_an_enc_certificate() -> None:
    creds = replace(client_with_certs().credentials, chain=(cert("ca"),))
    ccfg = replace(client_with_certs(client_cert_shape=ClientCertShape.SIGN_ONLY), credentials=creds)
    _c, _s, _ce, se = connect(ccfg, replace(SERVER, require_client_cert=True))
    (done,) = [e for e in se if isinstance(e, HandshakeComplete)]
    assert [c.der for c in done.peer_certificates] == [cert("client_sign").der, cert("ca").der]


def test_sending_before_the_handshake_is_refused_locally() -> None:
    client = ClientConnection(CLIENT)
    client.start()
    with pytest.raises(TLCPAlert) as info:
        client.send_data(b"too early")
    assert info.value.description == AlertDescription.internal_error


def test_a_client_without_a_verifier_does_not_start() -> None:
    with pytest.raises(ValueError, match="verify_peer"):
        ClientConnection(replace(CLIENT, verify_peer=None))
    with pytest.raises(ValueError, match="verify_peer"):
        ServerConnection(replace(SERVER, verify_peer=None, request_client_cert=True))
    ClientConnection(replace(CLIENT, verify_peer=None, insecure_no_verify=True)).start()
