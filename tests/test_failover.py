"""Primary/backup upstreams under load: the primary going away moves traffic to the backup with every HIS
call answered; its return moves traffic back once it has been healthy for failback_after."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from gateway.app.daemon import Daemon
from gateway.config import load_config_text
from gateway.http1.unix_client import request
from gateway.sim.ledger import Ledger
from gateway.sim.platform import SimPlatform
from gateway.sim.server import Simulator

from conftest import PLATFORM_PATH, fresh


async def test_failover_and_failback_under_load(short_tmp: Path) -> None:
    # Both simulators share one platform (one ledger, one sign-in table), as primary and backup links reach the
    # same provincial platform.
    platform = SimPlatform(Ledger())
    primary, backup = Simulator(platform), Simulator(platform)
    p_addr, b_addr = await primary.start(), await backup.start()
    cfg = load_config_text(
        f"development: true\nstate_dir: {short_tmp}/state\nruntime_dir: {short_tmp}/run\nadmin: {{port: 0}}\n"
        "failover: {failures_to_open: 2, cooldown: 0.3, cooldown_max: 1, successes_to_close: 1,"
        " failback_after: 1.0, probe_interval: 0.2}\n"
        "upstreams:\n"
        f"  - {{name: primary, role: primary, host: 127.0.0.1, port: {p_addr.platform[1]}, transport: tcp}}\n"
        f"  - {{name: backup, role: backup, host: 127.0.0.1, port: {b_addr.platform[1]}, transport: tcp}}\n"
    )
    daemon = Daemon(cfg)
    await daemon.start()
    sock = str(cfg.api_socket)
    log: list[tuple[float, int, str]] = []  # (time, status, which simulator answered)
    stop = asyncio.Event()

    async def his() -> None:
        while not stop.is_set():
            sent = time.monotonic()
            reply = await request(
                "POST",
                PLATFORM_PATH,
                json.dumps(fresh("9001_signin_request.json")).encode(),
                unix_socket=sock,
                time_limit=10,
            )
            log.append((sent, reply.status, daemon.pool.active if daemon.pool else "?"))
            await asyncio.sleep(0.01)

    clients = [asyncio.create_task(his()) for _ in range(3)]
    try:
        await asyncio.sleep(0.5)
        assert daemon.pool is not None and daemon.pool.active == "primary"
        cut = time.monotonic()
        await primary.stop()
        while daemon.pool.active != "backup":
            assert time.monotonic() - cut < 3.0, "no failover within 3 s"
            await asyncio.sleep(0.02)
        failover_s = time.monotonic() - cut
        await asyncio.sleep(0.5)
        back = time.monotonic()
        await primary.start(port=p_addr.platform[1], admin_port=0)
        while daemon.pool.active != "primary":
            assert time.monotonic() - back < 5.0, "no failback"
            await asyncio.sleep(0.02)
        failback_s = time.monotonic() - back
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*clients)
        await daemon.stop(1)
        await primary.stop()
        await backup.stop()
    assert all(status == 200 for _, status, _ in log), [s for s in log if s[1] != 200][:3]
    assert failover_s < 3.0
    assert 1.0 <= failback_s < 5.0  # not before the primary was healthy for failback_after
    assert {"primary", "backup"} <= {who for _, _, who in log}
    switches = daemon.metrics.failovers
    assert switches.labels("primary", "backup")._value.get() >= 1
    assert switches.labels("backup", "primary")._value.get() >= 1
