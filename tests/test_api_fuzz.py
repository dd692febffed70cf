"""The HIS-facing request path under hypothesis: bytes on the API socket go through the HTTP/1.1 server, the API
handler and the envelope decoder, and whatever they are, the connection ends with well-formed HTTP answers in
the platform's shape (infcode, err_msg), never a handler crash, never a hang."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httptools
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gateway.api.app import HisApi
from gateway.http1 import Limits
from gateway.http1.messages import Peer
from gateway.http1.server import Http1Server
from gateway.platform.bundled import bundled_his_paths
from gateway.platform.envelope import RequestEnvelope, decode_response
from gateway.relay.answer import RelayAnswer

from conftest import example as platform_example
from conftest import fuzz_examples

REQUESTS = [platform_example(n) for n in ("1101_query_request.json", "2207_settle_request.json")]
REQUESTS += [platform_example(n) for n in ("2601_reversal_request.json", "9001_signin_request.json")]
LIMITS = Limits(max_header_bytes=2048, max_headers=16, max_body_bytes=8192, header_timeout=5, body_timeout=5)


class EchoRelay:
    """The platform as the API sees it: every request answered at once, its input echoed as output."""

    async def submit(self, envelope: RequestEnvelope, deadline: float, *, client: str | None = None) -> RelayAnswer:
        answer = {"infcode": 0, "err_msg": None, "output": envelope.input}
        return RelayAnswer(decode_response(json.dumps(answer, ensure_ascii=False).encode()), "fuzz", 0.0)


API = HisApi(EchoRelay(), list(bundled_his_paths()), default_timeout=5.0, max_timeout=30.0)
SERVER = Http1Server(API.handle, API.refuse, LIMITS)


class Sink:
    """The writer half of the connection: collects what the server sends."""

    transport = None

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    async def drain(self) -> None:
        return None

    def close(self) -> None:
        return None

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


async def _serve(data: bytes) -> bytes:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    sink = Sink()
    # The whole input is buffered and EOF is set, so anything that takes seconds is a hang, not a slow client.
    async with asyncio.timeout(10):
        await SERVER.serve(reader, sink, Peer(address="192.0.2.7:40000"))  # type: ignore[arg-type]
    return bytes(sink.data)


class Answers:
    """httptools response callbacks: each complete answer as (status, content type, body)."""

    def __init__(self) -> None:
        self.done: list[tuple[int, str, bytes]] = []
        self.parser = httptools.HttpResponseParser(self)
        self._headers: dict[str, str] = {}
        self._body = bytearray()

    def on_message_begin(self) -> None:
        self._headers, self._body = {}, bytearray()

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, chunk: bytes) -> None:
        self._body += chunk

    def on_message_complete(self) -> None:
        self.done.append((self.parser.get_status_code(), self._headers.get("content-type", ""), bytes(self._body)))


def check_answers(out: bytes) -> list[tuple[int, dict[str, Any]]]:
    answers = Answers()
    answers.parser.feed_data(out)
    assert out.count(b"HTTP/1.1 ") >= len(answers.done) and (out == b"") == (not answers.done), out[:200]
    docs = []
    for status, content_type, body in answers.done:
        charset = "gb18030" if "charset=GBK" in content_type else "utf-8"
        doc = json.loads(body.decode(charset))
        assert isinstance(doc, dict)
        assert "infcode" in doc or (status == 200 and doc.get("status") == "ok"), doc
        if status != 200:
            assert doc["infcode"] != 0 and doc["err_msg"].startswith("[ybgate] ") and doc["gateway_error"]
        docs.append((status, doc))
    return docs


# -- structure-aware requests -----------------------------------------------------------------------------------

paths = st.sampled_from(
    [
        "/fsi/api/rsfComIfsService/callService", "/fsi/api/rsfComIfsService/callService/1101",
        "/fsi/api/rsfComIfsService/callService/2207/", "/ebus/fsi/api/hsa/hgs/2207", "/ebus/fsi/api/hsa/hgs/x%2Fy",
        "/healthz", "/healthz?probe=1", "/", "*", "http://gw/healthz", "http://gw", "/%ff%fe", "/fsi/../healthz",
    ]
)  # fmt: skip
methods = st.sampled_from(["POST", "GET", "HEAD", "PUT", "OPTIONS", "DELETE"])
content_types = st.sampled_from(
    [
        "application/json", "application/json;charset=UTF-8", "application/json; charset=GBK",
        "application/json;charset=gb2312", 'application/json; charset="GB18030"', "application/json;charset=latin-1",
        "text/plain; charset=", "application/json;;charset=utf8;charset=gbk",
    ]
)  # fmt: skip
timeouts = st.sampled_from(["5", "0", "-1", "30", "30.0001", "nan", "inf", "1e309", "1e-300", "٣", " 2 ", "", "x"])
odd_values = st.sampled_from(
    [None, "", "1101\n", "９００１", 0, [], {}, "H44030000001202611240800000001", "2026-11-24 08:00:00", "\ud800"]
)
field_names = st.sampled_from(["infno", "msgid", "inf_time", "input", "opter_type", "insuplc_admdvs", "sign_no"])
splices = st.sampled_from(['"\\ud800"', "1" * 4400, "[" * 3000, "NaN", "\x00", "{", "]", '"\\ud83d\\ude00"'])


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    doc = dict(draw(st.sampled_from(REQUESTS)))
    for name in draw(st.lists(field_names, max_size=2)):
        if draw(st.booleans()):
            doc[name] = draw(odd_values)
        else:
            doc.pop(name, None)
    codec = draw(st.sampled_from(["utf-8", "gb18030"]))
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(splices) + text[at:]
    return text.encode(codec, "surrogatepass" if codec == "utf-8" else "replace")


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    body = draw(bodies() | st.binary(max_size=64))
    head = [f"{draw(methods)} {draw(paths)} HTTP/1.{draw(st.sampled_from([1, 1, 0]))}", "Host: gw"]
    if draw(st.booleans()):
        head.append(f"Content-Type: {draw(content_types)}")
    if draw(st.booleans()):
        head.append(f"X-Ybgate-Timeout: {draw(timeouts)}")
    if draw(st.booleans()):
        head.append(f"Connection: {draw(st.sampled_from(['close', 'keep-alive', 'upgrade']))}")
    framing = draw(st.sampled_from(["length", "length", "chunked", "short", "long", "none"]))
    if framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n") if body else b"0\r\n\r\n"
    elif framing != "none":
        length = len(body) + {"length": 0, "short": -1, "long": 1}[framing]
        head.append(f"Content-Length: {max(length, 0)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + body


@st.composite
def connections(draw: st.DrawFn) -> bytes:
    """One to three pipelined requests, then a few byte edits and maybe a cut, as a broken client sends them."""
    data = bytearray(b"".join(draw(st.lists(requests(), min_size=1, max_size=3))))
    for pos, value in draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=2)):
        data[pos % len(data)] = value
    if draw(st.booleans()):
        del data[draw(st.integers(1, len(data))) :]
    return bytes(data)


def post(body: bytes, content_type: str = "application/json") -> bytes:
    head = f"POST /fsi/api/rsfComIfsService/callService HTTP/1.1\r\nHost: gw\r\nContent-Type: {content_type}\r\n"
    return f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


VALID_BODY = json.dumps(REQUESTS[0], ensure_ascii=False)
VALID = post(VALID_BODY.encode())


def test_a_valid_request_is_answered_with_its_echo() -> None:
    [(status, doc)] = check_answers(asyncio.run(_serve(VALID)))
    assert status == 200 and doc["output"] == REQUESTS[0]["input"]


@settings(max_examples=fuzz_examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(connections() | st.binary(max_size=400))
@example(
    post(VALID_BODY.replace('"input": {', '"input": {"x": "\\ud800", ').encode("gbk"), "application/json;charset=GBK")
)
@example(post(VALID_BODY.encode("gbk"), "application/json;charset=GBK"))
@example(b"GET http://gw HTTP/1.1\r\nHost: gw\r\n\r\n")
def test_any_bytes_get_platform_shaped_answers(data: bytes) -> None:
    for status, _doc in check_answers(asyncio.run(_serve(data))):
        assert 200 <= status < 600
