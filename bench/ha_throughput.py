"""The relay's throughput on one node with its outbox in PostgreSQL against one node on SQLite, in the same run
on the same machine (#26): the same closed-loop HIS load as bench/relay.py (its clients, each request with its own
msgid, through the durable outbox), against one simulator, the two backends alternating so that whatever else
the machine does falls on both."""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

import relay
from crash_mix import Envelopes
from crash_procs import free_port, spawn
from ha_nodes import Database, Node

BACKENDS = ("sqlite", "postgresql")
#: each backend's rounds, alternating: the figure is each one's median
ROUNDS = 2


async def measure(work: Path, db: Database, seconds: float, clients: int) -> dict[str, float]:
    """req/s per backend, or nothing when `seconds` is 0."""
    if not seconds:
        return {}
    port = free_port()
    sim = await spawn(work / "tput-sim.err", "sim", "--port", str(port), "--admin-port", str(free_port()))
    rates: dict[str, list[float]] = {b: [] for b in BACKENDS}
    try:
        await relay.wait_for(lambda: asyncio.open_connection("127.0.0.1", port), "simulator")
        dsn = db.dsn_file("tput")
        for n in range(ROUNDS):
            for backend in BACKENDS:
                node = Node(work, f"tput-{backend}-{n}", port, 60.0, dsn if backend == "postgresql" else None)
                await node.start(Envelopes())
                try:
                    sock = node.sock
                    rps, _ = await relay.closed_loop(
                        lambda s=sock: relay.KeepAliveClient(lambda: asyncio.open_unix_connection(s)),
                        clients,
                        seconds,
                    )
                    rates[backend].append(rps)
                finally:
                    await node.stop()
    finally:
        sim.terminate()
        await sim.wait()
    return {b: statistics.median(r) for b, r in rates.items()}
