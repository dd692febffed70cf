"""The asyncio adapter with our own client and server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from dataclasses import replace
from typing import Any

import pytest

from gateway.http1.client import NoResponse, encode_request, exchange
from gateway.net.tlcp_stream import TunnelBroken, open_tlcp_connection, start_tlcp_server
from gateway.tlcp.alerts import AlertDescription, TLCPAlert

from .peers import CLIENT, SERVER, client_with_certs


async def test_request_reply_and_clean_close() -> None:
    async def upper(reader, writer) -> None:
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()

    server = await start_tlcp_server(upper, "127.0.0.1", 0, config=replace(SERVER, require_client_cert=True))
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await open_tlcp_connection("127.0.0.1", port, config=client_with_certs(), timeout=5)
        for line in (b"first\n", b"x" * 40000 + b"\n"):
            writer.write(line)
            await writer.drain()
            assert await asyncio.wait_for(reader.readline(), 5) == line.upper()
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


async def test_refused_server_certificate_raises_the_alert() -> None:
    called = []

    async def handler(reader, writer) -> None:
        called.append(True)

    def reject(_certs) -> None:
        raise TLCPAlert(AlertDescription.unknown_ca, "pinned to another CA")

    server = await start_tlcp_server(handler, "127.0.0.1", 0, config=SERVER)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TLCPAlert) as info:
            await open_tlcp_connection("127.0.0.1", port, config=replace(CLIENT, verify_peer=reject), timeout=5)
        assert info.value.description == AlertDescription.unknown_ca
    finally:
        server.close()
        await server.wait_closed()
    assert called == []


async def test_handshake_timeout_against_a_silent_server() -> None:
    async def silent(reader, writer) -> None:
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TimeoutError):
            await open_tlcp_connection("127.0.0.1", port, config=CLIENT, timeout=0.3)
    finally:
        server.close()
        await server.wait_closed()


async def test_close_notify_during_the_handshake_ends_it_at_once() -> None:
    # A peer that takes the ClientHello, answers with close_notify and keeps the socket open: the handshake
    # ends on the alert (the old code waited for the rest of the handshake until the timeout).
    got_hello = asyncio.Event()

    async def closer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(5)
        got_hello.set()
        writer.write(bytes([21, 1, 1, 0, 2, 1, 0]))  # warning close_notify, in the clear
        await writer.drain()
        await reader.read()  # hold the connection until the client leaves

    server = await asyncio.start_server(closer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(TLCPAlert) as info:
            await open_tlcp_connection("127.0.0.1", port, config=CLIENT, timeout=60)
        assert info.value.remote and info.value.description == AlertDescription.close_notify
        assert got_hello.is_set()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_connection_the_kernel_ends_is_heard_by_the_reader_at_once() -> None:
    """A reset (or the kernel's ETIMEDOUT under TCP_USER_TIMEOUT, on a silent drop) on the raw socket reaches
    whoever reads the TLCP stream at once. The old pump died with the error and the reader waited for data that
    could never come, until its deadline: a query on a dead kept connection waited half the HIS's deadline."""

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer._raw.transport.abort()  # type: ignore[attr-defined]  # a reset, not a TLCP close

    server = await start_tlcp_server(reset, "127.0.0.1", 0, config=replace(SERVER, require_client_cert=True))
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await open_tlcp_connection("127.0.0.1", port, config=client_with_certs(), timeout=5)
        writer.write(b"request\n")
        await writer.drain()
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.readline(), 5)
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_stream_the_peer_closed_refuses_a_write_as_nothing_sent() -> None:
    # A keep-alive tunnel the platform closed while idle: the write finds the stream ended. The old code raised the
    # core's TLCPAlert out of the HTTP exchange (a "tlcp" failure nobody resolved); it is a connection that gave
    # no response, which the forwarder retries fresh when the connection was a reused one.
    async def close_at_once(reader: asyncio.StreamReader, writer: Any) -> None:
        writer.close()

    server = await start_tlcp_server(close_at_once, "127.0.0.1", 0, config=SERVER)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await open_tlcp_connection("127.0.0.1", port, config=CLIENT, timeout=5)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the peer's close_notify
        with pytest.raises(NoResponse, match="before the request was sent"):
            await exchange(reader, writer, encode_request("POST", "platform", "/", [], b"{}"))
        writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_a_fatal_alert_on_an_open_stream_reaches_the_reader_as_a_broken_connection() -> None:
    async def alert_at_once(reader: asyncio.StreamReader, writer: Any) -> None:
        await reader.readline()
        os.write(writer.get_extra_info("socket").fileno(), bytes([21, 1, 1, 0, 2, 2, 80]))  # internal_error, clear

    server = await start_tlcp_server(alert_at_once, "127.0.0.1", 0, config=SERVER)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await open_tlcp_connection("127.0.0.1", port, config=CLIENT, timeout=5)
        writer.write(b"hello\n")
        with pytest.raises(TunnelBroken) as info:
            await asyncio.wait_for(reader.read(), 5)
        assert isinstance(info.value, ConnectionError)
        assert info.value.alert.remote and info.value.alert.description == AlertDescription.internal_error
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
