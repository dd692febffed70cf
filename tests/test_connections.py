"""Upstream keep-alive: reuse only where the caller allows it, stale connections weeded out or retried fresh,
and never a retry where the request might have been processed."""

from __future__ import annotations

import asyncio
import json

import pytest

from gateway.errors import UpstreamError
from gateway.net.connections import Connection, KeepAlivePool
from gateway.net.pool import UpstreamFailover
from gateway.net.transport import TcpTransport, UpstreamTarget, UpstreamUnreachable
from gateway.platform.envelope import decode_request
from gateway.relay.forwarder import AmbiguousOutcome, Forwarder
from gateway.sim.server import Simulator

from conftest import example


def forwarder(sim: Simulator, *, reuse: bool) -> Forwarder:
    assert sim.addresses is not None
    host, port = sim.addresses.platform
    pool = UpstreamFailover([UpstreamTarget("sim", host, port)])
    return Forwarder(pool, KeepAlivePool(TcpTransport(), idle_timeout=5), lambda e: reuse)


def envelope(infno_doc: str, sign_no: str = ""):
    return decode_request(json.dumps(example(infno_doc) | {"sign_no": sign_no}).encode())


async def deadline(seconds: float = 5) -> float:
    return asyncio.get_running_loop().time() + seconds


async def sign_in(fwd: Forwarder) -> str:
    answer = await fwd.submit(envelope("9001_signin_request.json"), await deadline())
    return answer.response.output["signinoutb"]["sign_no"]


async def test_reuse_when_allowed(sim: Simulator) -> None:
    fwd = forwarder(sim, reuse=True)
    sign_no = await sign_in(fwd)
    for _ in range(5):
        answer = await fwd.submit(envelope("1101_query_request.json", sign_no), await deadline())
        assert answer.response.ok
    assert fwd.connections.opened == 1 and fwd.connections.reuses == 5
    await fwd.connections.close()


async def test_no_reuse_by_default(sim: Simulator) -> None:
    fwd = forwarder(sim, reuse=False)
    sign_no = await sign_in(fwd)
    await fwd.submit(envelope("1101_query_request.json", sign_no), await deadline())
    assert fwd.connections.opened == 2 and fwd.connections.reuses == 0


async def test_connection_closed_while_idle_is_not_used(sim: Simulator) -> None:
    fwd = forwarder(sim, reuse=True)
    sign_no = await sign_in(fwd)
    [conn] = fwd.connections._idle["sim"]
    conn.writer.close()  # as if the platform had closed it: seen (is_closing) before reuse, at once
    answer = await fwd.submit(envelope("1101_query_request.json", sign_no), await deadline())
    assert answer.response.ok and fwd.connections.opened == 2 and fwd.connections.reuses == 0


async def test_stale_reused_connection_gets_one_fresh_retry(sim: Simulator) -> None:
    fwd = forwarder(sim, reuse=True)
    sign_no = await sign_in(fwd)
    # The platform drops the next request unread: on the reused connection nothing comes back.
    sim.faults.set("1101", {"kind": "drop_before", "times": 1})
    answer = await fwd.submit(envelope("1101_query_request.json", sign_no), await deadline())
    assert answer.response.ok
    assert [m.fault for m in sim.ledger.messages if m.infno == "1101"] == ["drop_before", None]
    await fwd.connections.close()


async def test_fresh_connection_without_answer_is_never_retried(sim: Simulator) -> None:
    fwd = forwarder(sim, reuse=False)
    sign_no = await sign_in(fwd)
    sim.faults.set("2207", {"kind": "drop_after", "times": 1})
    with pytest.raises(AmbiguousOutcome, match="outcome unknown"):
        await fwd.submit(envelope("2207_settle_request.json", sign_no), await deadline())
    assert len(sim.ledger.by_msgid(example("2207_settle_request.json")["msgid"])) == 1


async def test_second_silence_is_an_unknown_outcome_not_a_not_sent(sim: Simulator) -> None:
    fwd = forwarder(sim, reuse=True)
    sign_no = await sign_in(fwd)
    sim.faults.set("1101", {"kind": "drop_before", "times": 2})
    with pytest.raises(UpstreamError) as info:
        await fwd.submit(envelope("1101_query_request.json", sign_no), await deadline())
    assert isinstance(info.value, AmbiguousOutcome) and info.value.http_status == 504
    await fwd.connections.close()


async def test_a_platform_gone_after_a_stale_connection_counts_against_its_breaker(sim: Simulator) -> None:
    """The kept connection was reset and the fresh one is refused: not sent, and the upstream's breaker hears of
    it (the old forwarder let that failure pass the breaker by). The refusal is stood in for: nothing lets the
    real platform go away between the stale exchange and the fresh connect."""
    fwd = forwarder(sim, reuse=True)
    sign_no = await sign_in(fwd)
    [conn] = fwd.connections._idle["sim"]
    sim.faults.set("1101", {"kind": "drop_before", "times": 1})
    real_get = fwd.connections.get

    async def refuse_fresh(target: UpstreamTarget, *, reuse: bool) -> Connection:
        if not reuse:  # the stale retry's fresh connect: the platform went away meanwhile
            raise UpstreamUnreachable(f"{target.name}: Connection refused")
        return await real_get(target, reuse=reuse)

    fwd.connections.get = refuse_fresh  # type: ignore[method-assign]
    with pytest.raises(UpstreamUnreachable):
        await fwd.submit(envelope("1101_query_request.json", sign_no), await deadline())
    assert fwd.pool.breakers["sim"].failures == 1
    assert fwd.pool.health["sim"].last_failure_cause == "sim: Connection refused"
    assert conn.writer.is_closing()
    await fwd.connections.close()


async def test_upstream_connections_are_watched_by_the_kernel(sim: Simulator) -> None:
    """A kept connection on a link that went silent must end in seconds (ETIMEDOUT), not at the HIS's deadline:
    unacknowledged data ends it after dead_after, and keepalive probes after a second of silence find an idle or
    waiting one. Read back from the real socket."""
    import socket

    assert sim.addresses is not None
    host, port = sim.addresses.platform
    _, writer = await TcpTransport().open(UpstreamTarget("sim", host, port, dead_after=1.5))
    sock = writer.get_extra_info("socket")
    try:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 1500
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 1
    finally:
        writer.close()
        await writer.wait_closed()
