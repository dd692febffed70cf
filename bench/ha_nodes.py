"""The two-node harness's parts (#26): a gateway node of a pair (`python -m gateway run` with its outbox in the
shared PostgreSQL database; SIGKILLed and started again on the same state directory), and that database in a
throwaway cluster (tests/pg_cluster.py: initdb/pg_ctl as a non-root user, a Unix socket only), restarted under
load as an operator would (`pg_ctl restart -m fast`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

from crash_cashiers import post_at, sign_no_of
from crash_mix import Envelopes
from crash_procs import START_LIMIT, free_port, gateway_config, spawn, stderr_tail

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # the suite's throwaway cluster
import pg_cluster

FINAL = ("answered", "reversed", "failed", "confirmed")


class Node:
    """One gateway of the pair: its own state and runtime directories, its own API socket."""

    def __init__(
        self, work: Path, name: str, platform: int, reversal_settle: float, dsn_file: Path | None, lease: float = 5.0
    ) -> None:
        self.name = name
        self.work = work / name
        (self.work / "run").mkdir(parents=True)
        self.sock = str(self.work / "run" / "api.sock")
        self.err = self.work / "gateway.err"
        self.state = self.work / "state"
        self.cfg = gateway_config(self.work, self.state, platform, free_port(), reversal_settle, dsn_file, name, lease)
        self.proc: asyncio.subprocess.Process | None = None
        #: msgids a cashier is asking this node about right now (attempts under way)
        self.asking: Counter[str] = Counter()
        self.starts: list[float] = []  # seconds from spawn to the first answer through it
        #: answering since its last start; `lives` counts its starts, so an attempt can tell whether the node it
        #: was sent to was killed under it
        self.ready = False
        self.lives = 0

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, mix: Envelopes) -> None:
        """Spawn and wait until a sign-in through it is answered; a process that exits (its database restarting
        as it opened the outbox) is spawned again, within START_LIMIT."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        while loop.time() < began + START_LIMIT:
            self.proc = await spawn(self.err, "run", "--config", str(self.cfg))
            while self.proc.returncode is None and loop.time() < began + START_LIMIT:
                if sign_no_of(*await post_at(self.sock, mix.sign_in())) is not None:
                    self.starts.append(round(loop.time() - began, 2))
                    self.ready = True
                    self.lives += 1
                    return
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
        raise SystemExit(f"ha: node {self.name} did not start; its stderr ends:\n{stderr_tail(self.err)}")

    def takeovers(self) -> list[tuple[float, frozenset[str]]]:
        """When (epoch seconds) this node claimed rows of a dead gateway, and the msgids it names (the first 20),
        from its outbox_takeover log events."""
        found = []
        for line in self.err.read_text("utf-8", "replace").splitlines():
            if '"outbox_takeover"' in line:
                with contextlib.suppress(ValueError, KeyError):
                    event = json.loads(line)
                    at = datetime.fromisoformat(event["timestamp"]).timestamp()
                    found.append((at, frozenset(event["msgids"])))
        return found

    async def kill(self) -> None:
        assert self.proc is not None
        self.ready = False
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.up:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            await self.proc.wait()


class Database:
    """The pair's outbox database in a cluster of its own."""

    def __init__(self, work: Path) -> None:
        bins = pg_cluster.bindir()
        if bins is None:
            raise SystemExit("ha: PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
        self.cluster = pg_cluster.create(bins)
        self.work = work
        self.restarts: list[float] = []  # seconds each `pg_ctl restart -m fast` took

    def dsn_file(self, name: str) -> Path:
        return self.cluster.dsn_file(self.work / f"{name}.dsn", name)

    async def restart(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        await asyncio.to_thread(self.cluster.restart)
        self.restarts.append(round(loop.time() - began, 2))

    async def rows(self, dbname: str, among: set[str] | None = None, unfinished: bool = False) -> dict[str, str]:
        """msgid -> state in the outbox (only `among`, only rows not final), waiting out a restart (bounded)."""
        where = [f"state NOT IN ({', '.join(repr(s) for s in FINAL)})"] if unfinished else []
        if among is not None:
            if not among:
                return {}
            where.append(f"msgid IN ({', '.join(repr(m) for m in sorted(among))})")
        sql = "SELECT msgid, state FROM outbox" + (f" WHERE {' AND '.join(where)}" if where else "")
        for _ in range(100):
            try:
                out = await asyncio.to_thread(self.cluster.psql, sql, dbname)
            except Exception:  # noqa: BLE001 - the server restarting: psql exits non-zero
                await asyncio.sleep(0.2)
                continue
            return dict(line.split("|", 1) for line in out.splitlines() if line)
        raise SystemExit("ha: the outbox database did not answer")

    def destroy(self) -> None:
        pg_cluster.destroy(self.cluster)


async def audit_pair(nodes: list[Node]) -> dict[str, int]:
    """`ybgate audit verify` across the pair's chains (the nodes stopped, so every row is judged): each chain
    checked, and every final row of the shared outbox in exactly one of them. The counts, from what it prints."""
    specs = [f"--node={n.name}={n.state / 'audit'}" for n in nodes]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "audit", "verify", *specs, "--settle", "0", "--config", str(nodes[0].cfg),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = (b.decode() for b in await proc.communicate())
    found = re.search(r"(\d+) final rows of the outbox compared: (\d+) missing, (\d+) doubled", out)
    if found is None:
        raise SystemExit(f"ha: `ybgate audit verify` across the pair failed:\n{out}{err}")
    print(out + err, end="")
    return {
        "compared": int(found[1]),
        "missing": int(found[2]),
        "doubled": int(found[3]),
        "broken": err.count("BROKEN:"),
    }
