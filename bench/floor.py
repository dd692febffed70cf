"""The floor under the relay's CPU per request: what the work every relayed request must do costs by itself.

    python bench/floor.py [--seconds 5] [--clients 8] [--requests 8000] [--json out.json]

A request through the gateway is stored durably before it is sent and its answer before it is returned (two
SQLite statements, their share of the group commits and their fsyncs), recorded in the audit chain, and carried
over HTTP twice, as a server to the HIS and as a client to the platform, reading its JSON. Each part is measured
here alone, in the same run:

- the outbox as the gateway uses it (SqliteOutbox: accept straight to SENDING, then the answer, `--clients`
  callers at once, synchronous=FULL), and the same statements and commits made with sqlite3 directly, in groups
  of the size the outbox formed: what SQLite itself costs, and what the outbox adds;
- the audit chain, one outcome entry each (AuditLog: sealed, written, fsynced in groups);
- a bare HTTP hop, both its ends: relay.py's load generator (the client end) against the gateway's own HTTP/1.1
  server on uvloop that reads each request's JSON and answers a fixed answer (the server end). The load
  generator writes each request's JSON where the gateway reads the answer's: about the same work.

SQLite's own cost, the audit entry and the bare hop together are the floor: the CPU a relayed request costs
with nothing else (envelope checks, policy, deadlines, metrics, access log, the outbox's and forwarder's code).
relay.py's "gateway CPU per request" less this floor is the gateway's overhead, the part its code can still cut.
The callers here do nothing between their outbox calls, so they meet in larger commit groups than the relay's
(whose upstream exchange spaces them out): fewer fsyncs per request, so this floor is, if anything, low. The
direct path (load generator and simulator) is measured too, as relay.py's baseline for the same run.
Files go to a temporary directory; traffic stays on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import figures
import uvloop
from relay import KeepAliveClient, closed_loop, cpu_seconds, free_port, wait_for

from gateway.audit.log import AuditLog, Outcome
from gateway.crypto import sm3
from gateway.http1 import Limits, Request, Response
from gateway.http1.listen import start_tcp
from gateway.http1.server import Http1Server
from gateway.platform.catalogue import TxClass
from gateway.relay.outbox import SqliteOutbox
from gateway.relay.states import RowState

REQUEST = (Path(__file__).parent.parent / "tests/data/platform/9001_signin_request.json").read_bytes()
ANSWER = b'{"infcode":0,"output":{"signinoutb":{"sign_time":"2026-11-24 08:00:01","sign_no":"123456"}}}'


def msgid(n: int) -> str:
    return f"H44030000001{20261124000000 + n // 10000:014d}{n % 10000:04d}"


async def outbox_cost(path: Path, clients: int, requests: int) -> tuple[float, float]:
    """CPU per request of the gateway's outbox (accept + answer), and the operations per commit it formed."""
    outbox = SqliteOutbox(path, digest=sm3)
    await outbox.start()
    seq = itertools.count()

    async def caller(count: int) -> None:
        for _ in range(count):
            m = msgid(next(seq))
            await outbox.accept(
                msgid=m, infno="9001", tx_class=TxClass.SAFE, psn_no=None, body=REQUEST, deadline=None, send=True
            )
            await outbox.move(m, RowState.ANSWERED, response=ANSWER, upstream="sim")

    await asyncio.gather(*(caller(requests // clients // 5) for _ in range(clients)))  # warm-up
    commits, operations = outbox.commits, outbox.operations
    before = time.process_time()  # every thread's: the commit and checkpoint threads are the outbox's too
    await asyncio.gather(*(caller(requests // clients) for _ in range(clients)))
    cpu = (time.process_time() - before) / (requests // clients * clients)
    per_commit = (outbox.operations - operations) / max(1, outbox.commits - commits)
    await outbox.stop()
    return cpu, per_commit


def sqlite_cost(path: Path, requests: int, per_commit: float) -> float:
    """CPU per request of the outbox's statements and commits made with sqlite3 directly, on the outbox's own
    schema (created by SqliteOutbox), synchronous=FULL in WAL mode: each group inserts half its operations as
    new requests and stores answers for the other half, inserted by the group before."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    columns = [r[1] for r in conn.execute("PRAGMA table_info(outbox)")]
    insert = f"INSERT INTO outbox ({','.join(columns)}) VALUES ({','.join('?' * len(columns))})"
    update = "UPDATE outbox SET state = ?, updated = ?, response = ?, upstream = ? WHERE msgid = ? RETURNING *"
    half = max(1, round(per_commit / 2))
    seq = itertools.count(10**6)
    waiting: list[str] = []

    def row(m: str) -> tuple[object, ...]:
        now = time.time()
        values: dict[str, object] = dict.fromkeys(columns)
        values |= {"msgid": m, "infno": "9001", "tx_class": "safe", "state": "sending", "attempts": 1}
        values |= {"created": now, "updated": now, "body_digest": sm3(REQUEST), "request": REQUEST}
        return tuple(values[c] for c in columns)

    before, done = time.process_time(), 0
    while done < requests:
        conn.execute("BEGIN IMMEDIATE")
        for m in waiting:
            conn.execute(update, ("answered", time.time(), ANSWER, "sim", m)).fetchone()
        done += len(waiting)
        waiting = [msgid(next(seq)) for _ in range(half)]
        for m in waiting:
            conn.execute(insert, row(m))
        conn.execute("COMMIT")
    cpu = (time.process_time() - before) / done
    conn.close()
    return cpu


async def audit_cost(directory: Path, requests: int) -> float:
    """CPU per outcome of the audit chain: entries recorded as the outbox reports them, in small groups."""
    audit = AuditLog(directory)
    audit.open()
    digest = sm3(REQUEST)
    before = time.process_time()
    for n in range(0, requests, 4):
        audit.record(
            Outcome(msgid(n + k), "9001", "answered", None, "sim", digest, ANSWER, time.time()) for k in range(4)
        )
        await asyncio.sleep(0)  # the event loop turns between groups, as it does between commits
    await audit.close()
    return (time.process_time() - before) / requests


async def bare_server(port: int) -> None:
    """The server end of a bare hop: the gateway's HTTP/1.1 server on the daemon's event loop, reading each
    request's JSON and answering a fixed platform answer; nothing else."""

    async def handle(request: Request) -> Response:
        json.loads(request.body)
        return Response(200, ANSWER)

    refuse = lambda err: Response(err.http_status, b"{}")  # noqa: E731
    server = await start_tcp(Http1Server(handle, refuse, Limits()), "127.0.0.1", port)
    async with server:
        await server.serve_forever()


async def hop_cost(seconds: float, clients: int, bare: bool) -> float:
    """CPU per request of one HTTP hop with both its ends: relay.py's load generator against the simulator (its
    direct path), or against a bare server (bare_server)."""
    host, port = "127.0.0.1", free_port()
    quiet = {"stdout": asyncio.subprocess.DEVNULL, "stderr": asyncio.subprocess.DEVNULL}
    server = ["-m", "gateway", "sim", "--port", str(port), "--admin-port", str(free_port())]
    if bare:
        server = [__file__, "--bare-server", str(port)]
    peer = await asyncio.create_subprocess_exec(sys.executable, *server, **quiet)
    try:
        await wait_for(lambda: asyncio.open_connection(host, port), "the hop's server")
        direct = lambda: KeepAliveClient(lambda: asyncio.open_connection(host, port))  # noqa: E731
        peer_before, me_before = cpu_seconds(peer.pid), time.process_time()
        _, latencies = await closed_loop(direct, clients, seconds)
        return (cpu_seconds(peer.pid) - peer_before + time.process_time() - me_before) / len(latencies)
    finally:
        peer.terminate()
        await peer.wait()


def main(seconds: float, clients: int, requests: int, json_path: str | None) -> None:
    work = Path(tempfile.mkdtemp(prefix="ybg-floor-"))
    try:
        # the outbox and the audit chain on the daemon's event loop; the hops' clients on relay.py's
        outbox, per_commit = uvloop.run(outbox_cost(work / "outbox.db", clients, requests))
        raw = sqlite_cost(work / "outbox.db", requests, per_commit)
        audit = uvloop.run(audit_cost(work / "audit", requests))
        hop = asyncio.run(hop_cost(seconds, clients, bare=True))
        direct = asyncio.run(hop_cost(seconds, clients, bare=False))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    floor = raw + audit + hop
    print(f"{clients} callers; outbox synchronous=FULL, {per_commit:.1f} operations per commit")
    rows = [
        ("durable outbox", outbox, f"{raw * 1e6:.1f} with sqlite3 directly"),
        ("audit entry", audit, ""),
        ("bare HTTP hop", hop, "load generator + the gateway's HTTP server reading the JSON"),
        ("floor", floor, "SQLite directly + audit entry + bare hop"),
        ("direct path", direct, "load generator + simulator (relay.py's baseline)"),
    ]
    print(f"{'part':<20}{'CPU µs/request':>16}")
    for name, value, note in rows:
        print(f"{name:<20}{value * 1e6:>16.1f}  {note}")
    figures.write(
        json_path,
        "floor",
        [
            figures.Figure("outbox CPU per request µs", outbox * 1e6, raw * 1e6, "sqlite3 directly", unit="µs"),
            figures.Figure("relay floor CPU per request µs", floor * 1e6, direct * 1e6, "the direct path's", unit="µs"),
        ],
        clients=clients,
        seconds=seconds,
        requests=requests,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5, help="each HTTP hop's closed loop")
    ap.add_argument("--clients", type=int, default=8, help="concurrent callers, as in relay.py")
    ap.add_argument("--requests", type=int, default=8000, help="requests through the outbox and the audit chain")
    ap.add_argument("--json", help="also write the figures as JSON to this file")
    ap.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)  # the bare hop's server
    args = ap.parse_args()
    if args.bare_server:
        uvloop.run(bare_server(args.bare_server))
    else:
        main(args.seconds, args.clients, args.requests, args.json)
