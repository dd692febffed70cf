"""A minimal HTTP/1.1 client for the gateway's own sockets (demo, probes, tests) — one request per call."""

from __future__ import annotations

import asyncio
import contextlib

from gateway.http1.client import ClientResponse, encode_request, exchange


async def request(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    unix_socket: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    headers: list[tuple[str, str]] | None = None,
    time_limit: float = 30.0,
) -> ClientResponse:
    async with asyncio.timeout(time_limit):
        if unix_socket is not None:
            reader, writer = await asyncio.open_unix_connection(unix_socket)
            host_header = "localhost"
        else:
            reader, writer = await asyncio.open_connection(host, port)
            host_header = f"{host}:{port}"
        try:
            hdrs = [("Connection", "close"), *(headers or [])]
            if body and not any(k.lower() == "content-type" for k, _ in hdrs):
                hdrs.append(("Content-Type", "application/json;charset=utf-8"))
            return await exchange(reader, writer, encode_request(method, host_header, path, hdrs, body))
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
