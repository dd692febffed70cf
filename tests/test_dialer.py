"""Racing connects: a hung connect to one upstream is raced by the next after `race_after`, the first
connection carries the request, and the loser still reports to its breaker when it ends.

The transport here is in memory (a connect that hangs on demand): the kernel cannot be told to hang one SYN on
loopback. The real silent drop, with nftables in a namespace, is tests/test_link_silent.py."""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from gateway.net.breaker import BreakerPolicy, BreakerState
from gateway.net.connections import KeepAlivePool
from gateway.net.dialer import Dialer, NoConnection
from gateway.net.pool import UpstreamFailover
from gateway.net.transport import UpstreamTarget, UpstreamUnreachable

PRIMARY = UpstreamTarget("p", "10.0.0.1", 1, connect_timeout=5)
BACKUP = UpstreamTarget("b", "10.0.0.2", 1, role="backup")


class Hanging:
    """Opens a real loopback connection for targets that answer; hangs (until released) or refuses the others."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.hang: set[str] = set()
        self.refuse: set[str] = set()
        self.release = asyncio.Event()
        self.opened: list[str] = []

    async def open(self, target: UpstreamTarget) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if target.name in self.refuse:
            raise UpstreamUnreachable(f"{target.name}: connection refused")
        if target.name in self.hang:
            await self.release.wait()
            raise UpstreamUnreachable(f"{target.name}: connect timed out after {target.connect_timeout}s")
        self.opened.append(target.name)
        return await asyncio.open_connection("127.0.0.1", self.port)


@pytest.fixture
async def listener() -> asyncio.Server:
    async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)
        w.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server
    server.close()


def rig(listener: asyncio.Server, race_after: float) -> tuple[Hanging, UpstreamFailover, KeepAlivePool, Dialer]:
    transport = Hanging(listener.sockets[0].getsockname()[1])
    # failback at once for a primary that never failed nor lagged: only the race itself can keep traffic off it
    pool = UpstreamFailover([PRIMARY, BACKUP], policy=BreakerPolicy(failures_to_open=1), failback_after=0.001)
    connections = KeepAlivePool(transport)
    return transport, pool, connections, Dialer(pool, connections, race_after=race_after)


async def until(condition: object, limit: float = 5.0) -> None:
    async with asyncio.timeout(limit):
        while not condition():  # type: ignore[operator]  # noqa: ASYNC110 - polling a breaker's state
            await asyncio.sleep(0.01)


async def test_a_hung_connect_is_raced_by_the_backup_and_still_reports(listener: asyncio.Server) -> None:
    transport, pool, connections, dialer = rig(listener, race_after=0.05)
    transport.hang.add("p")
    loop = asyncio.get_running_loop()
    ticket, conn = await dialer.connect(pool.candidates(), reuse=True, deadline=loop.time() + 5)
    assert conn.target is BACKUP and ticket.upstream == "b"
    assert pool.breakers["p"].state is BreakerState.CLOSED  # the primary's connect is still running
    assert pool.active == "p" and pool.breakers["p"].healthy_for(1e9) == 0  # but it is no longer healthy
    pool.report(ticket, ok=True, served=True)
    assert pool.candidates()[0] is BACKUP  # so the next request does not wait for it again
    transport.release.set()  # ...and now it ends as a hung connect ends: timed out
    await until(lambda: pool.breakers["p"].state is BreakerState.OPEN)
    assert "timed out" in pool.health["p"].last_failure_cause
    await conn.close()
    await connections.close()


async def test_the_primary_is_not_raced_while_it_connects_within_its_head_start(listener: asyncio.Server) -> None:
    transport, pool, connections, dialer = rig(listener, race_after=5)
    loop = asyncio.get_running_loop()
    _, conn = await dialer.connect(pool.candidates(), reuse=False, deadline=loop.time() + 5)
    assert conn.target is PRIMARY and transport.opened == ["p"]
    await conn.close()
    await connections.close()


async def test_a_refusal_moves_on_at_once_and_all_refusals_are_named(listener: asyncio.Server) -> None:
    transport, pool, connections, dialer = rig(listener, race_after=5)
    transport.refuse.add("p")
    loop = asyncio.get_running_loop()
    _, conn = await dialer.connect(pool.candidates(), reuse=False, deadline=loop.time() + 1)
    assert conn.target is BACKUP
    await conn.close()
    transport.refuse.add("b")
    with pytest.raises(NoConnection, match="b: connection refused"):
        await dialer.connect([BACKUP], reuse=False, deadline=loop.time() + 1)
    await connections.close()


async def test_the_deadline_ends_the_wait_and_close_ends_the_lingering_connects(listener: asyncio.Server) -> None:
    transport, pool, connections, dialer = rig(listener, race_after=0.05)
    transport.hang |= {"p", "b"}
    loop = asyncio.get_running_loop()
    with pytest.raises(TimeoutError):
        await dialer.connect(pool.candidates(), reuse=False, deadline=loop.time() + 0.2)
    assert len(connections._adopted) == 2
    await connections.close()
    assert not connections._adopted
    assert not pool.breakers["p"].trial_in_flight


async def test_a_kept_alive_connection_is_taken_at_once_and_never_after_the_deadline(listener: asyncio.Server) -> None:
    transport, pool, connections, dialer = rig(listener, race_after=5)
    loop = asyncio.get_running_loop()
    ticket, conn = await dialer.connect(pool.candidates(), reuse=True, deadline=loop.time() + 5)
    pool.report(ticket, ok=True, served=True)
    await connections.put(conn, keep=True)
    # the next request reusing: the idle connection, with no connect and no task racing for it
    ticket, again = await dialer.connect(pool.candidates(), reuse=True, deadline=loop.time() + 5)
    assert again is conn and again.reused and transport.opened == ["p"] and connections.reuses == 1
    assert not connections._adopted
    pool.report(ticket, ok=True, served=True)
    await connections.put(again, keep=True)
    # a deadline already passed: nothing is chosen (a request written into a connection now would be sent
    # with no time left for its answer, an unknown outcome instead of "not sent"), and no breaker ticket taken
    with pytest.raises(TimeoutError):
        await dialer.connect(pool.candidates(), reuse=True, deadline=loop.time() - 0.001)
    assert connections._idle["p"] == deque([conn]) and not pool.breakers["p"].trial_in_flight
    await connections.close()
