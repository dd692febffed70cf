"""Primary/backup upstreams under load: the primary going away moves traffic to the backup with every HIS
call answered; its return moves traffic back once it has been healthy for failback_after."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from test_status_page import Cells, chromium

from gateway.app.daemon import Daemon
from gateway.config import load_config, load_config_text
from gateway.http1.unix_client import request
from gateway.sim.ledger import Ledger
from gateway.sim.platform import SimPlatform
from gateway.sim.server import Simulator

from conftest import PLATFORM_PATH, fresh, until


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
    pool = daemon.pool
    assert pool is not None
    try:
        with structlog.testing.capture_logs() as logs:
            await until(lambda: len(log) >= 20)
            assert pool.active == "primary"
            cut = len(log)
            await primary.stop()
            await until(lambda: pool.active == "backup")
            await until(lambda: len(log) >= cut + 20)  # calls answered through the backup
            back = pool.clock()
            await primary.start(port=p_addr.platform[1], admin_port=0)
            await until(lambda: pool.active == "primary")
            failback_s = pool.clock() - back
            returned = len(log)
            await until(lambda: len(log) >= returned + 20)
    finally:
        stop.set()
        await asyncio.gather(*clients)
        await daemon.stop(1)
        await primary.stop()
        await backup.stop()
    assert all(status == 200 for _, status, _ in log), [s for s in log if s[1] != 200][:3]
    # traffic went back only once the primary had been healthy for failback_after (by the pool's own clock)
    switched = [(e["from"], e["to"], e["cause"]) for e in logs if e["event"] == "upstream_switched"]
    assert switched == [
        ("primary", "backup", switched[0][2]),
        ("backup", "primary", "failback: primary healthy for 1 s"),
    ], switched
    assert failback_s >= cfg.failover.failback_after
    assert {"primary", "backup"} <= {who for _, _, who in log}
    switches = daemon.metrics.failovers
    assert switches.labels("primary", "backup")._value.get() >= 1
    assert switches.labels("backup", "primary")._value.get() >= 1


async def test_a_dead_primary_shows_everywhere_once_the_next_probe_finds_it(short_tmp: Path) -> None:
    """Ops look at the log, `ybgate status` (and --json) and the status page: each names the primary's open
    breaker and why, and which upstream is active, once the next probe has seen the primary gone (the probe is
    the cause: no call failed on it)."""
    platform = SimPlatform(Ledger())
    primary, backup = Simulator(platform), Simulator(platform)
    p_addr, b_addr = await primary.start(), await backup.start()
    with socket.socket() as s:  # a fixed admin port: the CLI finds the daemon through the config file
        s.bind(("127.0.0.1", 0))
        admin_port = s.getsockname()[1]
    path = short_tmp / "ybgate.yaml"
    path.write_text(
        f"development: true\nstate_dir: {short_tmp}/state\nruntime_dir: {short_tmp}/run\n"
        f"admin: {{port: {admin_port}}}\n"
        "failover: {failures_to_open: 1, cooldown: 60, probe_interval: 1.0}\n"
        "upstreams:\n"
        f"  - {{name: primary, role: primary, host: 127.0.0.1, port: {p_addr.platform[1]}, transport: tcp}}\n"
        f"  - {{name: backup, role: backup, host: 127.0.0.1, port: {b_addr.platform[1]}, transport: tcp}}\n"
    )
    cfg = load_config(path)
    daemon = Daemon(cfg)
    await daemon.start()

    async def call() -> int:
        body = json.dumps(fresh("9001_signin_request.json")).encode()
        return (await request("POST", PLATFORM_PATH, body, unix_socket=str(cfg.api_socket), time_limit=10)).status

    async def status() -> dict[str, dict[str, object]]:
        doc = json.loads((await request("GET", "/status", host="127.0.0.1", port=admin_port)).body)
        return {u["name"]: u for u in doc["upstreams"]}

    def cli(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "status", "--config", str(path), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    try:
        assert await call() == 200
        assert (await status())["primary"]["last_success"] is not None
        with structlog.testing.capture_logs() as logs:
            await primary.stop()
            await until(lambda: _breaker_open(status))  # the next probe finds it gone
            assert await call() == 200  # the backup answers it
        seen = await status()
        text = await asyncio.to_thread(cli)
        as_json = json.loads(await asyncio.to_thread(cli, "--json"))
        dom = await chromium(f"http://127.0.0.1:{admin_port}/", short_tmp, "--dump-dom")
    finally:
        await daemon.stop(1)
        await backup.stop()

    cause = str(seen["primary"]["last_failure_cause"])
    assert cause.startswith("probe: primary") and "refused" in cause.lower()
    assert seen["primary"]["active"] is False and seen["backup"]["active"] is True
    assert seen["primary"]["last_failure"] is not None and seen["backup"]["last_failure"] is None
    assert seen["primary"]["route"] is None  # no interface watched in this test

    [breaker] = [e for e in logs if e["event"] == "breaker"]
    assert breaker["upstream"] == "primary" and (breaker["from"], breaker["to"]) == ("closed", "open")
    assert breaker["cause"] == cause
    [switched] = [e for e in logs if e["event"] == "upstream_switched"]
    assert (switched["from"], switched["to"]) == ("primary", "backup") and "refused" in switched["cause"].lower()

    assert "upstream primary (primary, standby): tcp" in text and "breaker open" in text
    assert "upstream backup (backup, ACTIVE)" in text and cause in text
    [p_json] = [u for u in as_json["upstreams"] if u["name"] == "primary"]
    assert p_json["breaker"] == "open" and p_json["last_failure_cause"] == cause

    cells = Cells()
    cells.feed(dom)
    row = cells.cells[cells.cells.index("primary") : cells.cells.index("backup")]
    assert "open" in row and "standby" in row and any(cause in c for c in row)
    assert "ACTIVE" in cells.cells[cells.cells.index("backup") :]


async def _breaker_open(status: Callable[[], Awaitable[dict[str, dict[str, object]]]]) -> bool:
    return (await status())["primary"]["breaker"] == "open"
