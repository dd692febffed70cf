"""The crash harness's processes: the simulator (`python -m gateway sim --journal`, SIGKILLed and started again
on the same ports with the same ledger) and the gateway (`python -m gateway run`, SIGKILLed and started again on
the same state directory). Each keeps its stderr in the work directory, shown when it does not come back."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import urllib.request
from pathlib import Path
from typing import Any

#: how long a process may take to come back (a simulator replays its whole journal first)
START_LIMIT = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stderr_tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:] if path.exists() else ""


async def spawn(log: Path, *args: str) -> asyncio.subprocess.Process:
    """`python -m gateway ARGS`, its log lines and its stderr appended to `log`."""
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", *args, stdout=out, stderr=out)


class Platform:
    """The simulator with its ledger journaled: the ground truth survives its SIGKILLs."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.port, self.admin_port = free_port(), free_port()
        self.journal = work / "platform.journal"
        self.err = work / "platform.err"
        self.proc: asyncio.subprocess.Process | None = None
        self.kills = 0
        self.restarts: list[float] = []  # seconds from SIGKILL to answering again (the journal's replay included)

    async def start(self) -> None:
        ports = ("--port", str(self.port), "--admin-port", str(self.admin_port))
        self.proc = await spawn(self.err, "sim", *ports, "--journal", str(self.journal))
        loop = asyncio.get_running_loop()
        until = loop.time() + START_LIMIT
        while loop.time() < until and self.proc.returncode is None:
            try:
                await asyncio.to_thread(self._call, "GET", "/_sim", None)
            except OSError:
                await asyncio.sleep(0.05)
            else:
                return
        raise SystemExit(f"crash: the simulator did not start; its stderr ends:\n{stderr_tail(self.err)}")

    async def kill(self) -> None:
        """SIGKILL, then start again on the same ports and journal."""
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        began = loop.time()
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1
        await self.start()
        self.restarts.append(round(loop.time() - began, 2))

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            await self.proc.wait()

    def _call(self, method: str, path: str, doc: Any) -> Any:
        data = None if doc is None else json.dumps(doc).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin_port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=30) as reply:
            return json.loads(reply.read())

    async def admin(self, method: str, path: str, doc: Any = None) -> Any:
        """An admin call, waiting out a restart of the simulator (bounded)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + START_LIMIT
        while True:
            try:
                return await asyncio.to_thread(self._call, method, path, doc)
            except OSError:
                if loop.time() > until:
                    raise
                await asyncio.sleep(0.1)


def gateway_config(
    work: Path,
    state: Path,
    platform: int,
    admin: int,
    reversal_settle: float,
    dsn_file: Path | None = None,
    node: str | None = None,
    lease: float = 5.0,
) -> Path:
    """The gateway's config; with `dsn_file`, its outbox in that PostgreSQL database as `node` of a pair."""
    cfg = work / "ybgate.yaml"
    outbox = ""
    if dsn_file is not None:
        outbox = f", outbox: {{backend: postgresql, dsn_file: {dsn_file}, node: {node}, lease: {lease}}}"
    cfg.write_text(
        f"development: true\nstate_dir: {state}\nruntime_dir: {work}/run\n"
        f"admin: {{port: {admin}}}\nlogging: {{level: warning}}\n"
        f"relay: {{reversal_settle: {reversal_settle}{outbox}}}\n"
        f"upstreams: [{{name: sim, host: 127.0.0.1, port: {platform}, transport: tcp}}]\n"
    )
    return cfg


def write_failures(admin: int) -> float:
    """The gateway's count of commit groups its state disk refused (its /metrics, on loopback)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=10) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith("ybgate_outbox_write_failures_total "):
                return float(line.split()[1])
    raise SystemExit("crash: the gateway's /metrics has no ybgate_outbox_write_failures_total")
