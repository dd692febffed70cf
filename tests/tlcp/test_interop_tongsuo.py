"""Our asyncio TLCP streams against Tongsuo (tongsuopy's bundled libssl) over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import replace

import pytest

from gateway.net.tlcp_stream import open_tlcp_connection, start_tlcp_server
from gateway.net.tlcp_transport import ca_names
from gateway.tlcp import CertVerifyForm, ClientCertShape
from gateway.tlcp.session import MemorySessionCache
from gateway.tlcp.suites import ALL_SUITES, CipherSuite, KeyExchange

from .peers import CA, CLIENT, SERVER, cert, client_with_certs
from .tongsuo_peer import run_client, run_server

SUITE_IDS = [s.name for s in ALL_SUITES]
TONGSUO_NAMES = {0xE013: "ECC-SM2-SM4-CBC-SM3", 0xE053: "ECC-SM2-SM4-GCM-SM3",
                 0xE011: "ECDHE-SM2-SM4-CBC-SM3", 0xE051: "ECDHE-SM2-SM4-GCM-SM3"}  # fmt: skip


MODES = ["server-auth", "optional", "required"]


def _client_certs(suite: CipherSuite, mode: str) -> bool:
    """Whether the client holds certificates: for a required client auth, and always for ECDHE (its enc key is
    part of the exchange); an optional request is answered without one."""
    return mode == "required" or suite.key_exchange is KeyExchange.ECDHE


@pytest.mark.parametrize("suite", ALL_SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("mode", MODES)
async def test_our_client_to_tongsuo_server(suite, mode) -> None:
    with_certs = _client_certs(suite, mode)
    asks = mode != "server-auth" or suite.key_exchange is KeyExchange.ECDHE
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    message = f"hello tongsuo over {suite.name}\n".encode() * 50
    peer = asyncio.create_task(
        asyncio.to_thread(
            run_server,
            listener,
            suite.code,
            len(message),
            verify_client=asks,
            require_client=mode == "required",
            ticket=True,
        )
    )
    cfg = client_with_certs(cipher_suites=(suite,)) if with_certs else replace(CLIENT, cipher_suites=(suite,))
    try:
        reader, writer = await open_tlcp_connection("127.0.0.1", port, config=cfg, timeout=10)
        assert writer.handshake.cipher_suite == suite
        auth = writer.handshake.client_auth
        assert auth is not None and auth.requested == asks
        if with_certs:  # the default shape (auto) reads Tongsuo's CertificateRequest: [sign, enc], as it demands
            assert (auth.shape, auth.form) == (ClientCertShape.SIGN_ENC, CertVerifyForm.SM3)
        else:
            assert auth.shape is None and auth.form is None
        writer.write(message)
        await writer.drain()
        echoed = await asyncio.wait_for(reader.readexactly(len(message)), 10)
        assert echoed == message
        assert await asyncio.wait_for(reader.read(), 10) == b""  # Tongsuo's close_notify
        writer.close()
        await writer.wait_closed()
        (result,) = await asyncio.wait_for(peer, 10)
    finally:
        listener.close()
    assert result.cipher == TONGSUO_NAMES[suite.code] and result.received == message


@pytest.mark.parametrize("suite", ALL_SUITES, ids=SUITE_IDS)
@pytest.mark.parametrize("mode", MODES)
async def test_tongsuo_client_to_our_server(suite, mode) -> None:
    mutual = _client_certs(suite, mode)
    seen = []

    async def echo(reader, writer) -> None:
        seen.append(writer.handshake)
        data = await reader.read(65536)
        writer.write(data)
        await writer.drain()

    # the CA list the daemon's callback listener sends (from its CA bundle)
    cfg = replace(
        SERVER,
        request_client_cert=mode != "server-auth",
        require_client_cert=mode == "required",
        client_ca_names=ca_names([CA]),
    )
    server = await start_tlcp_server(echo, "127.0.0.1", 0, config=cfg)
    port = server.sockets[0].getsockname()[1]
    message = f"hello ybgate over {suite.name}".encode()
    try:
        result = await asyncio.wait_for(asyncio.to_thread(run_client, port, suite.code, message, with_cert=mutual), 20)
    finally:
        server.close()
        await server.wait_closed()
    assert result.received == message and result.cipher == TONGSUO_NAMES[suite.code]
    (done,) = seen
    assert done.cipher_suite == suite
    if mutual:
        # Tongsuo sends [sign, enc] and appends the chain it can build from its CA store
        sign, enc = done.peer_certificates[:2]
        assert (sign.der, enc.der) == (cert("client_sign").der, cert("client_enc").der)
    else:
        assert done.peer_certificates == ()
    if suite.key_exchange is KeyExchange.ECDHE:
        assert done.peer_ecdhe_with_params is True


async def test_our_client_resumes_a_tongsuo_session() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    suite = ALL_SUITES[0]
    peer = asyncio.create_task(asyncio.to_thread(run_server, listener, suite.code, 5, connections=2))
    try:
        done = []
        session = None
        for _ in range(2):
            cfg = replace(CLIENT, cipher_suites=(suite,), session=session)
            reader, writer = await open_tlcp_connection("127.0.0.1", port, config=cfg, timeout=10)
            writer.write(b"hello")
            assert await asyncio.wait_for(reader.readexactly(5), 10) == b"hello"
            done.append(writer.handshake)
            session = writer.handshake.session
            writer.close()
            await writer.wait_closed()
        await asyncio.wait_for(peer, 10)
    finally:
        listener.close()
    assert [d.resumed for d in done] == [False, True]
    assert len(done[0].session.session_id) == 32 and done[1].session == done[0].session
    assert done[1].peer_certificates[0].der == cert("server_sign").der


async def test_tongsuo_client_resumes_against_our_server_cache() -> None:
    seen = []

    async def echo(reader, writer) -> None:
        seen.append(writer.handshake)
        writer.write(await reader.read(65536))
        await writer.drain()

    cache = MemorySessionCache(time.monotonic)
    server = await start_tlcp_server(echo, "127.0.0.1", 0, config=replace(SERVER, session_cache=cache))
    port = server.sockets[0].getsockname()[1]
    try:
        result = await asyncio.wait_for(asyncio.to_thread(run_client, port, 0xE053, b"twice", connections=2), 20)
    finally:
        server.close()
        await server.wait_closed()
    assert result.resumed and result.received == b"twice"
    assert [d.resumed for d in seen] == [False, True] and len(cache) == 1
