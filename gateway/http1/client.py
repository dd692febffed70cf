"""One HTTP/1.1 request/response exchange over an already open stream (the upstream side)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httptools

from gateway.errors import UpstreamError
from gateway.http1.messages import Headers


class BadUpstreamResponse(UpstreamError):
    kind = "upstream_bad_http"


class NoResponse(BadUpstreamResponse):
    """The connection ended before a single response byte: on a reused keep-alive connection this is the
    platform having closed it while idle."""


@dataclass(frozen=True)
class ClientResponse:
    status: int
    headers: Headers
    body: bytes
    keep_alive: bool


class _ResponseParse:
    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[str, str]] = []
        self.body = bytearray()
        self.complete = False
        self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, chunk: bytes) -> None:
        self.body += chunk
        if len(self.body) > self.max_body:
            raise BadUpstreamResponse(f"upstream response body exceeds {self.max_body} bytes")

    def on_message_complete(self) -> None:
        # llhttp forgets keep-alive once the parser has moved past the message: read it here.
        self.keep_alive = self.parser.should_keep_alive()
        self.complete = True


def encode_request(method: str, host: str, path: str, headers: list[tuple[str, str]], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    request: bytes,
    *,
    max_body: int = 8 * 1024 * 1024,
) -> ClientResponse:
    """Send `request` and read one complete response. Timeouts belong to the caller (deadline)."""
    try:
        writer.write(request)
    except ConnectionError as exc:
        # A stream that refuses the write (a TLCP tunnel already ended) sent nothing: for a reused keep-alive
        # connection that is the platform having closed it while idle, like a reset before the response.
        raise NoResponse(f"connection closed before the request was sent ({exc})") from None
    await writer.drain()
    state = _ResponseParse(max_body)
    received = 0
    while not state.complete:
        try:
            chunk = await reader.read(65536)
        except ConnectionError as exc:
            if not received:
                raise NoResponse(f"connection reset before any response ({exc.__class__.__name__})") from None
            raise
        if not chunk:
            # The platform always frames its answers; a response cut short by EOF is not an answer.
            if not received:
                raise NoResponse("upstream closed the connection without a response")
            raise BadUpstreamResponse("upstream closed the connection without a complete response")
        received += len(chunk)
        try:
            state.parser.feed_data(chunk)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, BadUpstreamResponse):
                raise exc.__context__ from None
            raise BadUpstreamResponse(f"upstream response refused: {exc}") from exc
        except httptools.HttpParserError as exc:
            raise BadUpstreamResponse(f"upstream sent malformed HTTP: {exc}") from exc
        except httptools.HttpParserUpgrade:
            # Not an HttpParserError: llhttp stops at a 101 (or an upgrade) answer, which is no answer to a request.
            raise BadUpstreamResponse("upstream switched protocols instead of answering") from None
    return ClientResponse(
        status=state.parser.get_status_code(),
        headers=Headers(tuple(state.headers)),
        body=bytes(state.body),
        keep_alive=state.keep_alive,
    )
