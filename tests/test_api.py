"""The HIS API over its real Unix socket: platform answers through, every bad input refused clearly."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import structlog

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.config import Limits
from gateway.http1.unix_client import request
from gateway.logging import configure
from gateway.sim.server import Simulator

from conftest import PLATFORM_PATH, Gateway, LoopClock, example, fresh


async def raw_exchange(sock: str, data: bytes, *, wait: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_unix_connection(sock)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), wait)
    finally:
        writer.close()


def platform_error(body: bytes) -> dict:
    doc = json.loads(body)
    assert doc["infcode"] == -1
    assert doc["err_msg"].startswith("[ybgate] ")
    return doc


async def test_sign_in_passes_through(gateway: Gateway) -> None:
    reply = await gateway.post(example("9001_signin_request.json"))
    assert reply.status == 200
    doc = json.loads(reply.body)
    assert str(doc["infcode"]) == "0"
    assert doc["output"]["signinoutb"]["sign_no"].startswith("440000G")
    assert gateway.sim.ledger.messages[-1].msgid == example("9001_signin_request.json")["msgid"]


async def test_platform_refusals_reach_the_his_unchanged(gateway: Gateway) -> None:
    reply = await gateway.post(example("1101_query_request.json"))  # sign_no unknown to the platform
    doc = json.loads(reply.body)
    assert reply.status == 200
    assert doc["err_msg"] == "签到信息已失效，请重新签到"
    assert str(doc["infcode"]) == "-1"


async def test_per_infno_paths(gateway: Gateway) -> None:
    sign_no = await gateway.sign_in()
    doc = example("1101_query_request.json") | {"sign_no": sign_no}
    ok = await gateway.post(doc, path="/ebus/fsi/api/hsa/hgs/1101")
    assert json.loads(ok.body)["output"]["baseinfo"]["psn_no"]
    wrong = await gateway.post(doc, path="/ebus/fsi/api/hsa/hgs/2207")
    assert wrong.status == 400
    assert "URL names '2207'" in platform_error(wrong.body)["err_msg"]


async def test_healthz_paths_and_methods(gateway: Gateway) -> None:
    health = await request("GET", "/healthz", unix_socket=gateway.socket)
    assert health.status == 200 and json.loads(health.body)["status"] == "ok"
    assert (await request("POST", "/healthz", b"{}", unix_socket=gateway.socket)).status == 405
    nowhere = await gateway.post(example("9001_signin_request.json"), path="/fsi/api/other")
    assert nowhere.status == 404
    assert platform_error(nowhere.body)["gateway_error"] == "bad_path"
    get = await request("GET", PLATFORM_PATH, unix_socket=gateway.socket)
    assert get.status == 405


async def test_envelope_errors_are_platform_shaped(gateway: Gateway) -> None:
    doc = example("9001_signin_request.json") | {"msgid": "short"}
    reply = await gateway.post(doc)
    assert reply.status == 400
    err = platform_error(reply.body)
    assert err["gateway_error"] == "bad_envelope"
    assert "msgid: expected 30 letters or digits, got 5 characters" in err["err_msg"]
    assert gateway.sim.ledger.messages == []  # nothing reached the platform


async def test_socket_is_not_world_accessible(gateway: Gateway) -> None:
    mode = stat.S_IMODE(os.stat(gateway.socket).st_mode)
    assert mode == 0o660


async def test_keep_alive_serves_several_requests(gateway: Gateway) -> None:
    body = json.dumps(example("9001_signin_request.json")).encode()
    one = (f"POST {PLATFORM_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    data = await raw_exchange(
        gateway.socket, one + one[:-1] + one[-1:] + b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert len(gateway.sim.ledger.messages) == 1  # the repeated msgid is answered from the outbox


async def test_pipelined_requests_before_a_malformed_one_are_answered_first(gateway: Gateway) -> None:
    """(#20) valid + malformed + valid in one write: the first request was complete and is owed its answer, in
    order, before the refusal; the connection then closes (nothing after bad bytes can be framed)."""

    def post(doc: dict) -> bytes:
        body = json.dumps(doc).encode()
        return f"POST {PLATFORM_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body

    first = fresh("9001_signin_request.json")
    bad = b"POST " + PLATFORM_PATH.encode() + b" HTTP/1.1\r\nContent-Length: zz\r\n\r\n"
    data = await raw_exchange(gateway.socket, post(first) + bad + post(fresh("9001_signin_request.json")))
    answered, _, refused = data.partition(b"HTTP/1.1 400 Bad Request")
    assert answered.startswith(b"HTTP/1.1 200 OK") and b"sign_no" in answered
    assert refused and b'"gateway_error": "bad_http"' in refused and b"HTTP/1.1" not in refused
    assert [m.msgid for m in gateway.sim.ledger.messages] == [first["msgid"]]


async def test_personal_values_in_wrong_fields_never_reach_log_or_status_page(gateway: Gateway) -> None:
    """(#20) A patient name sent as opter_type and an ID number (wrong check digit, so no mask knows its shape)
    sent as mdtrtarea_admvs: refused with the field and the value's shape, and neither value appears in the log,
    the answer, or the recent errors on the admin listener's /status."""
    out = io.StringIO()
    configure("info", "json", stream=out)
    name, number = "欧阳娜娜", "440301198001011235"
    try:
        answers = [
            await gateway.post(fresh("1101_query_request.json", opter_type=name)),
            await gateway.post(fresh("1101_query_request.json", mdtrtarea_admvs=number)),
        ]
    finally:
        structlog.reset_defaults()
    assert gateway.daemon.admin_address is not None
    host, port = gateway.daemon.admin_address
    status = (await request("GET", "/status", host=host, port=port)).body.decode()
    errors = json.loads(status)["recent"]["errors"]
    assert [e["message"] for e in errors[:2]] == [
        "mdtrtarea_admvs: expected a 6-digit region code, got 18 characters (digits)",
        "opter_type: expected '1', '2' or '3', got 4 characters (non-ASCII)",
    ]
    seen = out.getvalue() + status + "".join(a.body.decode() for a in answers)
    assert "opter_type" in out.getvalue() and "mdtrtarea_admvs" in out.getvalue()
    assert name not in seen and number not in seen and number[:-1] not in seen


async def burst(path: str, n: int) -> tuple[int, list[bytes]]:
    """Open `n` connections at once, holding the event loop so the daemon can accept none meanwhile; then a
    /healthz on each. How many connects were refused (EAGAIN), and the answers of the others."""
    loop = asyncio.get_running_loop()
    clients: list[socket.socket] = []
    refused = 0
    try:
        for _ in range(n):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.setblocking(False)
            try:
                c.connect(path)
            except BlockingIOError:
                refused += 1
                c.close()
                continue
            clients.append(c)
        for c in clients:
            c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

        async def answer(c: socket.socket) -> bytes:
            data = b""
            while chunk := await loop.sock_recv(c, 4096):
                data += chunk
            return data

        return refused, await asyncio.wait_for(asyncio.gather(*(answer(c) for c in clients)), 60)
    finally:
        for c in clients:
            c.close()


async def test_a_burst_of_connects_waits_in_the_backlog(gateway: Gateway) -> None:
    """(#20) 1,000 HIS connections at once on the Unix socket: each is queued by the kernel, none is refused with
    EAGAIN, each gets its answer. The listen backlog was asyncio's default of 100: 899 of these were refused."""
    assert gateway.config.api.backlog == 1024
    refused, answers = await burst(gateway.socket, 1000)
    assert refused == 0 and len(answers) == 1000
    assert all(a.startswith(b"HTTP/1.1 200 OK") for a in answers)


async def test_a_socket_from_systemd_keeps_a_large_backlog(sim: Simulator, short_tmp: Path) -> None:
    """(#20) Under socket activation the unit's socket (Backlog=1024) was listened on again by asyncio with 100,
    so the unit's figure never held. The daemon now listens with api.backlog on a handed-over socket too."""
    assert sim.addresses is not None
    config = demo_config(short_tmp, sim.addresses.platform, level="warning")
    held = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # as systemd's api.socket hands it over
    config.api_socket.parent.mkdir(parents=True, exist_ok=True)
    held.bind(str(config.api_socket))
    held.listen(1024)
    daemon = Daemon(config, api_socket=held)
    await daemon.start()
    try:
        refused, answers = await burst(str(config.api_socket), 1000)
        assert refused == 0 and all(a.startswith(b"HTTP/1.1 200 OK") for a in answers)
    finally:
        await daemon.stop(grace=1.0)
        held.close()


async def test_a_backlog_over_the_kernel_cap_is_warned_about(
    sim: Simulator, short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """listen() silently lowers a backlog to net.core.somaxconn (128 on older kernels): ops hear of it at start.
    The kernel's figure is read from a file standing in for /proc/sys/net/core/somaxconn."""
    from gateway.http1 import listen

    cap = short_tmp / "somaxconn"
    cap.write_text("128\n")
    monkeypatch.setattr(listen, "_SOMAXCONN", cap)
    assert sim.addresses is not None
    out = io.StringIO()
    configure("info", "json", stream=out)
    daemon = Daemon(demo_config(short_tmp, sim.addresses.platform, level="warning"))
    try:
        await daemon.start()
        await daemon.stop(grace=1.0)
    finally:
        structlog.reset_defaults()
    [line] = [json.loads(x) for x in out.getvalue().splitlines() if "api_backlog_capped" in x]
    assert (line["backlog"], line["somaxconn"]) == (1024, 128)


async def test_gbk_his_gets_gbk_answer(gateway: Gateway) -> None:
    raw = json.dumps(example("9001_signin_request.json"), ensure_ascii=False).encode("gbk")
    reply = await gateway.post(raw, headers=[("Content-Type", "application/json; charset=GBK")])
    assert reply.status == 200
    assert reply.headers.get("content-type") == "application/json; charset=GBK"
    assert json.loads(reply.body.decode("gbk"))["output"]["signinoutb"]["sign_no"]
    undeclared = await gateway.post(raw)
    assert undeclared.status == 400
    assert platform_error(undeclared.body)["gateway_error"] == "bad_encoding"


async def test_timeout_header_is_validated(gateway: Gateway) -> None:
    for bad in ("soon", "0", "-3", "1000"):
        reply = await gateway.post(example("9001_signin_request.json"), headers=[("X-Ybgate-Timeout", bad)])
        assert reply.status == 400
        assert platform_error(reply.body)["gateway_error"] == "bad_timeout"


# -- limits against misbehaving clients ----------------------------------------------------------------------


@pytest_asyncio.fixture
async def strict_gateway(sim: Simulator, short_tmp: Path) -> AsyncIterator[Gateway]:
    assert sim.addresses is not None
    cfg = demo_config(short_tmp, sim.addresses.platform)
    limits = Limits(
        max_header_bytes=2048,
        max_headers=20,
        max_body_bytes=4096,
        header_timeout=1.0,
        body_timeout=1.0,
        keepalive_timeout=2.0,
    )
    cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"limits": limits})})
    daemon = Daemon(cfg)
    await daemon.start()
    yield Gateway(daemon, cfg, sim)
    await daemon.stop(grace=1.0)


async def test_oversized_body_refused_before_reading_it(strict_gateway: Gateway) -> None:
    head = f"POST {PLATFORM_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n".encode()
    data = await raw_exchange(strict_gateway.socket, head)
    assert data.startswith(b"HTTP/1.1 413 ")
    body = data.split(b"\r\n\r\n", 1)[1]
    assert "exceeds the limit of 4096" in platform_error(body)["err_msg"]


async def test_oversized_chunked_body_refused(strict_gateway: Gateway) -> None:
    chunk = b"1000\r\n" + b"x" * 0x1000 + b"\r\n"
    head = f"POST {PLATFORM_PATH} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    data = await raw_exchange(strict_gateway.socket, head + chunk * 2)
    assert data.startswith(b"HTTP/1.1 413 ")


async def test_too_many_and_too_large_headers(strict_gateway: Gateway) -> None:
    many = "".join(f"X-H{i}: v\r\n" for i in range(30))
    data = await raw_exchange(strict_gateway.socket, f"GET /healthz HTTP/1.1\r\n{many}\r\n".encode())
    assert data.startswith(b"HTTP/1.1 431 ")
    big = f"GET /healthz HTTP/1.1\r\nX-Big: {'a' * 5000}\r\n\r\n".encode()
    data = await raw_exchange(strict_gateway.socket, big)
    assert data.startswith(b"HTTP/1.1 431 ")


async def test_slowloris_headers_cut_off(strict_gateway: Gateway, loop_clock: LoopClock) -> None:
    # A plain socket, not streams: once a write fails (the server answered and closed), a StreamReader raises
    # that error instead of returning the 408 already buffered for us, while recv still returns it.
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    await loop.sock_connect(sock, str(strict_gateway.socket))
    await loop.sock_sendall(sock, b"POST /fsi/api/rsfComIfsService/callService HTTP/1.1\r\n")
    await loop_clock.until_read(sock)
    with sock:
        for i in range(9):  # one header byte every 0.1 s, each read by the gateway: the headers never complete
            loop_clock.advance(0.1)
            await loop.sock_sendall(sock, b"X" if i % 2 else b"-")
            await loop_clock.until_read(sock)
        # header_timeout is 1 s from the first byte however slowly the rest arrives: 1.1 s on, the 408 is due
        # (a timeout counted from the last byte would not be before 1.8 s).
        loop_clock.advance(0.2)
        answer = await loop_clock.within(loop.sock_recv(sock, 4096))
        # The server closes after its 408; the bytes we sent and it never read may turn that close into a reset.
        with contextlib.suppress(ConnectionError):
            while more := await loop_clock.within(loop.sock_recv(sock, 4096)):
                answer += more
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert "headers not received in time" in platform_error(answer.split(b"\r\n\r\n", 1)[1])["err_msg"]


async def test_slow_body_cut_off(strict_gateway: Gateway) -> None:
    head = f"POST {PLATFORM_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode()
    data = await raw_exchange(strict_gateway.socket, head, wait=5)
    assert data.startswith(b"HTTP/1.1 408 ")


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x16\x01\x01\x00\x50" + bytes(80),
        b"HELLO WORLD\r\n\r\n",
        b"POST / HTTP/9.9\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
    ],
)
async def test_garbage_is_refused(strict_gateway: Gateway, garbage: bytes) -> None:
    data = await raw_exchange(strict_gateway.socket, garbage)
    assert data.startswith(b"HTTP/1.1 400 ")
    assert platform_error(data.split(b"\r\n\r\n", 1)[1])["gateway_error"] == "bad_http"


async def test_idle_keepalive_connection_closed(strict_gateway: Gateway, loop_clock: LoopClock) -> None:
    reader, writer = await asyncio.open_unix_connection(strict_gateway.socket)
    # keepalive_timeout is 2 s (header_timeout, 1 s, does not apply before a first byte): open after 1.9 s idle ...
    loop_clock.advance(1.9)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await loop_clock.within(reader.readuntil(b"\r\n\r\n"))
    assert head.startswith(b"HTTP/1.1 200 ")
    length = next(
        int(v) for k, _, v in (h.partition(b":") for h in head.split(b"\r\n")) if k.lower() == b"content-length"
    )
    await loop_clock.within(reader.readexactly(length))
    # ... and closed 2 s after its last answer.
    loop_clock.advance(2.0)
    assert await loop_clock.within(reader.read()) == b""
    writer.close()


# -- upstream failures: told apart by whether the request left -----------------------------------------------


async def test_platform_down_means_not_sent(gateway: Gateway) -> None:
    await gateway.sim.stop()
    reply = await gateway.post(example("9001_signin_request.json"))
    assert reply.status == 502
    err = platform_error(reply.body)
    assert "not sent" in err["err_msg"] and "retry with a new msgid" in err["err_msg"]
    assert err["gateway_error"] == "not_processed"


@pytest.mark.parametrize(
    ("fault", "booked", "outcome", "status"),
    [
        ("drop_after", 1, "reversed", 200),
        ("reset", 1, "reversed", 200),
        ("garbage", 1, "reversed", 200),
        ("http502", 0, "not_processed", 502),
        ("drop_before", 0, "not_processed", 502),
    ],
)
async def test_lost_settlement_answer_is_resolved_by_reversal(
    gateway: Gateway, fault: str, booked: int, outcome: str, status: int
) -> None:
    """The answer to a settlement is lost: the gateway never resends it; 冲正 (2601) settles what happened."""
    sign_no = await gateway.sign_in()
    # The simulator answers at once or never: a 冲正 finding nothing 0.3 s after the doubt is the truth here.
    assert gateway.daemon.relay is not None
    gateway.daemon.relay.timing.reversal_settle = 0.3
    gateway.sim.faults.set("2207", {"kind": fault, "times": 1})
    doc = fresh("2207_settle_request.json", sign_no=sign_no)
    reply = await gateway.post(doc)
    assert reply.status == status
    err = platform_error(reply.body)
    assert err["gateway_error"] == outcome
    assert ("已自动冲正" in err["err_msg"]) == (outcome == "reversed")
    settled = gateway.sim.ledger.by_msgid(doc["msgid"])
    assert len(settled) == booked and all(s.state == "reversed" for s in settled)
    assert [m.infno for m in gateway.sim.ledger.messages].count("2207") == 1  # sent exactly once
    again = await gateway.post(doc)  # the HIS retries with the same msgid: the same final answer
    assert again.status == status and platform_error(again.body)["gateway_error"] == outcome
    assert [m.infno for m in gateway.sim.ledger.messages].count("2207") == 1


async def test_deadline_bounds_a_slow_platform(gateway: Gateway) -> None:
    sign_no = await gateway.sign_in()
    # The platform would answer after a minute; the HIS gives 0.5 s: any answer within the guard is the deadline's.
    gateway.sim.faults.set("1101", {"kind": "delay", "delay": 60.0, "times": 1})
    reply = await asyncio.wait_for(
        gateway.post(example("1101_query_request.json") | {"sign_no": sign_no}, headers=[("X-Ybgate-Timeout", "0.5")]),
        30,
    )
    assert reply.status == 504
    assert platform_error(reply.body)["gateway_error"] == "upstream_timeout"
