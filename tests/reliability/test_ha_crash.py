"""The two-node crash harness (`ybgate bench ha`, bench/ha.py) in its short form: a PostgreSQL cluster the harness
starts, two real gateway processes on one outbox database, the journaled simulator, cashiers split across both
nodes who ask the other node when theirs does not answer; 50 SIGKILLs of one node or the other at random instants
and PostgreSQL restarted under load. Every count must be 0 against the simulator's ledger and the shared outbox
(the comparison itself is checked on hand-made ledgers in test_crash_bench.py), and every final outcome in exactly
one of the two nodes' audit chains (`ybgate audit verify --node a=… --node b=…`). The long form (≥ 200 kills) is
run by hand: `ybgate bench ha` or `python bench/ha.py --kills 200`."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from benchrun import load_bench, run_bench
from pg_cluster import bindir
from test_crash_bench import COUNTS as CRASH_COUNTS

#: the crash harness's counts (crash_compare.py) without the disk-full one, and what the pair's audit check counts
COUNTS = (*(c for c in CRASH_COUNTS if c != "disk-full rows left"), *load_bench("ha.py").AUDIT_COUNTS.values())
KILLS = 50


async def test_two_nodes_killed_in_turn_lose_nothing_and_book_nothing_twice(short_tmp: Path) -> None:
    if bindir() is None:
        pytest.skip("PostgreSQL's server is not installed (Debian: apt-get install postgresql)")
    args = ["--kills", str(KILLS), "--long-downs", "1", "--pg-restarts", "3", "--cashiers", "4"]
    # the limit bounds a hang, not a measurement: the run is sized for about two minutes on 2 cores
    code, doc, text = await run_bench("ha.py", [*args, "--throughput-seconds", "0"], short_tmp, 600)
    assert code == 0, text
    figures = {f["figure"].removeprefix("HA "): f["ybgate"] for f in doc["figures"]}
    assert {k: figures[k] for k in COUNTS} == dict.fromkeys(COUNTS, 0), text
    notes = doc["notes"]
    assert notes["kills"] == KILLS and notes["pg_restarts"] == 3, text
    # the kills cut requests in flight: cashiers asked the other node, and some msgids were held unfinished by a
    # node when it died (what takeover or restart recovery then settled)
    assert notes["moved"] > 0 and notes["held"] > 0, text
    assert len(notes["survivor"]) + len(notes["recovery"]) == notes["held"], text
    answers = notes["answers"]
    assert notes["msgids"] > 1000 and answers["answered"] > notes["msgids"] // 2, text
    # `ybgate audit verify` across the two chains judged (nearly) every final row: each in exactly one chain
    assert notes["audit_compared"] > notes["msgids"] // 2, text


def test_takeover_is_told_from_restart_recovery_by_when_the_node_was_back() -> None:
    """A held msgid answered before the killed node answered again was the survivor's work; after, its own restart's.
    A held msgid never answered is neither (the run counts it as left unresolved)."""
    ha = load_bench("ha.py")
    answers = (("A", 11.5), ("B", 13.0), ("C", None), ("D", 30.0))
    told = [SimpleNamespace(msgid=msgid, definite_at=at) for msgid, at in answers]
    kills = [
        ha.Kill("a", at=10.0, back=12.0, held=frozenset({"A", "B", "C"})),
        ha.Kill("b", at=20.0, back=25.0, held=frozenset()),
    ]
    run = SimpleNamespace(told=told, kills=kills)
    assert ha.takeover(run) == ([1.5], [3.0])
