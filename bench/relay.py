"""Relay throughput and added latency: the HIS calling the simulator directly vs through the gateway.

Both are measured in the same run on the same machine with the same client code, so the ratios mean
something on a shared 2-core box where absolute numbers do not. Traffic stays on loopback and a Unix
socket, bounded in time.

    python bench/relay.py [--seconds 5] [--clients 8] [--load 0.25] [--transport tcp|tlcp]

--load runs a paced phase as well, at that fraction of the direct path's throughput measured in the same run
(--rate N: N requests/s instead), for the latency the gateway adds at a load the machine carries. The targets
are ratios to the direct path measured in the same run, never absolute rates: throughput through the gateway at
least 0.3 of direct, and the gateway's CPU per request at most 3.7 times the direct path's (the load generator's
and the simulator's together), half of what it was when these targets were set. --gateway-python runs the
gateway with another interpreter (another revision's venv: bench/ab.py). --transport tlcp puts
the gateway's upstream leg on TLCP with mutual authentication, as on a 前置机 (a throwaway test PKI; the
HIS-direct baseline then speaks TLCP to the simulator too); --session-lifetime 0 turns session resumption off.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import figures

from gateway.crypto import Certificate, SM2PrivateKey
from gateway.http1.client import NoResponse, encode_request, exchange
from gateway.net.tlcp_stream import open_tlcp_connection
from gateway.net.tlcp_transport import chain_verifier
from gateway.tlcp import Credentials, TLCPConfig

PATH = "/fsi/api/rsfComIfsService/callService"
BODY = json.dumps(
    json.loads((Path(__file__).parent.parent / "tests/data/platform/9001_signin_request.json").read_text())
).encode()


_SEQ = itertools.count()
TEMPLATE = json.loads(BODY)


def his_tlcp_config(pki: Path) -> TLCPConfig:
    """The HIS-direct baseline over TLCP: the client identity of the test PKI, a new full handshake per connection
    (each load-generator connection is kept alive, so handshakes are rare on this side)."""
    creds = Credentials(
        SM2PrivateKey.from_pem((pki / "client_sign.key.pem").read_bytes()),
        Certificate.from_pem((pki / "client_sign.crt.pem").read_bytes()),
        SM2PrivateKey.from_pem((pki / "client_enc.key.pem").read_bytes()),
        Certificate.from_pem((pki / "client_enc.crt.pem").read_bytes()),
    )
    roots = Certificate.load_pem_chain((pki / "ca.crt.pem").read_bytes())
    return TLCPConfig(credentials=creds, verify_peer=chain_verifier(roots))


def next_request() -> bytes:
    """Each request with its own msgid, as a HIS sends them (a repeated msgid would be answered from the outbox)."""
    n = next(_SEQ)
    doc = TEMPLATE | {"msgid": f"H44030000001{20261124000000 + n // 10000:014d}{n % 10000:04d}"}
    return encode_request("POST", "bench", PATH, [("Content-Type", "application/json")], json.dumps(doc).encode())


class KeepAliveClient:
    """One persistent connection, as a HIS connection pool would hold."""

    def __init__(self, opener: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]) -> None:
        self.opener = opener
        self.conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def call(self) -> int:
        fresh = self.conn is None
        if self.conn is None:
            self.conn = await self.opener()
        try:
            reply = await exchange(*self.conn, next_request())
        except (ConnectionError, NoResponse):
            if fresh:
                raise
            # An idle keep-alive connection the server closed meanwhile: reconnect and send, as HTTP clients do.
            self.conn[1].close()
            self.conn = await self.opener()
            reply = await exchange(*self.conn, next_request())
        if not reply.keep_alive:
            self.conn[1].close()
            self.conn = None
        # A gateway failure comes as HTTP 200 (platform-shaped) by default: its header tells it from an answer.
        return 599 if reply.headers.get("x-ybgate-error") else reply.status

    async def warm(self) -> None:
        """Connect ahead of the measured window (over TLCP a connection costs a full handshake)."""
        if self.conn is None:
            self.conn = await self.opener()

    async def close(self) -> None:
        if self.conn is not None:
            self.conn[1].close()
            with contextlib.suppress(ConnectionError, OSError):
                await self.conn[1].wait_closed()
            self.conn = None


async def closed_loop(make: Callable[[], KeepAliveClient], clients: int, seconds: float) -> tuple[float, list[float]]:
    latencies: list[float] = []
    end = time.perf_counter() + seconds

    async def worker() -> None:
        c = make()
        try:
            while time.perf_counter() < end:
                t = time.perf_counter()
                status = await c.call()
                latencies.append(time.perf_counter() - t)
                assert status == 200
        finally:
            await c.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - t0), latencies


#: the paced phase's connections: a HIS's connection pool is bounded (tens per host, not one per request)
PACED_CONNECTIONS = 64


async def paced(make: Callable[[], KeepAliveClient], rate: float, seconds: float) -> list[float]:
    """Latencies of requests sent at `rate` over a pool of PACED_CONNECTIONS connections, as a HIS's connection
    pool sends them: a request that finds every connection busy waits for one, and its latency counts from when it
    was due, so an overloaded server shows as queueing in p99 rather than as requests that were never timed. A
    request whose connection failed counts as the whole phase long (it got no answer).

    The pool is bounded because an unbounded one only measures the listen backlog: a server that falls behind
    leaves new connections unaccepted, and past the backlog asyncio's Unix-socket connect reports success for a
    connection the kernel refused, which then fails on its first write ("Connection lost")."""
    latencies: list[float] = []
    failed: list[float] = []
    pool = [make() for _ in range(PACED_CONNECTIONS)]
    await asyncio.gather(*(c.warm() for c in pool))
    free: asyncio.Queue[KeepAliveClient] = asyncio.Queue()
    for c in pool:
        free.put_nowait(c)
    waited = 0

    async def one(due: float) -> None:
        nonlocal waited
        if free.empty():
            waited += 1
        c = await free.get()
        try:
            await c.call()
        except (ConnectionError, NoResponse):
            failed.append(time.perf_counter() - due)
            c.conn = None  # the next request on it reconnects
        else:
            latencies.append(time.perf_counter() - due)
        free.put_nowait(c)

    tasks = []
    t0 = time.perf_counter()
    for i in range(int(rate * seconds)):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due)))
    await asyncio.gather(*tasks)
    await asyncio.gather(*(c.close() for c in pool))
    if waited:
        print(
            f"paced phase at {rate:.0f} req/s: {waited} of {len(tasks)} requests waited for one of the "
            f"{PACED_CONNECTIONS} connections (the server was behind)"
        )
    if failed:
        print(f"paced phase at {rate:.0f} req/s: {len(failed)} of {len(tasks)} requests lost their connection")
    return latencies + [seconds] * len(failed)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_for(
    check: Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]], what: str
) -> None:
    for _ in range(200):
        try:
            _, writer = await check()
        except OSError:
            await asyncio.sleep(0.05)
        else:
            writer.close()
            return
    raise RuntimeError(f"{what} did not start")


async def main(
    seconds: float,
    clients: int,
    rate: float,
    synchronous: str,
    json_path: str | None = None,
    transport: str = "tcp",
    session_lifetime: float = 300.0,
    load: float = 0.0,
    gateway_python: str = sys.executable,
) -> None:
    # Simulator, gateway and load generator each in their own process, as in the field: a single event
    # loop for all three would charge the gateway path for the simulator's work twice.
    work = Path(tempfile.mkdtemp(prefix="ybg-bench-"))
    host, port = "127.0.0.1", free_port()
    sock = work / "run/api.sock"
    cfg = work / "ybgate.yaml"
    pki = work / "pki"
    tlcp = transport == "tlcp"
    upstream = f"{{name: sim, host: {host}, port: {port}, transport: {transport}"
    upstream += f", tlcp: {{session_lifetime: {session_lifetime}}}}}" if tlcp else "}"
    cfg.write_text(
        f"development: true\nstate_dir: {work}/state\nruntime_dir: {work}/run\nadmin: {{enabled: false}}\n"
        f"upstreams: [{upstream}]\nlogging: {{level: warning}}\n"
        f"relay: {{outbox_synchronous: {synchronous}}}\n"
        + (
            f"identity: {{sign_cert: {pki}/client_sign.crt.pem, sign_key: {pki}/client_sign.key.pem, "
            f"enc_cert: {pki}/client_enc.crt.pem, enc_key: {pki}/client_enc.key.pem, ca_bundle: {pki}/ca.crt.pem}}\n"
            if tlcp
            else ""
        )
    )
    quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
    if tlcp:
        gen = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "certs", "gen-test-pki", str(pki), **quiet
        )
        if await gen.wait():
            raise RuntimeError("ybgate certs gen-test-pki failed")
    sim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "sim",
        "--port",
        str(port),
        "--admin-port",
        str(free_port()),
        *(["--pki", str(pki)] if tlcp else []),
        **quiet,
    )
    # cwd: the work directory, never the checkout: `python -m` looks in the working directory first, so another
    # revision's interpreter started in this checkout would run this tree's gateway, not its own
    gw = await asyncio.create_subprocess_exec(
        gateway_python, "-m", "gateway", "run", "--config", str(cfg), cwd=work, **quiet
    )
    if tlcp:
        his_tlcp = his_tlcp_config(pki)
        direct = lambda: KeepAliveClient(  # noqa: E731
            lambda: open_tlcp_connection(host, port, config=his_tlcp)  # type: ignore[arg-type, return-value]
        )
    else:
        direct = lambda: KeepAliveClient(lambda: asyncio.open_connection(host, port))  # noqa: E731
    gateway = lambda: KeepAliveClient(lambda: asyncio.open_unix_connection(str(sock)))  # noqa: E731
    try:
        await wait_for(lambda: asyncio.open_connection(host, port), "simulator")  # a bare connect: no handshake
        await wait_for(lambda: asyncio.open_unix_connection(str(sock)), "gateway")
        sim_before, me_before = cpu_seconds(sim.pid), time.process_time()
        d_rps, d_lat = await closed_loop(direct, clients, seconds)
        sim_cpu = (cpu_seconds(sim.pid) - sim_before) / len(d_lat)
        # the direct path's whole CPU per request: the simulator's and this load generator's
        direct_cpu = sim_cpu + (time.process_time() - me_before) / len(d_lat)
        gw_before, sim_before, me_before = cpu_seconds(gw.pid), cpu_seconds(sim.pid), time.process_time()
        g_rps, g_lat = await closed_loop(gateway, clients, seconds)
        # CPU per request is steadier than req/s on a shared machine: it does not depend on who else ran. The
        # direct path's CPU per request (the load generator's and the simulator's HTTP, JSON, ledger) is the
        # yardstick of one hop's work.
        gw_cpu = (cpu_seconds(gw.pid) - gw_before) / len(g_lat)
        rows = [
            ("throughput, req/s", d_rps, g_rps),
            ("CPU per request, µs", direct_cpu * 1e6, gw_cpu * 1e6),
            ("p50 latency, ms", pct(d_lat, 0.5), pct(g_lat, 0.5)),
            ("p99 latency, ms", pct(d_lat, 0.99), pct(g_lat, 0.99)),
        ]
        if load:
            rate = load * d_rps
        if rate:
            dp = await paced(direct, rate, seconds)
            gp = await paced(gateway, rate, seconds)
            rows += [
                (f"p50 at {rate:.0f} req/s, ms", pct(dp, 0.5), pct(gp, 0.5)),
                (f"p99 at {rate:.0f} req/s, ms", pct(dp, 0.99), pct(gp, 0.99)),
            ]
            added99 = pct(gp, 0.99) - pct(dp, 0.99)
            added50 = statistics.median(gp) * 1000 - statistics.median(dp) * 1000
    finally:
        for proc in (gw, sim):
            proc.terminate()
            await proc.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; {clients} clients, {seconds:.0f} s each; "
        f"outbox synchronous={synchronous}; upstream {transport}"
        + (f" (session resumption {'off' if not session_lifetime else f'{session_lifetime:.0f} s'})" if tlcp else "")
    )
    print(f"{'figure':<28}{'direct':>12}{'ybgate':>12}{'ratio':>10}")
    for name, base, ours in rows:
        print(f"{name:<28}{base:>12.1f}{ours:>12.1f}{ours / base:>9.2f}x")
    if rate:
        print(f"added latency at {rate:.0f} req/s: p50 {added50:.2f} ms, p99 {added99:.2f} ms")
    mode = "" if synchronous == "FULL" else f" (synchronous={synchronous})"
    if tlcp:
        mode += " over TLCP" + ("" if session_lifetime else " without resumption")
    found = [
        figures.Figure(
            f"relay durable req/s{mode}", rows[0][2], rows[0][1], "HIS → simulator direct", target="ratio>=0.3"
        ),
        figures.Figure(f"relay p50 latency ms{mode}", rows[2][2], rows[2][1], "HIS → simulator direct", unit="ms"),
        figures.Figure(
            f"relay gateway CPU per request µs{mode}",
            rows[1][2],
            rows[1][1],
            "the direct path's: load generator + simulator",
            unit="µs",
            target="ratio<=3.7",
        ),
    ]
    if rate:
        at = f"{load:.2f} of direct capacity ({rate:.0f} req/s)" if load else f"{rate:.0f} req/s"
        found.append(
            figures.Figure(
                f"relay p99 added at {at} ms{mode}",
                added99,
                None,
                "p99 through the gateway minus p99 direct",
                unit="ms",
                target="max=5",
            )
        )
    figures.write(
        json_path, "relay", found, clients=clients, seconds=seconds, synchronous=synchronous, transport=transport
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--rate", type=float, default=0, help="paced phase at this many requests/s")
    ap.add_argument("--load", type=float, default=0.25, help="paced phase at this fraction of direct throughput")
    ap.add_argument("--gateway-python", default=sys.executable, help="the interpreter that runs the gateway")
    ap.add_argument("--synchronous", choices=["FULL", "NORMAL"], default="FULL", help="the outbox's sync mode")
    ap.add_argument("--transport", choices=["tcp", "tlcp"], default="tcp", help="the gateway's upstream leg")
    ap.add_argument("--session-lifetime", type=float, default=300.0, help="TLCP session resumption window, s (0: off)")
    ap.add_argument("--json", help="also write the figures as JSON to this file")
    a = ap.parse_args()
    asyncio.run(
        main(
            a.seconds,
            a.clients,
            a.rate,
            a.synchronous,
            a.json,
            a.transport,
            a.session_lifetime,
            0.0 if a.rate else a.load,
            a.gateway_python,
        )
    )
