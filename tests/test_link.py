"""The link monitor against the real kernel: a veth pair in a namespace the test creates, set down and up."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from gateway.health.link import LinkMonitor, LinkState

pytestmark = pytest.mark.root


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@pytest.fixture
def netns() -> Iterator[str]:
    """A namespace with veth ybl0 <-> ybl1, 10.251.7.1/30 on ybl0, a route to 10.251.8.0/24 via the peer."""
    name = f"ybgt-link-{os.getpid()}"
    ip("netns", "add", name)
    try:
        ip("-n", name, "link", "add", "ybl0", "type", "veth", "peer", "name", "ybl1")
        ip("-n", name, "addr", "add", "10.251.7.1/30", "dev", "ybl0")
        for dev in ("ybl0", "ybl1", "lo"):
            ip("-n", name, "link", "set", dev, "up")
        ip("-n", name, "route", "add", "10.251.8.0/24", "via", "10.251.7.2", "dev", "ybl0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=10)


async def test_link_down_and_up_are_noticed(netns: str) -> None:
    await down_and_up(netns)


def test_the_monitor_works_for_a_daemon_on_uvloop(netns: str) -> None:
    """The daemon's loop is uvloop, which cannot open pyroute2's netlink endpoints: the monitor keeps them on a
    loop of its own (the old monitor: "cannot open a UDP handle, invalid family 16")."""
    import uvloop

    uvloop.run(down_and_up(netns))


async def down_and_up(netns: str) -> None:
    changes: asyncio.Queue[tuple[float, LinkState]] = asyncio.Queue()
    monitor = LinkMonitor(
        "ybl0",
        ["10.251.8.9", "upstream.example"],
        lambda new, old: changes.put_nowait((time.monotonic(), new)),
        netns=netns,
    )
    initial = await monitor.start()
    try:
        assert initial.exists and initial.up
        assert initial.route_ok("10.251.8.9")
        assert list(initial.routes) == ["10.251.8.9"]  # host names are not routed before resolution
        await changes.get()  # the initial state is reported too

        started = time.monotonic()
        ip("-n", netns, "link", "set", "ybl0", "down")
        # netlink tells at once; the guard bounds a hang, the figure is printed
        when, state = await asyncio.wait_for(changes.get(), 30.0)
        assert not state.up
        print(f"link down reported {when - started:.3f} s after it went down")
        while not changes.empty() or state.route_ok("10.251.8.9"):
            when, state = await asyncio.wait_for(changes.get(), 30.0)
        assert state.routes["10.251.8.9"] is None  # the route left with the link

        ip("-n", netns, "link", "set", "ybl0", "up")
        ip("-n", netns, "route", "replace", "10.251.8.0/24", "via", "10.251.7.2", "dev", "ybl0")
        while not (state.up and state.route_ok("10.251.8.9")):
            when, state = await asyncio.wait_for(changes.get(), 30.0)
        assert monitor.state == state
    finally:
        await monitor.stop()


async def test_missing_interface(netns: str) -> None:
    monitor = LinkMonitor("nonexistent0", [], lambda new, old: None, netns=netns)
    state = await monitor.start()
    await monitor.stop()
    assert not state.exists and not state.up


def test_daemon_reports_link_state_in_metrics(netns: str, short_tmp) -> None:
    """The whole daemon inside the namespace: a link cut shows in /metrics within a second, and the upstream
    whose route left with it has its breaker opened."""
    cfg = short_tmp / "ybgate.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {short_tmp}/state\nruntime_dir: {short_tmp}/run\n"
        "admin: {port: 19180}\nhealth: {interface: ybl0}\n"
        "upstreams: [{name: p, host: 10.251.8.9, port: 8443, transport: tcp}]\n"
    )
    proc = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def metric(name: str) -> str | None:
        out = subprocess.run(
            ["ip", "netns", "exec", netns, "curl", "-sf", "http://127.0.0.1:19180/metrics"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
        return next((ln.rsplit(" ", 1)[1] for ln in out.splitlines() if ln.startswith(name)), None)

    def reaches(name: str, value: str, within: float = 30.0) -> None:
        """Until the daemon's metric shows `value`; `within` seconds guard against a hang, never a measurement."""
        end = time.monotonic() + within
        while metric(name) != value:
            assert time.monotonic() < end, f"{name} did not reach {value} within {within:g} s"
            time.sleep(0.05)

    try:
        reaches('ybgate_link_up{interface="ybl0"}', "1.0")
        assert metric('ybgate_upstream_route_ok{address="10.251.8.9"}') == "1.0"
        started = time.monotonic()
        ip("-n", netns, "link", "set", "ybl0", "down")
        reaches('ybgate_link_up{interface="ybl0"}', "0.0")
        print(f"link down reported {time.monotonic() - started:.2f} s after it went down")
        assert metric('ybgate_upstream_route_ok{address="10.251.8.9"}') == "0.0"
        # no route: the breaker opens on the route's loss, with no request made (none fails here to open it)
        reaches('ybgate_breaker_state{upstream="p"}', "2.0")
    finally:
        proc.terminate()
        proc.wait(15)
