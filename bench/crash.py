"""Black-box crash harness: concurrent cashiers against a gateway and a platform that are SIGKILLed and
restarted, with fault rounds at the platform and disk-full rounds under the gateway's state directory, checked at
the end against the simulator's ledger and the outbox (#20).

The gateway runs as a real process (`python -m gateway run`), the simulator as another (`python -m gateway sim
--journal`: its ledger is on disk, fsync'd before each answer and replayed at start, so it stays the ground
truth through its own SIGKILLs). The cashiers (crash_cashiers.py) serve one person each and follow the README on
every answer; now and then a second terminal charges a person whose money-moving request is in doubt. A disk-full round
(root: the state directory is a tmpfs) holds settlements at the platform, fills the disk to the last byte, and
gives the space back without restarting the gateway: every settlement told outcome_unknown meanwhile must be
final in the outbox again before the gateway is next killed. The counts are in crash_compare.py; every one but
"ordering refusals" must be 0.

Traffic stays on loopback and a Unix socket; every wait is bounded.

    python bench/crash.py [--kills 50] [--platform-kills 10] [--fault-rounds 10] [--disk-full-rounds 2]
                          [--cashiers 6]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import shutil
import signal
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Any

import figures
from crash_cashiers import DEADLINE, Cashiers, post_at
from crash_compare import COUNTS, Told, compare
from crash_disk import SmallDisk
from crash_mix import MIX
from crash_procs import Platform, free_port, gateway_config, spawn, stderr_tail, write_failures

FAULT_KINDS = ("drop_before", "drop_after", "reset", "garbage", "http502", "refuse", "delay")
#: how long a delay fault holds a request at the platform: past the HIS's deadline
FAULT_DELAY = DEADLINE + 1.0
#: a 冲正 that finds nothing is believed after this long (the real default is 60 s; the harness shortens it). It
#: must exceed the longest the platform holds a request: a gateway killed just after sending starts the settle
#: time at its restart, and with 3 s against a 6 s delay its 冲正 found nothing while the original was still on
#: its way, and the cashier was told not processed for a 2305 booked 2 s later (the harness's setting).
REVERSAL_SETTLE = FAULT_DELAY + 1.0
#: a disk-full round: how long settlements stay at the platform, and how long the outbox may take to store
#: what it kept in memory once space is back (the settle wait of an in-doubt settlement included)
DISK_DELAY = 1.5
DISK_RECOVERY = 60.0
#: how long a disk-full round waits for the outbox to fail to commit (SQLite first writes on into the space its
#: files hold, and a WAL that grew once holds a few MiB)
DISK_FULL_LIMIT = 120.0
#: fee lines per 2204 while the disk is full: long uploads use the space SQLite's files hold up sooner
BULKY_FEES = 300
FINAL = frozenset({"answered", "reversed", "failed", "confirmed"})


def outbox_rows(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT msgid, state FROM outbox").fetchall())
    finally:
        conn.close()


class Run(Cashiers):
    def __init__(self, work: Path, platform: Platform, seed: int) -> None:
        super().__init__(random.Random(seed))
        self.work = work
        self.platform = platform
        self.sock = str(work / "run" / "api.sock")
        self.state = work / "state"
        self.admin_port = free_port()
        self.cfg = gateway_config(work, self.state, platform.port, self.admin_port, REVERSAL_SETTLE)
        self.gw: asyncio.subprocess.Process | None = None
        #: held by a disk-full round: no gateway kill while the disk is full (a start on a full disk is refused)
        self.exclusive = asyncio.Lock()
        self.disk_full = False
        self.while_full: collections.Counter[str] = collections.Counter()
        #: msgids told outcome_unknown while the disk was full: their outcomes wait in the gateway's memory
        self.kept: set[str] = set()
        self.disk_rows = {"refusing": 0, "kept": 0}
        self.disk_left: list[str] = []
        self.messages = 0  # in the platform's ledger at the end
        #: per round: seconds from full to the first refusal, from space back to every kept outcome final
        self.disk_times: list[float] = []

    # -- the gateway ----------------------------------------------------------------------------------------

    async def start_gateway(self) -> None:
        self.gw = await spawn(self.work / "gateway.err", "run", "--config", str(self.cfg))
        for _ in range(600):
            if await self.sign_in(0) is not None:
                return
            if self.gw.returncode is not None:
                break
            await asyncio.sleep(0.05)
        tail = stderr_tail(self.work / "gateway.err")
        raise SystemExit(f"crash: the gateway did not start; its stderr ends:\n{tail}")

    async def kill_gateway(self) -> None:
        async with self.exclusive:
            assert self.gw is not None
            self.gw.send_signal(signal.SIGKILL)
            await self.gw.wait()
            await self.start_gateway()

    # -- cashiers -------------------------------------------------------------------------------------------

    async def post(self, doc: dict[str, Any], deadline: float = DEADLINE, desk: int = 0) -> tuple[str, dict[str, Any]]:
        return await post_at(self.sock, doc, deadline)

    def heard(self, told: Told, kind: str) -> None:
        if self.disk_full:
            self.while_full[kind] += 1
            if kind == "outcome_unknown":
                self.kept.add(told.msgid)

    # -- rounds ---------------------------------------------------------------------------------------------

    async def disk_round(self, disk: SmallDisk) -> None:
        """Settlements at the platform when the state disk fills; space back with the gateway still running."""
        async with self.exclusive:
            slow = {"kind": "delay", "delay": DISK_DELAY}
            await self.platform.admin("POST", "/_sim/faults", dict.fromkeys(("2207", "2208", "2304", "2305"), slow))
            await asyncio.sleep(0.5)  # settlements go out and wait at the platform
            self.kept = set()
            failures = before = await asyncio.to_thread(write_failures, self.admin_port)
            disk.fill()
            self.disk_full = True
            self.mix.fee_lines = BULKY_FEES
            # SQLite writes on into space its files already hold: full until the outbox fails to commit, and then
            # long enough for the answers of settlements at the platform to meet it.
            loop = asyncio.get_running_loop()
            filled = loop.time()
            while failures == before and loop.time() < filled + DISK_FULL_LIMIT:
                await asyncio.sleep(0.1)
                failures = await asyncio.to_thread(write_failures, self.admin_port)
            self.disk_times.append(round(loop.time() - filled, 1))
            await asyncio.sleep(self.rng.uniform(DISK_DELAY, 2 * DISK_DELAY))
            self.disk_full = False
            self.mix.fee_lines = 1
            disk.free()
            await self.platform.admin("DELETE", "/_sim/faults")
            self.disk_rows["refusing"] += failures > before
            # What the gateway kept in memory while the disk was full is stored now, not at the next start.
            kept = self.kept
            freed = loop.time()
            until = freed + DISK_RECOVERY
            rows = outbox_rows(self.state / "outbox.db")
            # (one the outbox never took has no row: the cashier asks again and it is accepted now)
            while loop.time() < until and any(rows.get(m, "answered") not in FINAL for m in kept):
                await asyncio.sleep(0.5)
                rows = outbox_rows(self.state / "outbox.db")
            self.disk_times.append(round(loop.time() - freed, 1))
            self.disk_rows["kept"] += sum(m in rows for m in kept)
            told = {t.msgid: t for t in self.told}
            self.disk_left += [
                f"{m} {told[m].infno} {rows[m]}, told {' > '.join(told[m].kinds)}"
                for m in kept
                if rows.get(m, "answered") not in FINAL
            ]
            assert self.gw is not None
            if self.gw.returncode is not None:
                tail = stderr_tail(self.work / "gateway.err")
                raise SystemExit(f"crash: the gateway exited in a disk-full round; its stderr ends:\n{tail}")

    async def fault_round(self) -> None:
        kind = self.rng.choice(FAULT_KINDS)
        spec = {"kind": kind, "times": self.rng.randint(1, 3)} | ({"delay": FAULT_DELAY} if kind == "delay" else {})
        await self.platform.admin("POST", "/_sim/faults", {self.rng.choice(list(MIX)): spec})
        await asyncio.sleep(self.rng.uniform(1.0, 3.0))
        await self.platform.admin("DELETE", "/_sim/faults")


def across(args: argparse.Namespace, count: int, least: float, per_kill: float) -> float:
    """The longest pause between `count` events so that they spread over the gateway kills' stretch of the run
    (`per_kill`: seconds a kill and its restart take under load, about), not all at its start."""
    return max(least, per_kill * args.kills / max(1, count))


async def spread(count: int, pause: tuple[float, float], rng: random.Random, what: Any) -> None:
    for _ in range(count):
        await asyncio.sleep(rng.uniform(*pause))
        await what()


async def main(args: argparse.Namespace) -> int:
    if args.disk_full_rounds and os.geteuid() != 0:
        print("crash: disk-full rounds mount a tmpfs for the state directory, which needs root: none this run")
        args.disk_full_rounds = 0
    work = Path(tempfile.mkdtemp(prefix="ybg-crash-"))
    (work / "run").mkdir()
    platform = Platform(work)
    run = Run(work, platform, args.seed)
    disk = SmallDisk(run.state, args.disk_mib)
    keep = True  # until the counts say otherwise
    try:
        with disk.mounted() if args.disk_full_rounds else contextlib.nullcontext():
            await platform.start()
            await run.start_gateway()
            tasks = [asyncio.create_task(run.cashier(n)) for n in range(args.cashiers)]

            async def disk_round() -> None:
                await run.disk_round(disk)

            async def kill_platform() -> None:
                # Not while a disk-full round waits for the outbox to store what it kept: that wait measures the
                # disk's recovery, and resolutions retried against a platform down every few seconds back off
                # past it (they settle all the same, later).
                async with run.exclusive:
                    await platform.kill()

            await asyncio.gather(
                spread(args.kills, (0.3, 2.0), run.rng, run.kill_gateway),
                spread(args.platform_kills, (1.0, across(args, args.platform_kills, 5.0, 8.0)), run.rng, kill_platform),
                spread(args.fault_rounds, (0.5, 2.0), run.rng, run.fault_round),
                spread(
                    args.disk_full_rounds, (2.0, across(args, args.disk_full_rounds, 6.0, 2.5)), run.rng, disk_round
                ),
            )
            await asyncio.sleep(1.0)
            run.settle_by = asyncio.get_running_loop().time() + 60 + REVERSAL_SETTLE
            run.stop.set()
            await asyncio.gather(*tasks)
            ledger = await platform.admin("GET", "/_sim/ledger")
            run.messages = len(ledger["messages"])
            found = compare(run.told, ledger, outbox_rows(run.state / "outbox.db"))
            keep = any(found.values()) or bool(run.disk_left)
            if keep:  # the outbox, for a look after the state disk is gone
                for db in run.state.glob("outbox.db*"):
                    shutil.copy2(db, work / db.name)
            if run.gw is not None and run.gw.returncode is None:
                run.gw.send_signal(signal.SIGTERM)
                await run.gw.wait()
    finally:
        if run.gw is not None and run.gw.returncode is None:
            run.gw.send_signal(signal.SIGKILL)
            await run.gw.wait()
        await platform.stop()
        if keep:
            print(f"kept for a look: {work} (gateway.err, platform.err, platform.journal, outbox.db)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return report(args, run, found)


def report(args: argparse.Namespace, run: Run, found: dict[str, list[str]]) -> int:
    kinds = collections.Counter(k for t in run.told for k in t.kinds)
    ordering = sum(t.blocker is not None for t in run.told)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(
        f"{args.cashiers} cashiers, {args.kills} gateway SIGKILLs, {run.platform.kills} platform SIGKILLs, "
        f"{args.fault_rounds} fault rounds, {args.disk_full_rounds} disk-full rounds, {len(run.told)} msgids"
    )
    print("answers: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    if run.platform.restarts:
        print(f"platform restarts: {run.platform.restarts} s (its ledger at the end: {run.messages} messages)")
    if args.disk_full_rounds:
        print("answers while the disk was full: " + ", ".join(f"{k} {n}" for k, n in run.while_full.most_common()))
        rows = run.disk_rows
        print(
            f"disk-full rounds in which the outbox failed to commit: {rows['refusing']} (seconds full before the "
            f"first failure, then space back until every kept outcome was final: {run.disk_times})"
        )
        print(
            f"outcomes kept in memory while the disk was full: {rows['kept']}, "
            f"not stored without a restart: {len(run.disk_left)}"
        )
    found["disk_left"] = run.disk_left
    labels = COUNTS | {"disk_left": "disk-full rows left"}
    print(f"{'ordering refusals':<26}{ordering:>8}")
    for key, label in labels.items():
        print(f"{label:<26}{len(found[key]):>8}")
        for item in found[key][:10]:
            print(f"  {item}")
    figures.write(
        args.json,
        "crash",
        [figures.Figure("ordering refusals", ordering, None, "")]
        + [figures.Figure(label, len(found[key]), None, "", target="max=0") for key, label in labels.items()],
        kills=args.kills,
        platform_kills=run.platform.kills,
        fault_rounds=args.fault_rounds,
        disk_full_rounds=args.disk_full_rounds,
        cashiers=args.cashiers,
        msgids=len(run.told),
        answers=dict(kinds),
        while_full=dict(run.while_full),
        disk_rows=run.disk_rows,
        disk_times=run.disk_times,
        platform_restarts=run.platform.restarts,
    )
    return 1 if any(found.values()) else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50, help="gateway SIGKILLs at random instants")
    ap.add_argument("--platform-kills", type=int, default=10, help="simulator SIGKILLs at random instants")
    ap.add_argument("--fault-rounds", type=int, default=10, help="rounds of simulator faults on a random infno")
    ap.add_argument(
        "--disk-full-rounds", type=int, default=2, help="rounds of a full state disk (root: mounts a tmpfs)"
    )
    ap.add_argument("--disk-mib", type=int, default=128, help="the state disk's size for disk-full rounds")
    ap.add_argument("--cashiers", type=int, default=6)
    ap.add_argument("--seed", type=int, default=None, help="for a repeatable schedule of kills and faults")
    ap.add_argument("--json", help="also write the figures as JSON to this file")
    a = ap.parse_args()
    a.seed = a.seed if a.seed is not None else random.randrange(2**32)
    sys.exit(asyncio.run(main(a)))
