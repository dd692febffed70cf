"""The rendered table in a real kernel: a namespace plays the 前置机 and its veth end the 专网 interface.
SYNs from scapy show only the callback listener answering, and only to its allowed source; connections out
reach only the whitelisted upstream; drops are counted; edits to the table are detected as drift."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.config import conf
from scapy.layers.inet import IP, TCP
from scapy.sendrecv import sr1

from gateway.app.demo import demo_policy
from gateway.http1.unix_client import request
from gateway.policy.firewall import mismatch, observe, render
from gateway.policy.loader import load_policy_text
from gateway.policy.nft import Firewall, Nft
from gateway.sim.server import Simulator

from conftest import PLATFORM_PATH, fresh

pytestmark = pytest.mark.root

# A /24 of its own per test process: this side binds HOST:port in the host's namespace, where a concurrent
# run (another checkout on the same machine) would otherwise collide on the same address and ports.
_NET = f"10.253.{os.getpid() % 250 + 1}"
HOST, OTHER, GW = f"{_NET}.1", f"{_NET}.9", f"{_NET}.2"
NS_IF = "ybfn"


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=15)


@dataclass
class Net:
    ns: str
    host_if: str


@pytest.fixture
def net() -> Iterator[Net]:
    """Namespace = the gateway host; veth pair; this side holds an allowed and a not-allowed address."""
    ns = f"ybgt-fw-{os.getpid()}"
    host_if = f"ybf{os.getpid() % 10000}h"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", NS_IF, "netns", ns)
        for addr in (HOST, OTHER):
            sh("ip", "addr", "add", f"{addr}/24", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "-n", ns, "addr", "add", f"{GW}/24", "dev", NS_IF)
        sh("ip", "-n", ns, "link", "set", NS_IF, "up")
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        conf.ifaces.reload()  # scapy caches interfaces by index: a new veth of an old name is a new device
        conf.route.resync()
        yield Net(ns, host_if)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=15, check=False)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=15, check=False)
        conf.route.resync()


LISTEN = (
    "import socket, sys, time\n"
    "keep = []\n"
    "for p in sys.argv[1:]:\n"
    "    s = socket.socket(); s.bind(('0.0.0.0', int(p))); s.listen(); keep.append(s)\n"
    "print('up', flush=True)\n"
    "time.sleep(120)\n"
)
CONNECT = (
    "import socket, sys\n"
    "try:\n"
    "    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1).close(); print('open')\n"
    "except OSError as e:\n"
    "    print('closed', e)\n"
)


def syn(src: str, port: int) -> str:
    """'synack', 'rst' or 'dropped' (no answer within a second)."""
    answer = sr1(IP(src=src, dst=GW) / TCP(sport=40000 + port % 1000, dport=port, flags="S"), timeout=1, verbose=0)
    if answer is None or TCP not in answer:
        return "dropped"
    return "synack" if answer[TCP].flags.S and answer[TCP].flags.A else "rst"


def connect_out(ns: str, port: int) -> str:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", CONNECT, HOST, str(port)],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    )
    return out.stdout.split()[0]


def host_listeners(ports: list[int]) -> list[socket.socket]:
    socks = []
    for port in ports:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        s.listen()
        socks.append(s)

    def accept(s: socket.socket) -> None:
        while True:
            try:
                conn, _ = s.accept()
            except OSError:
                return
            conn.close()

    for s in socks:
        threading.Thread(target=accept, args=(s,), daemon=True).start()
    return socks


POLICY = f"""
upstreams: [{{host: {HOST}, port: 18443}}]
callback: {{address: {GW}, port: 19443, sources: ["{HOST}/32"]}}
"""


def test_only_whitelisted_ports_are_reachable(net: Net) -> None:
    listener = subprocess.Popen(
        ["ip", "netns", "exec", net.ns, sys.executable, "-c", LISTEN, "19443", "12222"],
        stdout=subprocess.PIPE,
        text=True,
    )
    socks = host_listeners([18443, 18444])
    try:
        assert listener.stdout is not None and listener.stdout.readline().strip() == "up"
        # Without our table the probes see the usual answers: open ports accept, closed ones reset.
        assert syn(HOST, 12222) == "synack" and syn(HOST, 12223) == "rst" and syn(OTHER, 19443) == "synack"
        assert connect_out(net.ns, 18444) == "open"

        fw = Firewall(Nft(net.ns), NS_IF)
        fw.apply(load_policy_text(POLICY, "p.yaml"))
        assert syn(HOST, 19443) == "synack"  # the callback listener, from its allowed source
        assert syn(OTHER, 19443) == "dropped"  # the same port from another address
        assert syn(HOST, 12222) == "dropped"  # a listening service the policy does not name
        assert syn(HOST, 12223) == "dropped"  # a closed port: not even a reset gives it away
        assert connect_out(net.ns, 18443) == "open"  # the whitelisted upstream
        assert connect_out(net.ns, 18444) == "closed"  # anything else out of the 专网 interface
        check = fw.check()
        assert check.ok, check.problem
        assert check.seen.dropped_in >= 3 and check.seen.dropped_out >= 1

        # Someone opens a port by hand: drift, within one check.
        sh(
            "ip",
            "netns",
            "exec",
            net.ns,
            "nft",
            "insert",
            "rule",
            "inet",
            "ybgate",
            "inbound",
            "tcp",
            "dport",
            "12222",
            "accept",
        )
        assert syn(HOST, 12222) == "synack"
        drift = fw.check()
        assert not drift.ok and drift.problem and "rules differ" in drift.problem
        # Re-applying repairs it.
        fw.apply(load_policy_text(POLICY, "p.yaml"))
        assert fw.check().ok and syn(HOST, 12222) == "dropped"
        # A rule rewritten under its own comment: a fresh read-back comparison (no baseline, as `ybgate
        # firewall verify` does it) still sees that it no longer filters what the policy says.
        listing = subprocess.run(
            ["ip", "netns", "exec", net.ns, "nft", "-a", "list", "chain", "inet", "ybgate", "outbound"],
            capture_output=True,
            text=True,
            timeout=15,
            check=True,
        ).stdout
        handle = next(ln.rsplit("handle ", 1)[1] for ln in listing.splitlines() if "ybgate: upstream" in ln)
        sh(
            "ip",
            "netns",
            "exec",
            net.ns,
            "nft",
            "replace",
            "rule",
            "inet",
            "ybgate",
            "outbound",
            "handle",
            handle,
            "oifname",
            NS_IF,
            "ip",
            "daddr",
            HOST,
            "tcp",
            "dport",
            "18444",
            "accept",
            "comment",
            f'"ybgate: upstream {HOST}:18443"',
        )
        assert connect_out(net.ns, 18444) == "open"
        fresh_view = mismatch(render(load_policy_text(POLICY, "p.yaml"), NS_IF), observe(Nft(net.ns).listing()))
        assert fresh_view == f"rule contents differ: ybgate: upstream {HOST}:18443"
        assert not fw.check().ok
        fw.apply(load_policy_text(POLICY, "p.yaml"))
        # An edit that keeps the comments is still drift (the contents are compared too).
        sh("ip", "netns", "exec", net.ns, "nft", "flush", "chain", "inet", "ybgate", "outbound")
        assert not fw.check().ok
        sh("ip", "netns", "exec", net.ns, "nft", "delete", "table", "inet", "ybgate")
        assert fw.check().problem == "table inet ybgate is missing"
        assert syn(HOST, 12222) == "synack"
    finally:
        listener.kill()
        listener.wait()
        for s in socks:
            s.close()


FETCH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    print(urllib.request.urlopen(sys.argv[1], timeout=2).read().decode())\n"
    "except OSError as e:\n"
    "    print('unreachable', e)\n"
)


def ns_metric(ns: str, port: int, name: str) -> float | None:
    out = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", FETCH, f"http://127.0.0.1:{port}/metrics"],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
    ).stdout
    return next((float(ln.rsplit(" ", 1)[1]) for ln in out.splitlines() if ln.startswith(name)), None)


async def test_daemon_applies_the_table_and_reports_drift_at_the_next_check(net: Net, short_tmp: Path) -> None:
    """The daemon in the namespace closes the interface at start, relays through the whitelisted upstream,
    and reports a hand edit of its table in /metrics at its next read-back."""
    sim = Simulator()
    addrs = await sim.start(HOST, 0, 0)
    interval = 1.0
    cfg = short_tmp / "ybgate.yaml"
    cfg.write_text(
        f"development: true\nstate_dir: {short_tmp}/state\nruntime_dir: {short_tmp}/run\nadmin: {{port: 19190}}\n"
        f"upstreams: [{{name: sim, host: {HOST}, port: {addrs.platform[1]}, transport: tcp}}]\n"
        + demo_policy(short_tmp, (HOST, addrs.platform[1]))
        + f"  firewall: {{enabled: true, interface: {NS_IF}, check_interval: {interval}}}\n"
    )
    proc = await asyncio.create_subprocess_exec(
        *["ip", "netns", "exec", net.ns, sys.executable, "-m", "gateway", "run", "--config", str(cfg)],
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        sock = short_tmp / "run" / "api.sock"
        for _ in range(100):
            if sock.exists() and ns_metric(net.ns, 19190, "ybgate_firewall_drift") is not None:
                break
            await asyncio.sleep(0.1)
        assert ns_metric(net.ns, 19190, "ybgate_firewall_drift") == 0.0
        reply = await request(
            "POST", PLATFORM_PATH, json.dumps(fresh("9001_signin_request.json")).encode(), unix_socket=str(sock)
        )
        assert reply.status == 200  # relayed through the whitelisted upstream, across the table
        assert syn(HOST, 12345) == "dropped"

        ok = 'ybgate_firewall_checks_total{result="ok"}'
        sh("ip", "netns", "exec", net.ns, "nft", "insert", "rule", "inet", "ybgate", "outbound", "accept")
        ok_after_edit = ns_metric(net.ns, 19190, ok) or 0
        async with asyncio.timeout(30):  # a guard: what is checked is counted in read-backs, not in seconds
            while ns_metric(net.ns, 19190, "ybgate_firewall_drift") != 1.0:  # noqa: ASYNC110 - another process
                await asyncio.sleep(0.1)
        assert (ns_metric(net.ns, 19190, 'ybgate_firewall_checks_total{result="drift"}') or 0) >= 1
        # At the next read-back: the only one that may still say "ok" after the edit is one that read the table
        # before it (at most one: they run one after another); every later one reports the drift, which is not
        # undone by itself.
        assert (ns_metric(net.ns, 19190, ok) or 0) <= ok_after_edit + 1
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
        await sim.stop()
