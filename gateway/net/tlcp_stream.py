"""asyncio streams over the sans-IO TLCP core: ``open_tlcp_connection`` and ``start_tlcp_server``.

The reader is a plain :class:`asyncio.StreamReader` fed with decrypted application data; the writer
encrypts on ``write``. During the handshake a failure raises :class:`~gateway.tlcp.alerts.TLCPAlert`; once the
stream is open, a fatal alert (ours or the peer's) reaches its reader and writer as :class:`TunnelBroken`, a
ConnectionError, because that is what it means to whoever speaks HTTP over the stream: the connection ended, in the
middle of whatever it carried. The peer's close_notify is EOF.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.tlcp.alerts import AlertDescription, TLCPAlert
from gateway.tlcp.client import ClientConnection
from gateway.tlcp.config import TLCPConfig
from gateway.tlcp.connection import Connection
from gateway.tlcp.events import AlertReceived, ApplicationData, CloseNotify, Event, HandshakeComplete
from gateway.tlcp.server import ServerConnection

READ_SIZE = 65536
Handler = Callable[[asyncio.StreamReader, "TLCPStreamWriter"], Awaitable[None]]


class TunnelBroken(ConnectionError):
    """An open TLCP stream ended by a fatal alert; ``alert`` is which one, and whose."""

    def __init__(self, alert: TLCPAlert) -> None:
        super().__init__(f"TLCP tunnel broken: {alert.message}")
        self.alert = alert


class TLCPStreamWriter:
    """The writing half; ``handshake`` holds the completed handshake (suite, session, peer certificates)."""

    def __init__(self, conn: Connection, raw_writer: asyncio.StreamWriter, handshake: HandshakeComplete) -> None:
        self._conn = conn
        self._raw = raw_writer
        self.handshake = handshake
        self._pump: asyncio.Task[None] | None = None

    def write(self, data: bytes) -> None:
        try:
            self._conn.send_data(data)
        except TLCPAlert as exc:  # the stream ended (an alert, the peer's close): nothing of `data` went out
            raise TunnelBroken(exc) from None
        self._raw.write(self._conn.data_to_send())

    async def drain(self) -> None:
        await self._raw.drain()

    def close(self) -> None:
        self._conn.close()
        with contextlib.suppress(ConnectionError, RuntimeError):
            self._raw.write(self._conn.data_to_send())
        self._raw.close()

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    async def wait_closed(self) -> None:
        with contextlib.suppress(ConnectionError):
            await self._raw.wait_closed()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._raw.get_extra_info(name, default)


async def _handshake(
    conn: Connection, raw_reader: asyncio.StreamReader, raw_writer: asyncio.StreamWriter
) -> tuple[HandshakeComplete, list[Event]]:
    raw_writer.write(conn.data_to_send())
    while True:
        await raw_writer.drain()
        data = await raw_reader.read(READ_SIZE)
        if not data:
            raise TLCPAlert(AlertDescription.handshake_failure, "peer closed during the handshake", remote=True)
        try:
            events = conn.receive_data(data)
        finally:
            raw_writer.write(conn.data_to_send())
        for i, event in enumerate(events):
            if isinstance(event, HandshakeComplete):
                await raw_writer.drain()
                return event, events[i + 1 :]
            if isinstance(event, AlertReceived):
                raise event.error()  # a close_notify too: the peer gave up on the handshake


def _deliver(events: list[Event], reader: asyncio.StreamReader) -> bool:
    """Hand events to the reader; False once the stream has ended."""
    for event in events:
        if isinstance(event, ApplicationData):
            reader.feed_data(event.data)
        elif isinstance(event, CloseNotify):
            reader.feed_eof()
            return False
        elif isinstance(event, AlertReceived) and event.fatal:
            reader.set_exception(TunnelBroken(event.error()))
            return False
    return True


async def _pump(
    conn: Connection,
    raw_reader: asyncio.StreamReader,
    raw_writer: asyncio.StreamWriter,
    reader: asyncio.StreamReader,
    on_clear_alerts: Callable[[], None] | None,
) -> None:
    while True:
        try:
            data = await raw_reader.read(READ_SIZE)
        except OSError as exc:
            # The kernel gave up on the connection (TCP_USER_TIMEOUT, keepalive) or it was reset: whoever reads
            # must hear it now, not at its deadline.
            reader.set_exception(exc)
            return
        if not data:
            reader.feed_eof()
            return
        try:
            events = conn.receive_data(data)
        except TLCPAlert as exc:
            reader.set_exception(TunnelBroken(exc))
            with contextlib.suppress(ConnectionError, RuntimeError):
                raw_writer.write(conn.data_to_send())
                raw_writer.close()
            return
        if on_clear_alerts is not None and conn.peer_sends_clear_alerts:
            on_clear_alerts()
            on_clear_alerts = None
        out = conn.data_to_send()
        if out:
            with contextlib.suppress(ConnectionError, RuntimeError):
                raw_writer.write(out)
        if not _deliver(events, reader):
            return


async def _wrap(
    conn: Connection,
    raw_reader: asyncio.StreamReader,
    raw_writer: asyncio.StreamWriter,
    limit_s: float,
    on_clear_alerts: Callable[[], None] | None = None,
) -> tuple[asyncio.StreamReader, TLCPStreamWriter]:
    try:
        async with asyncio.timeout(limit_s):
            done, rest = await _handshake(conn, raw_reader, raw_writer)
    except BaseException:
        raw_writer.close()
        raise
    reader = asyncio.StreamReader()
    writer = TLCPStreamWriter(conn, raw_writer, done)
    if _deliver(rest, reader):
        writer._pump = asyncio.create_task(_pump(conn, raw_reader, raw_writer, reader, on_clear_alerts))
    return reader, writer


async def open_tlcp_connection(
    host: str,
    port: int,
    *,
    config: TLCPConfig,
    timeout: float = 10.0,  # noqa: ASYNC109 - one deadline for connect + handshake, the caller's budget
) -> tuple[asyncio.StreamReader, TLCPStreamWriter]:
    """Connect and complete the TLCP handshake within ``timeout`` seconds."""
    return await connect_client(host, port, ClientConnection(config), timeout=timeout)


async def connect_client(
    host: str,
    port: int,
    conn: ClientConnection,
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - one deadline for connect + handshake, the caller's budget
    on_clear_alerts: Callable[[], None] | None = None,
) -> tuple[asyncio.StreamReader, TLCPStreamWriter]:
    """As :func:`open_tlcp_connection` with a connection the caller keeps (to read ``client_auth`` after a
    failure); ``on_clear_alerts`` is called once if the peer sends an alert in the clear after its CCS."""
    async with asyncio.timeout(timeout):
        raw_reader, raw_writer = await asyncio.open_connection(host, port)
    conn.start()
    return await _wrap(conn, raw_reader, raw_writer, timeout, on_clear_alerts)


async def start_tlcp_server(
    handler: Handler,
    host: str,
    port: int,
    *,
    config: TLCPConfig | Callable[[], TLCPConfig],
    handshake_timeout: float = 10.0,
) -> asyncio.Server:
    """Serve TLCP; ``handler(reader, writer)`` runs for each connection that completes its handshake. A callable
    ``config`` is asked for each new connection (certificate rotation reaches a running listener)."""

    async def on_connect(raw_reader: asyncio.StreamReader, raw_writer: asyncio.StreamWriter) -> None:
        conn = ServerConnection(config() if callable(config) else config)
        conn.start()
        try:
            reader, writer = await _wrap(conn, raw_reader, raw_writer, handshake_timeout)
        except (TLCPAlert, TimeoutError, ConnectionError):
            return  # the alert is already on its way; nothing to hand to the application
        try:
            await handler(reader, writer)
        finally:
            writer.close()
            await writer.wait_closed()

    return await asyncio.start_server(on_connect, host, port)
