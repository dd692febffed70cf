"""The daemon as parts: started in order on an exit stack and stopped in reverse, also after a start that failed
half-way; one event sink; the upstreams part owns what a lost route means."""

from __future__ import annotations

import asyncio
import socket
import threading
from pathlib import Path

import pytest

from gateway.app.daemon import Daemon
from gateway.app.demo import demo_config
from gateway.app.events import EventSink
from gateway.app.parts import Deadline, Parts
from gateway.app.upstreams import Upstreams
from gateway.config import TcpListen
from gateway.http1.listen import ListenError
from gateway.net.transport import TcpTransport
from gateway.sim.server import Simulator


class Recorded:
    def __init__(self, name: str, journal: list[str], *, fails: bool = False) -> None:
        self.name, self.journal, self.fails = name, journal, fails

    async def start(self) -> None:
        self.journal.append(f"start {self.name}")
        if self.fails:
            raise OSError(f"{self.name} cannot start")

    async def stop(self) -> None:
        self.journal.append(f"stop {self.name}")


async def test_parts_stop_in_reverse_and_a_failed_start_stops_the_ones_before() -> None:
    journal: list[str] = []
    parts = Parts()
    for name in ("a", "b"):
        await parts.start(Recorded(name, journal))
    with pytest.raises(OSError, match="c cannot start"):
        await parts.start(Recorded("c", journal, fails=True))
    assert parts.names == ["a", "b"]  # the failed part is not registered: its own start cleaned up
    await parts.stop()
    assert journal == ["start a", "start b", "start c", "stop b", "stop a"]
    assert parts.names == []


async def test_run_stops_what_a_failed_start_had_started(sim: Simulator, short_tmp: Path) -> None:
    """run() called start() outside its try: when a late part failed (here the HIS TCP port is taken), the admin
    listener, the control socket, the outbox's writer threads and the probes stayed up in a process that had
    given up."""
    assert sim.addresses is not None
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    config = demo_config(short_tmp, sim.addresses.platform)
    api = config.api.model_copy(update={"tcp": [TcpListen(host="127.0.0.1", port=port)]})
    config = config.model_copy(update={"api": api, "admin": config.admin.model_copy(update={"port": 0})})
    daemon = Daemon(config)
    try:
        with pytest.raises(ListenError, match="address already in use"):
            await daemon.run()
    finally:
        taken.close()
    assert daemon.admin_address is not None
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection(*daemon.admin_address)
    assert not config.control_socket.exists() and not config.api_socket.exists()
    # the outbox stopped: its commit and checkpoint threads are gone
    assert not [t.name for t in threading.enumerate() if t.name.startswith("outbox-")]
    assert not [t.get_name() for t in asyncio.all_tasks() if t.get_name() in ("probes", "watchdog", "outbox-prune")]


async def test_a_lost_route_trips_that_upstream_in_the_upstreams_part(short_tmp: Path) -> None:
    config = demo_config(short_tmp, ("127.0.0.2", 9))
    events = EventSink()
    upstreams = Upstreams(config, TcpTransport(), events, Deadline())
    name = config.upstreams[0].name
    assert upstreams.snapshot()[0]["breaker"] == "closed"
    events.emit("route_lost", {"upstream": "127.0.0.9", "via": None})  # another host: nothing to trip
    assert upstreams.snapshot()[0]["breaker"] == "closed"
    events.emit("route_lost", {"upstream": "127.0.0.2", "via": "eth9"})
    assert [s["breaker"] for s in upstreams.snapshot() if s["name"] == name] == ["open"]
