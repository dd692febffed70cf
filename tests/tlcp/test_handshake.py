"""Our client against our server, in memory: every suite, with and without client authentication."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gateway.tlcp.alerts import AlertDescription, TLCPAlert
from gateway.tlcp.client import ClientConnection
from gateway.tlcp.config import CertVerifyForm, ClientCertShape
from gateway.tlcp.connection import TlcpState
from gateway.tlcp.events import ApplicationData, CloseNotify, HandshakeComplete
from gateway.tlcp.server import ServerConnection
from gateway.tlcp.session import MemorySessionCache
from gateway.tlcp.suites import ALL_SUITES, KeyExchange

from .peers import CLIENT, SERVER, client_with_certs, connect, pump

SUITE_IDS = [s.name for s in ALL_SUITES]


def only(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


@pytest.mark.parametrize("suite", ALL_SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("client_auth", [False, True], ids=["server-auth", "mutual"])
def test_full_handshake_and_data_both_ways(suite, client_auth) -> None:
    if suite.key_exchange is KeyExchange.ECDHE and not client_auth:
        # ECDHE always authenticates the client (its enc key is in the exchange): no certificates, no deal
        with pytest.raises(TLCPAlert) as info:
            connect(replace(CLIENT, cipher_suites=(suite,)), SERVER)
        assert info.value.description == AlertDescription.handshake_failure
        return
    ccfg = client_with_certs(cipher_suites=(suite,)) if client_auth else replace(CLIENT, cipher_suites=(suite,))
    scfg = replace(SERVER, request_client_cert=client_auth, require_client_cert=client_auth)
    client, server, ce, se = connect(ccfg, scfg)
    (c_done,) = only(ce, HandshakeComplete)
    (s_done,) = only(se, HandshakeComplete)
    assert c_done.cipher_suite == s_done.cipher_suite == suite
    assert c_done.session.master_secret == s_done.session.master_secret
    assert len(c_done.peer_certificates) == 2
    assert len(s_done.peer_certificates) == (2 if client_auth else 0)
    assert s_done.peer_cert_verify_form == ("sm3" if client_auth else None)
    big = bytes(range(256)) * 100  # 25.6 KB: two records
    client.send_data(b"ping")
    server.send_data(big)
    ce, se = pump(client, server)
    assert b"".join(e.data for e in only(se, ApplicationData)) == b"ping"
    assert b"".join(e.data for e in only(ce, ApplicationData)) == big
    client.close()
    ce, se = pump(client, server)
    assert only(se, CloseNotify) and only(ce, CloseNotify)
    assert client.state is TlcpState.CLOSED and server.state is TlcpState.CLOSED


@pytest.mark.parametrize("suite", ALL_SUITES, ids=SUITE_IDS)
def test_byte_at_a_time(suite) -> None:
    _c, _s, ce, se = connect(client_with_certs(cipher_suites=(suite,)), SERVER, chunk=1)
    assert only(ce, HandshakeComplete) and only(se, HandshakeComplete)


def test_gmssl_shapes_sign_only_certificate_and_raw_cert_verify() -> None:
    ccfg = client_with_certs(
        cipher_suites=(ALL_SUITES[0],),
        client_cert_shape=ClientCertShape.SIGN_ONLY,
        cert_verify_form=CertVerifyForm.RAW,
    )
    _c, _s, _ce, se = connect(ccfg, replace(SERVER, require_client_cert=True))
    (done,) = only(se, HandshakeComplete)
    assert len(done.peer_certificates) == 1
    assert done.peer_cert_verify_form == "raw"


def test_sni_is_sent_only_when_configured() -> None:
    _c, _s, _ce, se = connect(replace(CLIENT, server_name="yb.example"), SERVER)
    assert only(se, HandshakeComplete)[0].server_name == "yb.example"
    _c, _s, _ce, se = connect(CLIENT, SERVER)
    assert only(se, HandshakeComplete)[0].server_name is None


def test_resumption_by_session_id() -> None:
    clock = [1000.0]
    cache = MemorySessionCache(lambda: clock[0], lifetime=60)
    scfg = replace(SERVER, session_cache=cache)
    _c, _s, ce, _se = connect(CLIENT, scfg)
    first = only(ce, HandshakeComplete)[0]
    assert not first.resumed and len(first.session.session_id) == 32 and len(cache) == 1
    client, server, ce, se = connect(replace(CLIENT, session=first.session), scfg)
    assert only(ce, HandshakeComplete)[0].resumed and only(se, HandshakeComplete)[0].resumed
    client.send_data(b"again")
    _ce, se = pump(client, server)
    assert only(se, ApplicationData)[0].data == b"again"
    clock[0] += 61  # expired: a full handshake again
    _c, _s, ce, _se = connect(replace(CLIENT, session=first.session), scfg)
    assert not only(ce, HandshakeComplete)[0].resumed


def test_handshake_messages_split_across_and_coalesced_in_records() -> None:
    """Records and messages do not line up one to one: a peer may split or coalesce them."""
    client = ClientConnection(CLIENT)
    server = ServerConnection(SERVER)
    server.start()
    client.start()
    hello = client.data_to_send()[5:]  # the ClientHello handshake message, without its record header
    for part in (hello[:3], hello[3:40], hello[40:]):
        assert server.receive_data(b"\x16\x01\x01" + len(part).to_bytes(2, "big") + part) == []
    flight = server.data_to_send()
    # re-frame the server's first flight (one record per message) as a single record
    messages, pos = b"", 0
    while pos < len(flight):
        length = int.from_bytes(flight[pos + 3 : pos + 5], "big")
        messages += flight[pos + 5 : pos + 5 + length]
        pos += 5 + length
    client.receive_data(b"\x16\x01\x01" + len(messages).to_bytes(2, "big") + messages)
    ce, se = pump(client, server)
    assert only(ce, HandshakeComplete) and only(se, HandshakeComplete)
