"""The pair's floating address (#26): docs/deploy.md's keepalived.conf, run by Debian's keepalived in network
namespaces this test creates — a LAN bridge, two 前置机 (fe1, fe2) each with a real gateway process on one real
PostgreSQL outbox, and this side of a veth as the LAN where the HIS and the platform simulator sit.

fe1 holds the address and answers; then fe1 dies (every process in it SIGKILLed, its link down). VRRP moves the
address to fe2, and two HIS keep working: one calling the floating address (it asks the same msgid again when a
call gets no answer), one configured with both hosts' own addresses (it asks the other). Every msgid ends with a
definite answer that the simulator's ledger bears out, nothing is booked twice, and the work fe1 held is settled
by fe2 (lease, then the class rules)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pg_cluster
import pytest
import pytest_asyncio

from gateway.http1.client import BadUpstreamResponse
from gateway.http1.unix_client import request
from gateway.sim.server import Simulator

from conftest import PLATFORM_PATH, example, fresh

pytestmark = pytest.mark.root

DOCS = Path(__file__).resolve().parents[2] / "docs" / "deploy.md"
_NET = f"10.251.{os.getpid() % 250 + 1}"
VIP, HOST = f"{_NET}.10", f"{_NET}.200"
OWN = {"fe1": f"{_NET}.11", "fe2": f"{_NET}.12"}
PORT, ADMIN = 8097, 9100
LEASE, SETTLE = 3.0, 2.0
#: definite answers: what the HIS may act on (0: booked; the others: not booked)
BOOKED, NOT_BOOKED = {"infcode 0"}, {"not_processed", "reversed"}


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=15).stdout


def keepalived_conf(node: str, interface: str, status: str) -> str:
    """The deploy guide's keepalived.conf for `node`: its interface, the test's address and status command."""
    block = re.search(r"```conf\n(.*?)```", DOCS.read_text("utf-8"), re.S)
    assert block is not None, "docs/deploy.md has no keepalived.conf block"
    text = block[1]
    for old, new in (
        ("ens192", interface),
        ("192.168.10.10/24", f"{VIP}/24"),
        ("/usr/bin/ybgate status --config /etc/ybgate/ybgate.yaml", status),
        ("script_user ybgate", "script_user root"),  # the test's gateways run as root
    ):
        assert old in text, f"the guide's keepalived.conf no longer has {old!r}"
        text = text.replace(old, new)
    return text.replace("priority 150", "priority 100") if node == "fe2" else text


def ybgate_command(work: Path) -> Path:
    """`ybgate` as the package installs it: a script whose first line names its interpreter. (keepalived runs a
    check script by its resolved path; this venv's python resolves to the base interpreter, which outside the
    venv cannot import the gateway.)"""
    command = work / "bin" / "ybgate"
    if not command.exists():
        command.parent.mkdir(mode=0o755)
        command.write_text(f'#!/bin/sh\nexec {sys.executable} -m gateway "$@"\n')
        command.chmod(0o755)
    return command


@dataclass
class Lan:
    prefix: str
    work: Path
    namespaces: dict[str, str] = field(default_factory=dict)

    def ns(self, name: str) -> str:
        return self.namespaces[name]

    def holds_vip(self, node: str) -> bool:
        return f"{VIP}/24" in sh("ip", "-n", self.ns(node), "-4", "addr", "show", "dev", "lan0")


@pytest.fixture
def lan() -> Iterator[Lan]:
    if shutil.which("keepalived") is None:
        pytest.fail("keepalived is not installed (Debian: apt-get install keepalived); .ci/run installs it")
    tag = f"ybv{os.getpid() % 100000}"
    net = Lan(tag, Path(tempfile.mkdtemp(prefix="ybg-vrrp-")))
    host_if = f"{tag}h"
    try:
        for name in ("lan", "fe1", "fe2"):
            net.namespaces[name] = f"{tag}-{name}"
            sh("ip", "netns", "add", net.namespaces[name])
        lan_ns = net.ns("lan")
        sh("ip", "-n", lan_ns, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", lan_ns, "link", "set", "br0", "up")
        for node, address in OWN.items():
            ns = net.ns(node)
            sh("ip", "-n", lan_ns, "link", "add", f"p-{node}", "type", "veth", "peer", "name", "lan0", "netns", ns)
            sh("ip", "-n", lan_ns, "link", "set", f"p-{node}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "lan0")
            sh("ip", "-n", ns, "link", "set", "lan0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            # the gateway listens on the floating address before it holds it (the guide's sysctl)
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1")
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "p-host", "netns", lan_ns)
        sh("ip", "-n", lan_ns, "link", "set", "p-host", "master", "br0", "up")
        sh("ip", "addr", "add", f"{HOST}/24", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        yield net
    finally:
        for ns in net.namespaces.values():
            pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, check=False).stdout
            for pid in pids.split():
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, timeout=15, check=False)
        for ns in net.namespaces.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=15, check=False)
        if os.environ.get("YBGATE_KEEP"):
            print(f"kept: {net.work}")
        else:
            shutil.rmtree(net.work, ignore_errors=True)


@pytest_asyncio.fixture
async def platform(lan: Lan) -> AsyncIterator[Simulator]:
    sim = Simulator()
    await sim.start(HOST, 0, 0)
    try:
        yield sim
    finally:
        await sim.stop()


def node_config(lan: Lan, node: str, sim_port: int, dsn_file: Path) -> Path:
    root = lan.work / node
    (root / "policy").mkdir(parents=True)
    (root / "run").mkdir()
    (root / "policy" / "lan.yaml").write_text(
        "groups: {everything: ['*']}\n"
        f"clients: [{{name: lan-his, tcp: {{cidrs: ['{_NET}.0/24']}}, allow: [everything]}}]\n"
        f"upstreams: [{{host: {HOST}, port: {sim_port}}}]\n"
    )
    config = root / "ybgate.yaml"
    config.write_text(
        f"development: true\nstate_dir: {root}/state\nruntime_dir: {root}/run\n"
        f"api: {{socket: {root}/run/api.sock, "
        f"tcp: [{{host: {VIP}, port: {PORT}}}, {{host: {OWN[node]}, port: {PORT}}}]}}\n"
        f"admin: {{port: {ADMIN}}}\nlogging: {{level: info}}\npolicy: {{paths: [{root}/policy]}}\n"
        f"relay: {{reversal_settle: {SETTLE}, outbox: {{backend: postgresql, dsn_file: {dsn_file}, node: {node}, "
        f"lease: {LEASE}}}}}\n"
        f"upstreams: [{{name: sim, role: primary, host: {HOST}, port: {sim_port}, transport: tcp}}]\n"
    )
    return config


def spawn_in(lan: Lan, node: str, log: Path, *argv: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(["ip", "netns", "exec", lan.ns(node), *argv], stdout=out, stderr=out)


async def post(address: str, doc: dict[str, Any]) -> str | None:
    """One HIS call: the answer's kind, or None when the call got no answer (refused, cut, timed out)."""
    body = json.dumps(doc, ensure_ascii=False).encode()
    try:
        reply = await request("POST", PLATFORM_PATH, body, host=address, port=PORT, time_limit=15)
    except (OSError, TimeoutError, BadUpstreamResponse):
        return None
    answer = json.loads(reply.body)
    return str(answer.get("gateway_error") or f"infcode {answer.get('infcode')}")


class His:
    """A HIS workstation: settlements for a person of its own, each msgid asked until the answer is definite —
    again at the same address (`addresses` one: the floating one), or at the next one."""

    def __init__(self, name: str, addresses: list[str], sign_no: str, psn_no: str) -> None:
        self.name, self.addresses, self.sign_no, self.psn_no = name, addresses, sign_no, psn_no
        self.told: dict[str, str] = {}  # msgid -> the definite answer
        self.unanswered = 0  # calls that got no answer (the address moving, a host dead)
        self.after_move = 0  # definite answers once the address moved
        self.longest_gap = 0.0  # seconds between two definite answers: what the cashier waited at the most
        self.moved = asyncio.Event()
        self.stop = asyncio.Event()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        at, last = 0, loop.time()
        while not self.stop.is_set():
            doc = fresh("2207_settle_request.json", sign_no=self.sign_no)
            doc["input"]["data"]["psn_no"] = self.psn_no
            for _ in range(200):
                kind = await post(self.addresses[at], doc)
                if kind in BOOKED | NOT_BOOKED:
                    self.told[doc["msgid"]] = kind
                    self.after_move += self.moved.is_set()
                    self.longest_gap, last = max(self.longest_gap, loop.time() - last), loop.time()
                    break
                self.unanswered += kind is None
                at = (at + 1) % len(self.addresses)
                await asyncio.sleep(0.2)
            else:
                raise AssertionError(f"{self.name}: {doc['msgid']} got no definite answer")


async def wait_for(what: str, check: Callable[[], bool], limit: float = 60.0) -> None:
    """Until `check` (run off the loop: it may run a command) holds; a bound on a hang, not a timing."""
    loop = asyncio.get_running_loop()
    end = loop.time() + limit
    while not await asyncio.to_thread(check):
        if loop.time() > end:
            raise AssertionError(f"not within {limit:.0f} s: {what}")
        await asyncio.sleep(0.1)


async def test_the_floating_address_moves_to_the_survivor_and_every_his_call_is_answered(
    own_pg: pg_cluster.Cluster, lan: Lan, platform: Simulator
) -> None:
    assert platform.addresses is not None
    dsn_file = own_pg.dsn_file(lan.work / "outbox.dsn", "pair")
    procs: dict[str, list[subprocess.Popen[bytes]]] = {"fe1": [], "fe2": []}
    for node in ("fe1", "fe2"):
        config = node_config(lan, node, platform.addresses.platform[1], dsn_file)
        procs[node].append(spawn_in(lan, node, lan.work / f"{node}.log", sys.executable, "-m", "gateway", "run",
                                    "--config", str(config)))  # fmt: skip
        await wait_for(f"{node}'s gateway answers", lambda n=node: _answers(OWN[n]))
    for node in ("fe1", "fe2"):  # fe1 first: the first to come up holds the address (both start as BACKUP)
        status = f"{ybgate_command(lan.work)} status --config {lan.work / node / 'ybgate.yaml'}"
        conf = lan.work / node / "keepalived.conf"
        conf.write_text(keepalived_conf(node, "lan0", status))
        pids = [f"--pid={lan.work / node / 'keepalived.pid'}", f"--vrrp_pid={lan.work / node / 'vrrp.pid'}"]
        procs[node].append(spawn_in(lan, node, lan.work / f"{node}.keepalived.log", "keepalived", "--dont-fork",
                                    "--log-console", "--vrrp", f"--use-file={conf}", *pids))  # fmt: skip
        if node == "fe1":
            await wait_for("fe1 holds the floating address", lambda: lan.holds_vip("fe1"))
    sign_no = _sign_no(await _sign_in(VIP))
    floating = His("floating", [VIP], sign_no, "44000000000000000101")
    both = His("both", [OWN["fe1"], OWN["fe2"]], sign_no, "44000000000000000102")
    tasks = [asyncio.create_task(h.run()) for h in (floating, both)]
    try:
        await wait_for("answers through fe1", lambda: len(floating.told) >= 10 and len(both.told) >= 10)
        assert not lan.holds_vip("fe2")
        # fe1 dies: every process in it at once, and its link
        for pid in sh("ip", "netns", "pids", lan.ns("fe1")).split():
            os.kill(int(pid), signal.SIGKILL)
        sh("ip", "-n", lan.ns("fe1"), "link", "set", "lan0", "down")
        for his in (floating, both):
            his.moved.set()
        await wait_for("fe2 holds the floating address", lambda: lan.holds_vip("fe2"))
        await wait_for("answers after the move", lambda: floating.after_move >= 10 and both.after_move >= 10)
    finally:
        for his in (floating, both):
            his.stop.set()
        await asyncio.gather(*tasks)
    owners = await asyncio.to_thread(_owners, own_pg)
    # fe1's unfinished work is fe2's once the lease lapsed: nothing stays unfinished
    await wait_for("no row left unfinished", lambda: not _unfinished(own_pg), limit=30)
    for his in (floating, both):
        print(f"{his.name}: {len(his.told)} msgids, {his.unanswered} calls without an answer, longest wait "
              f"between two answers {his.longest_gap:.1f} s")  # fmt: skip
        for msgid, kind in his.told.items():
            booked = [s for s in platform.ledger.by_msgid(msgid) if s.state == "booked"]
            assert len(platform.ledger.by_msgid(msgid)) <= 1, f"{msgid} booked twice"
            assert bool(booked) == (kind in BOOKED), (his.name, msgid, kind, booked)
    # the floating address was fe1's, then fe2's
    early, late = list(floating.told)[:5], list(floating.told)[-5:]
    assert all(owners.get(m, "").startswith("fe1/") for m in early), {m: owners.get(m) for m in early}
    assert all(owners.get(m, "").startswith("fe2/") for m in late), {m: owners.get(m) for m in late}


def _answers(address: str) -> bool:
    return asyncio.run(_sign_in(address)) is not None


async def _sign_in(address: str) -> dict[str, Any] | None:
    try:
        reply = await request(
            "POST", PLATFORM_PATH, json.dumps(example("9001_signin_request.json")).encode(),
            host=address, port=PORT, time_limit=5,
        )  # fmt: skip
    except (OSError, TimeoutError, BadUpstreamResponse):
        return None
    doc = json.loads(reply.body)
    return doc if str(doc.get("infcode")) == "0" else None


def _sign_no(answer: dict[str, Any] | None) -> str:
    assert answer is not None, "no sign-in through the floating address"
    return str(answer["output"]["signinoutb"]["sign_no"])


def _owners(cluster: pg_cluster.Cluster) -> dict[str, str]:
    rows = cluster.psql("SELECT msgid, owner FROM outbox", dbname="pair")
    return dict(line.split("|", 1) for line in rows.splitlines() if line)


def _unfinished(cluster: pg_cluster.Cluster) -> list[str]:
    finals = "'answered', 'reversed', 'failed', 'confirmed'"
    return cluster.psql(f"SELECT msgid FROM outbox WHERE state NOT IN ({finals})", dbname="pair").split()
