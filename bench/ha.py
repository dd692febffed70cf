"""Two gateways on one PostgreSQL outbox, killed in turn under load (#26): `ybgate bench ha`.

The harness starts its own PostgreSQL cluster (tests/pg_cluster.py), the journaled simulator (`ybgate sim
--journal`: the ledger survives everything and is the ground truth) and two gateway processes on one outbox
database. The cashiers (crash_cashiers.py) are split across both nodes, as HIS workstations configured with two
base URLs: each asks its own node first, and asks the same msgid at the other node when its node does not answer.
One node or the other is SIGKILLed at random instants (never both: a pair keeps one up) and started again after a
pause; a few of those pauses are long (`--long-down`), so that what the survivor does with the dead node's work
shows before the dead node comes back. PostgreSQL is restarted a few times under load (`pg_ctl restart -m fast`).

At the end, after a settle wait, the counts of crash_compare.py must all be 0: nothing acknowledged lost, no
settlement booked twice at the simulator, no answer the ledger contradicts, every row of the shared outbox final,
no msgid reused. Takeover is measured on the msgids a killed node held unfinished in the outbox while a cashier
was asking it: from the kill to the first definite answer any node gave for each. An answer before the dead node
was back is the survivor's takeover; one after is restart recovery (the dead node settling its own rows when it
starts). Before the figures, the relay's throughput on one node with its outbox in PostgreSQL is measured against
one node on SQLite in the same run (ha_throughput.py).

    python bench/ha.py [--kills 50] [--long-downs 2] [--pg-restarts 3] [--cashiers 6] [--throughput-seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import figures
import ha_throughput
from crash_cashiers import Cashiers, post_at
from crash_compare import COUNTS, compare
from crash_procs import Platform
from ha_nodes import Database, Node, audit_pair

#: a 冲正 that finds nothing is believed after this long (the real default is 60 s): the simulator answers at
#: once in this harness (no delay faults), so a few seconds exceed the longest it holds a request
REVERSAL_SETTLE = 3.0
#: the outbox database of the pair
DB = "pair"
#: what `ybgate audit verify` across the pair's two chains counts, each to be 0
AUDIT_COUNTS = {
    "missing": "outcomes in no audit chain",
    "doubled": "outcomes audited twice",
    "broken": "audit chains broken",
}
#: the takeover target past the lease: the survivor has claimed a dead node's rows within lease + this
TAKEOVER_MARGIN = 2.0


@dataclass
class Kill:
    node: str
    at: float  # loop time of the SIGKILL
    wall: float = 0.0  # the same instant in epoch seconds (the nodes' log stamps)
    back: float = 0.0  # loop time the node answered again
    #: msgids the node held unfinished in the outbox while a cashier was asking it, when it was killed
    held: frozenset[str] = frozenset()


class Pair(Cashiers):
    def __init__(self, nodes: list[Node], db: Database, rng: random.Random) -> None:
        super().__init__(rng)
        self.nodes = nodes
        self.db = db
        self.kills: list[Kill] = []
        #: per cashier: the node it is asking and the msgid it asks there
        self.at: dict[int, tuple[int, str]] = {}
        self.moved = 0  # attempts asked again at the other node
        #: attempts whose connection a node cut while it was up (not killed meanwhile): the HIS heard nothing
        #: where it should have heard an answer, outbox_unavailable at the least
        self.cut: collections.Counter[str] = collections.Counter()

    async def post(self, doc: dict[str, Any], deadline: float, desk: int) -> tuple[str, dict[str, Any]]:
        msgid = str(doc["msgid"])
        i, asked = self.at.get(desk, (desk % 2, ""))
        if asked != msgid:
            i = desk % 2  # a new msgid: the first base URL first
        node = self.nodes[i]
        node.asking[msgid] += 1
        life = node.lives if node.ready else None
        try:
            kind, body = await post_at(node.sock, doc, deadline)
        finally:
            node.asking[msgid] -= 1
            if not node.asking[msgid]:
                del node.asking[msgid]
        if kind == "unreachable" and node.ready and life == node.lives:
            self.cut[str(doc["infno"])] += 1
        if kind == "unreachable":
            i = 1 - i  # the other base URL for the same msgid, as the HIS's client library does
            self.moved += 1
        self.at[desk] = (i, msgid)
        return kind, body

    async def kill(self, down: float) -> None:
        node = self.rng.choice(self.nodes)
        loop = asyncio.get_running_loop()
        kill = Kill(node.name, loop.time(), time.time())
        asking = set(node.asking)  # at the instant of the kill: the cashiers hear of it at once and move on
        await node.kill()
        held = await self.db.rows(DB, among=asking, unfinished=True)
        kill.held = frozenset(held)
        self.kills.append(kill)
        await asyncio.sleep(down)
        await node.start(self.mix)
        kill.back = loop.time()


def takeover(run: Pair) -> tuple[list[float], list[float]]:
    """Seconds from each kill to the first definite answer for each msgid the killed node held: those answered
    before it was back (the survivor's), and those answered after (restart recovery)."""
    definite = {t.msgid: t.definite_at for t in run.told}
    survivor, recovery = [], []
    for kill in run.kills:
        for msgid in kill.held:
            at = definite.get(msgid)
            if at is not None:
                (survivor if at < kill.back else recovery).append(round(at - kill.at, 2))
    return survivor, recovery


def claims(run: Pair) -> list[float]:
    """Seconds from each kill to the survivor's claim of the dead node's rows: its first outbox_takeover naming a
    msgid the dead node held, before that node was back (a claim of rows an earlier run left is another kill's)."""
    found = []
    for kill in run.kills:
        other = next(n for n in run.nodes if n.name != kill.node)
        until = kill.wall + (kill.back - kill.at)
        after = [at for at, msgids in other.takeovers() if kill.wall <= at <= until and msgids & kill.held]
        if after:
            found.append(round(min(after) - kill.wall, 2))
    return found


async def schedule(run: Pair, args: argparse.Namespace) -> None:
    long_at = set(run.rng.sample(range(args.kills), min(args.long_downs, args.kills)))
    for n in range(args.kills):
        await asyncio.sleep(run.rng.uniform(0.1, 0.6))
        await run.kill(args.long_down if n in long_at else run.rng.uniform(0.2, 0.8))


async def restarts(run: Pair, args: argparse.Namespace) -> None:
    # spread over the kills' stretch (about two seconds a kill), not all at its start
    stretch = max(2.0, 2.0 * args.kills / max(1, args.pg_restarts))
    for _ in range(args.pg_restarts):
        await asyncio.sleep(run.rng.uniform(1.0, stretch))
        await run.db.restart()


async def main(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="ybg-ha-"))
    db = Database(work)
    platform = Platform(work)
    nodes: list[Node] = []
    keep = True
    try:
        rates = await ha_throughput.measure(work, db, args.throughput_seconds, args.throughput_clients)
        dsn = db.dsn_file(DB)
        await platform.start()
        nodes = [Node(work, name, platform.port, REVERSAL_SETTLE, dsn, args.lease) for name in ("a", "b")]
        run = Pair(nodes, db, random.Random(args.seed))
        for node in nodes:
            await node.start(run.mix)
        loop = asyncio.get_running_loop()
        began = loop.time()
        tasks = [asyncio.create_task(run.cashier(n)) for n in range(args.cashiers)]
        await asyncio.gather(schedule(run, args), restarts(run, args))
        run.settle_by = loop.time() + 60 + REVERSAL_SETTLE
        run.stop.set()
        await asyncio.gather(*tasks)
        seconds = loop.time() - began
        ledger = await platform.admin("GET", "/_sim/ledger")
        found = compare(run.told, ledger, await db.rows(DB))
        claimed = claims(run)
        for node in nodes:
            await node.stop()
        audit = await audit_pair(nodes)
        keep = args.keep or any(found.values()) or any(audit[k] for k in AUDIT_COUNTS)
    finally:
        for node in nodes:
            await node.stop()
        await platform.stop()
        db.destroy()
        if keep:
            print(f"kept for a look: {work} (a/gateway.err, b/gateway.err, platform.err, platform.journal)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return report(args, run, found, audit, claimed, rates, seconds)


def report(
    args: argparse.Namespace,
    run: Pair,
    found: dict[str, list[str]],
    audit: dict[str, int],
    claimed: list[float],
    rates: dict[str, float],
    seconds: float,
) -> int:
    kinds = collections.Counter(k for t in run.told for k in t.kinds)
    survivor, recovery = takeover(run)
    starts = [s for node in run.nodes for s in node.starts]
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")
    print(
        f"{args.cashiers} cashiers on 2 nodes, {len(run.kills)} node SIGKILLs ({args.long_downs} held down "
        f"{args.long_down:.0f} s), {len(run.db.restarts)} PostgreSQL restarts, {len(run.told)} msgids "
        f"in {seconds:.0f} s"
    )
    print("answers: " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    print(f"attempts asked again at the other node: {run.moved}; node starts {min(starts)}–{max(starts)} s")
    print(f"PostgreSQL restarts (pg_ctl restart -m fast): {run.db.restarts} s")
    held = sum(len(k.held) for k in run.kills)
    print(
        f"msgids a killed node held unfinished: {held}; answered by the survivor {len(survivor)} "
        f"(s after the kill: {sorted(survivor)[-10:]}), after the restart {len(recovery)} (s: {sorted(recovery)[-10:]})"
    )
    print(
        f"takeovers (kill → the survivor's claim of the dead node's rows, lease {args.lease:g} s): "
        f"{len(claimed)}, s: {sorted(claimed)}"
    )
    print(f"connections cut by a node that was up: {sum(run.cut.values())} ({dict(run.cut)})")
    if rates:
        print(
            f"relay throughput, one node: {rates['postgresql']:.0f} req/s on PostgreSQL, "
            f"{rates['sqlite']:.0f} on SQLite"
        )
    for key, label in COUNTS.items():
        print(f"{label:<26}{len(found[key]):>8}")
        for item in found[key][:10]:
            print(f"  {item}")
    for key, label in AUDIT_COUNTS.items():
        print(f"{label:<26}{audit[key]:>8}")
    print(f"final rows compared with the two audit chains: {audit['compared']}")
    fig = figures.Figure
    rows = [fig(f"HA {label}", len(found[key]), None, "", target="max=0") for key, label in COUNTS.items()]
    rows += [fig(f"HA {label}", audit[key], None, "", target="max=0") for key, label in AUDIT_COUNTS.items()]
    rows.append(fig("HA connections cut by a node that was up", sum(run.cut.values()), None, "", target="max=0"))
    target = args.lease + TAKEOVER_MARGIN
    if claimed:
        what = "kill → the survivor claimed the dead node's rows"
        rows.append(fig("HA takeover s, max", max(claimed), None, what, "s", target=f"max={target:g}"))
    if survivor:
        # a settlement in flight is settled by 冲正, which waits its settle clock after the claim
        first = f"kill → the survivor's first definite answer (a 冲正 waits {REVERSAL_SETTLE:g} s)"
        most = f"max={target + REVERSAL_SETTLE:g}"
        rows.append(fig("HA takeover answer s, max", max(survivor), None, first, "s", target=most))
    if recovery:
        rows.append(fig("HA restart recovery s, max", max(recovery), None, "kill → answer after the restart", "s"))
    if rates:
        pg, lite = rates["postgresql"], rates["sqlite"]
        rows.append(fig("HA relay req/s, one node on PostgreSQL", pg, lite, "one node on SQLite", target="ratio>=0.5"))
    figures.write(
        args.json,
        "ha",
        rows,
        kills=len(run.kills),
        long_downs=args.long_downs,
        pg_restarts=len(run.db.restarts),
        cashiers=args.cashiers,
        msgids=len(run.told),
        seconds=round(seconds, 1),
        answers=dict(kinds),
        moved=run.moved,
        cut=dict(run.cut),
        held=held,
        survivor=sorted(survivor),
        claims=sorted(claimed),
        lease=args.lease,
        recovery=sorted(recovery),
        node_starts=starts,
        pg_restart_seconds=run.db.restarts,
        throughput=rates,
        audit_compared=audit["compared"],
    )
    return 1 if any(found.values()) or any(audit[k] for k in AUDIT_COUNTS) else 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=50, help="node SIGKILLs at random instants, one node or the other")
    ap.add_argument("--long-downs", type=int, default=2, help="of those, how many keep the node down --long-down s")
    ap.add_argument("--lease", type=float, default=5.0, help="relay.outbox.lease of both nodes (default %(default)s)")
    ap.add_argument("--long-down", type=float, help="seconds a long-down node stays dead (default: lease + 4)")
    ap.add_argument("--pg-restarts", type=int, default=3, help="PostgreSQL restarts (pg_ctl restart -m fast)")
    ap.add_argument("--cashiers", type=int, default=6)
    ap.add_argument("--throughput-seconds", type=float, default=5.0, help="per backend; 0: no throughput phase")
    ap.add_argument("--throughput-clients", type=int, default=8)
    ap.add_argument("--seed", type=int, default=None, help="for a repeatable schedule of kills and restarts")
    ap.add_argument("--json", help="also write the figures as JSON to this file")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, journal) even when all is 0")
    a = ap.parse_args()
    a.seed = a.seed if a.seed is not None else random.randrange(2**32)
    a.long_down = a.long_down if a.long_down is not None else a.lease + TAKEOVER_MARGIN + 2
    sys.exit(asyncio.run(main(a)))
