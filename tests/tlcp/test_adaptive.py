"""Client authentication found per upstream and remembered (net/tlcp_adaptive), over real loopback sockets.

GmSSL 3.2.0 servers (which verify only the raw CertificateVerify form) cannot run in CI: a server that refuses the
SM3 form stands in for one here (our ServerConnection with that one check changed, patched into the stream
adapter). The real GmSSL 3.1.1 / 3.2.0 peers are covered by the recorded transcripts (test_kat_replay.py); Tongsuo
runs for real below.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import socket
from typing import ClassVar

import pytest

from gateway.crypto import CryptoError
from gateway.net import tlcp_stream
from gateway.net.tlcp_adaptive import AuthChoice, AutoSettings, UpstreamMemory, open_adaptive
from gateway.net.tlcp_stream import start_tlcp_server
from gateway.net.tlcp_transport import TlcpTransport
from gateway.net.transport import UpstreamTarget, UpstreamUnreachable
from gateway.tlcp import AlertDescription, AlertStyle, CertVerifyForm, ClientCertShape, TLCPAlert
from gateway.tlcp.connection import TlcpState
from gateway.tlcp.messages import CertificateVerify, RawHandshake
from gateway.tlcp.server import ServerConnection
from gateway.tlcp.suites import ECC_SM4_GCM_SM3

from .peers import SERVER, client_with_certs
from .tongsuo_peer import TongsuoError, run_server

SM3_ENC = AuthChoice(ClientCertShape.SIGN_ENC, CertVerifyForm.SM3)
RAW_ENC = AuthChoice(ClientCertShape.SIGN_ENC, CertVerifyForm.RAW)
SM3_SIGN = AuthChoice(ClientCertShape.SIGN_ONLY, CertVerifyForm.SM3)
RAW_SIGN = AuthChoice(ClientCertShape.SIGN_ONLY, CertVerifyForm.RAW)


class RawOnlyServer(ServerConnection):
    """Verifies the CertificateVerify over the raw handshake messages only, as GmSSL 3.2.0 does."""

    handshakes: ClassVar[list[str | None]] = []

    def _on_certificate_verify(self, msg: RawHandshake) -> None:
        signature = CertificateVerify.decode(msg.body).signature
        payload = self._cert_verify_payload(CertVerifyForm.RAW)
        try:
            self._client_certs[0].public_key.verify(signature, payload, self.config.sm2_id)
        except CryptoError:
            RawOnlyServer.handshakes.append(None)
            raise TLCPAlert(AlertDescription.decrypt_error, "CertificateVerify signature does not verify") from None
        RawOnlyServer.handshakes.append("raw")
        self._hash(msg)
        self._move(TlcpState.WAIT_CCS)


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read(100))
    await writer.drain()


@pytest.fixture
def raw_only(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    monkeypatch.setattr(tlcp_stream, "ServerConnection", RawOnlyServer)
    RawOnlyServer.handshakes = []
    return RawOnlyServer.handshakes


async def _serve() -> tuple[asyncio.Server, int]:
    server = await start_tlcp_server(
        _echo, "127.0.0.1", 0, config=dataclasses.replace(SERVER, require_client_cert=True)
    )
    return server, server.sockets[0].getsockname()[1]


def _learning_transport(port: int) -> tuple[TlcpTransport, UpstreamTarget, list[tuple[str, AuthChoice]]]:
    learned: list[tuple[str, AuthChoice]] = []
    transport = TlcpTransport(
        {"p": client_with_certs()}, on_learned=lambda name, choice: learned.append((name, choice))
    )
    target = UpstreamTarget(name="p", host="127.0.0.1", port=port, role="primary", connect_timeout=10)
    return transport, target, learned


async def test_transport_finds_the_raw_form_and_uses_it_first_from_then_on(raw_only) -> None:
    server, port = await _serve()
    transport, target, learned = _learning_transport(port)
    try:
        for _ in range(2):
            reader, writer = await transport.open(target)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.read(100), 10) == b"ping"
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    # first open: SM3 refused, raw accepted; second open: raw at once
    assert raw_only == [None, "raw", "raw"]
    assert learned == [("p", RAW_ENC)]
    assert transport.memories["p"].choice == RAW_ENC


async def test_a_configured_form_is_not_second_guessed(raw_only) -> None:
    server, port = await _serve()
    memory = UpstreamMemory()
    try:
        with pytest.raises(TLCPAlert):
            await open_adaptive(
                "127.0.0.1", port, config=client_with_certs(), memory=memory, auto=AutoSettings(form=False)
            )
    finally:
        server.close()
        await server.wait_closed()
    # the shape was left to find, so it was tried both ways; the form never changed
    assert memory.tried == [SM3_ENC, SM3_SIGN]
    assert raw_only == [None, None]
    assert memory.choice is None


async def test_a_refusal_before_we_authenticated_is_not_retried() -> None:
    # the server's certificate is not trusted: no client certificate went out, another form would not help
    server, port = await _serve()
    memory = UpstreamMemory()

    def distrust(_certs) -> None:
        raise TLCPAlert(AlertDescription.unknown_ca, "not ours")

    try:
        with pytest.raises(TLCPAlert) as info:
            await open_adaptive(
                "127.0.0.1", port, config=client_with_certs(verify_peer=distrust), memory=memory, timeout=10
            )
    finally:
        server.close()
        await server.wait_closed()
    assert info.value.description == AlertDescription.unknown_ca
    assert memory.tried == []


def _tongsuo_attempts(listener: socket.socket, attempts: int) -> list[bool]:
    """One Tongsuo server context per attempt (run_server stops at the first failed accept)."""
    outcomes = []
    for _ in range(attempts):
        try:
            run_server(listener, ECC_SM4_GCM_SM3.code, 4, verify_client=True)
            outcomes.append(True)
        except TongsuoError:
            outcomes.append(False)
    return outcomes


async def test_a_remembered_choice_a_tongsuo_server_refuses_is_replaced() -> None:
    # An upstream remembered as GmSSL 3.2.0 ([sign], raw) is now a Tongsuo server, which demands [sign, enc] and
    # the SM3 form: the search starts again from the configuration (auto: [sign, enc] from Tongsuo's request).
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    peer = asyncio.create_task(asyncio.to_thread(_tongsuo_attempts, listener, 2))
    memory = UpstreamMemory(choice=RAW_SIGN)
    learned: list[AuthChoice] = []
    cfg = client_with_certs(cipher_suites=(ECC_SM4_GCM_SM3,))
    try:
        reader, writer = await open_adaptive(
            "127.0.0.1", port, config=cfg, memory=memory, timeout=10, on_learned=learned.append
        )
        writer.write(b"ping")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
        writer.close()
        await writer.wait_closed()
        outcomes = await asyncio.wait_for(peer, 30)
    finally:
        listener.close()
        if not peer.done():
            peer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await peer
    assert memory.tried == [RAW_SIGN, SM3_ENC]
    assert outcomes == [False, True]
    assert memory.choice == SM3_ENC and learned == [SM3_ENC]


async def test_transport_reports_an_upstream_refusing_every_form_as_unreachable(raw_only) -> None:
    server, port = await _serve()
    transport = TlcpTransport(
        {"p": client_with_certs(cert_verify_form=CertVerifyForm.SM3)}, auto={"p": AutoSettings(form=False, shape=False)}
    )
    target = UpstreamTarget(name="p", host="127.0.0.1", port=port, role="primary", connect_timeout=10)
    try:
        with pytest.raises(UpstreamUnreachable, match="TLCP handshake failed"):
            await transport.open(target)
    finally:
        server.close()
        await server.wait_closed()
    assert raw_only == [None]


async def test_an_upstream_that_sends_clear_alerts_gets_clear_alerts_from_the_next_connection_on() -> None:
    # A server that sends its alerts in the clear after CCS, as GmSSL 3.1.1 does (ours, told to).
    seen: list[bool] = []
    watched = asyncio.Event()

    async def close_first(reader: asyncio.StreamReader, writer) -> None:
        await reader.read(4)
        writer.close()  # our server's close_notify, in the clear
        await writer.wait_closed()

    async def watch(reader: asyncio.StreamReader, writer) -> None:
        assert await reader.read() == b""  # the client's close_notify
        seen.append(writer._conn.peer_sends_clear_alerts)
        watched.set()

    memory = UpstreamMemory()
    for handler, expect_clear in ((close_first, None), (watch, True)):
        config = dataclasses.replace(SERVER, alerts=AlertStyle.CLEAR)
        server = await start_tlcp_server(handler, "127.0.0.1", 0, config=config)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await open_adaptive("127.0.0.1", port, config=client_with_certs(), memory=memory)
            if expect_clear is None:
                writer.write(b"ping")
                assert await asyncio.wait_for(reader.read(), 10) == b""  # the clear close_notify arrived
                assert memory.clear_alerts
            writer.close()
            await writer.wait_closed()
            if expect_clear:
                await asyncio.wait_for(watched.wait(), 10)
        finally:
            server.close()
            await server.wait_closed()
    assert seen == [True]  # the second connection's own close_notify went out in the clear


async def test_concurrent_opens_each_search_and_the_finding_is_counted_once(raw_only) -> None:
    server, port = await _serve()
    transport, target, learned = _learning_transport(port)
    try:
        opened = await asyncio.gather(*(transport.open(target) for _ in range(3)))
        for _reader, writer in opened:
            writer.close()
            await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()
    assert raw_only.count("raw") == 3
    assert learned == [("p", RAW_ENC)] and transport.memories["p"].choice == RAW_ENC
