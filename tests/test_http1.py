"""The HTTP/1.1 layer: byte-at-a-time parsing, pipelining, fuzzed input never escapes as a crash."""

from __future__ import annotations

import asyncio
import contextlib

import httptools
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import RequestError
from gateway.http1 import Limits, Request, Response
from gateway.http1.client import BadUpstreamResponse, encode_request, exchange
from gateway.http1.server import Http1Server, _Parse, encode_response

REQ = encode_request("POST", "h", "/fsi/api/x", [("Content-Type", "application/json")], '{"a": "中"}'.encode())


def feed(data: bytes, chunk: int, limits: Limits | None = None) -> list[Request]:
    state = _Parse(limits or Limits())
    for i in range(0, len(data), chunk):
        try:
            state.parser.feed_data(data[i : i + chunk])
        except httptools.HttpParserCallbackError as exc:
            assert isinstance(exc.__context__, RequestError)
            raise exc.__context__ from None
    return state.done


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 4096])
def test_byte_at_a_time_and_pipelined(chunk: int) -> None:
    done = feed(REQ * 3, chunk)
    assert len(done) == 3
    for req in done:
        assert req.method == "POST" and req.path == "/fsi/api/x"
        assert req.body.decode() == '{"a": "中"}'
        assert req.headers.get("CONTENT-TYPE") == "application/json"


def test_query_string_is_not_part_of_the_path() -> None:
    [req] = feed(b"GET /healthz?x=1 HTTP/1.1\r\nHost: h\r\n\r\n", 5)
    assert req.path == "/healthz"


def test_limits_trip_whatever_the_chunking() -> None:
    big = encode_request("POST", "h", "/", [], b"x" * 5000)
    for chunk in (1, 100, 10000):
        with pytest.raises(RequestError) as info:
            feed(big, chunk, Limits(max_body_bytes=4096))
        assert info.value.http_status == 413


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=50))
def test_fuzzed_requests_raise_only_http_errors(data: bytes, chunk: int) -> None:
    with contextlib.suppress(RequestError, httptools.HttpParserError):
        feed(data, chunk, Limits(max_header_bytes=1024, max_headers=10, max_body_bytes=256))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_fuzzed_request_after_valid_prefix(tail: bytes) -> None:
    try:
        done = feed(REQ + tail, 3)
    except (RequestError, httptools.HttpParserError):
        return
    assert done and done[0].body.decode() == '{"a": "中"}'


async def test_server_answers_each_request_and_closes_on_connection_close() -> None:
    async def handler(req: Request) -> Response:
        return Response(200, req.body[::-1])

    server = Http1Server(handler, lambda e: Response(e.http_status, e.message.encode()), Limits())
    srv = await asyncio.start_server(lambda r, w: server.serve(r, w, _peer()), "127.0.0.1", 0)
    host, port = srv.sockets[0].getsockname()[:2]
    reader, writer = await asyncio.open_connection(host, port)
    first = await exchange(reader, writer, encode_request("POST", "h", "/", [], b"abc"))
    second = await exchange(reader, writer, encode_request("POST", "h", "/", [("Connection", "close")], b"xyz"))
    assert (first.body, first.keep_alive) == (b"cba", True)
    assert (second.body, second.keep_alive) == (b"zyx", False)
    assert await reader.read() == b""
    writer.close()
    srv.close()


async def test_client_refuses_truncated_and_malformed_answers() -> None:
    answers = [
        encode_response(Response(200, b"x" * 100), keep_alive=True)[:-10],
        b"SSH-2.0-OpenSSH\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
    ]
    for answer in answers:

        async def play(r: asyncio.StreamReader, w: asyncio.StreamWriter, answer: bytes = answer) -> None:
            await r.read(100)
            w.write(answer)
            await w.drain()
            w.close()

        srv = await asyncio.start_server(play, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*srv.sockets[0].getsockname()[:2])
        with pytest.raises(BadUpstreamResponse):
            await exchange(reader, writer, REQ)
        writer.close()
        srv.close()


def _peer():
    from gateway.http1.messages import Peer

    return Peer(address="test")
