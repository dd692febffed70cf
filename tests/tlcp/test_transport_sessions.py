"""The upstream transport keeps a session per upstream and offers it again: real handshakes over loopback sockets
against our TLCP server, with and without a session cache, a clock the test moves, and a certificate rotation."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from gateway.app.demo import sim_tlcp_config
from gateway.crypto.testpki import generate_test_pki
from gateway.net.tlcp_stream import start_tlcp_server
from gateway.net.tlcp_transport import TlcpTransport
from gateway.net.transport import UpstreamTarget, UpstreamUnreachable
from gateway.tlcp import MemorySessionCache, TLCPConfig

from .peers import CLIENT, SERVER


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(await reader.read(100))
    await writer.drain()
    writer.close()


async def _serve(config: TLCPConfig) -> tuple[asyncio.Server, int]:
    server = await start_tlcp_server(_echo, "127.0.0.1", 0, config=config)
    return server, server.sockets[0].getsockname()[1]


@pytest_asyncio.fixture
async def cached_server() -> AsyncIterator[tuple[int, MemorySessionCache]]:
    cache = MemorySessionCache(lambda: 0.0)  # the server's cache never expires here: the client's lifetime decides
    server, port = await _serve(dataclasses.replace(SERVER, session_cache=cache))
    yield port, cache
    server.close()
    await server.wait_closed()


def _transport(
    lifetime: float, clock: Clock, seen: list[bool], config: TLCPConfig = CLIENT
) -> Callable[[int], tuple[TlcpTransport, UpstreamTarget]]:
    def make(port: int) -> tuple[TlcpTransport, UpstreamTarget]:
        t = TlcpTransport({"p": config}, {"p": lifetime}, clock=clock, on_handshake=lambda _, r: seen.append(r))
        return t, UpstreamTarget("p", "127.0.0.1", port)

    return make


async def _roundtrip(transport: TlcpTransport, target: UpstreamTarget) -> bool:
    reader, writer = await transport.open(target)
    writer.write(b"ping")
    assert await reader.read(100) == b"ping"
    writer.close()
    return writer.handshake.resumed  # type: ignore[attr-defined, no-any-return]


async def test_later_connections_resume_the_first_session(cached_server: tuple[int, MemorySessionCache]) -> None:
    port, cache = cached_server
    seen: list[bool] = []
    transport, target = _transport(300, Clock(), seen)(port)
    assert [await _roundtrip(transport, target) for _ in range(4)] == [False, True, True, True]
    assert seen == [False, True, True, True] and len(cache) == 1


async def test_a_session_is_not_offered_past_its_lifetime(cached_server: tuple[int, MemorySessionCache]) -> None:
    port, _ = cached_server
    clock, seen = Clock(), []
    transport, target = _transport(300, clock, seen)(port)
    await _roundtrip(transport, target)
    clock.now += 299
    assert await _roundtrip(transport, target)  # resumed: still inside the lifetime of the full handshake
    clock.now += 2  # 301 s after the full handshake: resuming has not extended it
    assert not await _roundtrip(transport, target)
    assert await _roundtrip(transport, target)  # the new full handshake's session is offered from now on


async def test_lifetime_zero_never_resumes(cached_server: tuple[int, MemorySessionCache]) -> None:
    port, _ = cached_server
    seen: list[bool] = []
    transport, target = _transport(0, Clock(), seen)(port)
    for _ in range(3):
        await _roundtrip(transport, target)
    assert seen == [False, False, False]


async def test_a_server_without_a_cache_gets_full_handshakes_and_nothing_is_kept() -> None:
    server, port = await _serve(SERVER)  # no session cache: an empty session id in every ServerHello
    try:
        seen: list[bool] = []
        transport, target = _transport(300, Clock(), seen)(port)
        for _ in range(3):
            await _roundtrip(transport, target)
        assert seen == [False, False, False] and transport._kept == {}
    finally:
        server.close()
        await server.wait_closed()


async def test_new_settings_after_a_rotation_start_from_a_full_handshake(
    cached_server: tuple[int, MemorySessionCache],
) -> None:
    port, _ = cached_server
    transport, target = _transport(300, Clock(), [])(port)
    await _roundtrip(transport, target)
    assert await _roundtrip(transport, target)
    # What Daemon.reload_identity does: new settings objects (new identity, roots, pins) for new connections.
    transport.configs = {"p": dataclasses.replace(CLIENT)}
    assert not await _roundtrip(transport, target)
    assert await _roundtrip(transport, target)


async def test_a_failed_handshake_forgets_the_session(
    cached_server: tuple[int, MemorySessionCache], tmp_path: Path
) -> None:
    port, _ = cached_server
    transport, target = _transport(300, Clock(), [])(port)
    await _roundtrip(transport, target)
    # The same upstream name now answers with a certificate from another CA: the offered session is unknown
    # there, the full handshake fails our check, and nothing sent.
    other_pki = generate_test_pki(tmp_path / "other")["ca"].parent
    impostor, other_port = await _serve(sim_tlcp_config(other_pki))
    try:
        with pytest.raises(UpstreamUnreachable, match="TLCP handshake failed"):
            await transport.open(dataclasses.replace(target, port=other_port))
    finally:
        impostor.close()
        await impostor.wait_closed()
    assert transport._kept == {}
    assert not await _roundtrip(transport, target)  # back at the real server: a full handshake first


async def test_a_silent_peer_forgets_the_session_too(cached_server: tuple[int, MemorySessionCache]) -> None:
    port, _ = cached_server
    transport, target = _transport(300, Clock(), [])(port)
    await _roundtrip(transport, target)

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # takes the ClientHello with the offered session and never answers
        writer.close()

    silent = await asyncio.start_server(mute, "127.0.0.1", 0)
    try:
        stalled = dataclasses.replace(target, port=silent.sockets[0].getsockname()[1], connect_timeout=0.3)
        with pytest.raises(UpstreamUnreachable, match=r"took over 0\.3s"):
            await transport.open(stalled)
    finally:
        silent.close()
        await silent.wait_closed()
    assert transport._kept == {}
