"""The upstream fault matrix as one report: every simulator fault × one transaction of each class, each cell
through a real gateway against a real simulator, with what the HIS was told, the outbox's final state, how
often the platform booked it (its ledger is the ground truth), whether a 冲正 undid it, and the time to a
definite answer. Each cell is checked against the contract in tests/reliability/faultmatrix.py, which
tests/reliability/test_fault_matrix.py asserts. Traffic stays on loopback and Unix sockets.

    python bench/faults.py [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import figures

# The matrix and its contract are test data: they live beside the test that asserts them, as the requests
# bench/relay.py sends live in tests/data.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "reliability"))
import faultmatrix as fm


def quiet_cancellations(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    # A simulator restart cancels the connection it holds; Python 3.11's stream server logs that as an error
    # although it is the restart doing what it should.
    if not isinstance(context.get("exception"), asyncio.CancelledError):
        loop.default_exception_handler(context)


def verdict(obs: fm.Observed, exp: fm.Expect) -> str:
    diff = fm.differences(obs, exp)
    broken = fm.violations(obs, fm.tx_named(obs.tx))
    if diff:
        return "OFF CONTRACT: " + "; ".join(diff)
    return "BROKEN: " + "; ".join(broken) if broken else "ok"


def his(obs: fm.Observed) -> str:
    first, final = fm.HIS_WORDS[obs.first], fm.HIS_WORDS[obs.final]
    return first if obs.first == obs.final else f"{first} → {final}"


def table(cells: list[tuple[fm.Observed, fm.Expect]]) -> str:
    lines = [
        f"{'fault':<15}{'transaction':<14}{'HIS told (first → same msgid later)':<53}{'outbox':<10}"
        f"{'booked':>6}  {'冲正':<10}{'definite ms':>12}  contract"
    ]
    for obs, exp in cells:
        ms = f"{obs.definite_ms:.0f}" if obs.definite_ms is not None else "- (ops)"
        lines.append(
            f"{obs.fault:<15}{obs.tx:<14}{his(obs):<53}{obs.outbox:<10}{obs.booked:>6}  {obs.reversal:<12}"
            f"{ms:>10}  {verdict(obs, exp)}"
        )
    return "\n".join(lines)


async def main(json_path: str | None) -> None:
    from gateway.logging import configure

    configure(level="error", fmt="console", stream=sys.stderr)
    asyncio.get_running_loop().set_exception_handler(quiet_cancellations)
    started = time.monotonic()
    cells = []
    for row in fm.EXPECTED:
        obs = await fm.run_cell(fm.fault_named(row.fault), fm.tx_named(row.tx))
        cells.append((obs, row))
    seconds = time.monotonic() - started
    print(
        f"HIS deadline {fm.DEADLINE} s; each fault fires once; {len(cells)} cells, each with its own gateway and "
        f"simulator, in {seconds:.1f} s"
    )
    print(table(cells))
    for fault in fm.FAULTS:
        print(f"  {fault.name:<15}{fault.what}")
    off = [obs for obs, exp in cells if fm.differences(obs, exp)]
    broken = [obs for obs, _ in cells if fm.violations(obs, fm.tx_named(obs.tx))]
    money = [obs for obs, _ in cells if fm.tx_named(obs.tx).tx_class != "safe"]
    found = [
        figures.Figure("fault matrix cells off contract", len(off), None, f"of {len(cells)} cells", target="max=0"),
        figures.Figure(
            "fault matrix cells breaking an invariant",
            len(broken),
            None,
            "double booking, two answers, hang, wrong word to the HIS",
            target="max=0",
        ),
        figures.Figure(
            "fault matrix most bookings, non-safe",
            max(o.booked for o in money),
            None,
            "platform ledger",
            target="max=1",
        ),
        figures.Figure(
            "fault matrix slowest first answer ms",
            max(o.first_ms for o, _ in cells),
            None,
            f"the HIS's deadline is {fm.DEADLINE * 1000:.0f} ms",
            unit="ms",
            target=f"max={(fm.DEADLINE + 0.5) * 1000:.0f}",
        ),
    ]
    figures.write(
        json_path,
        "faults",
        found,
        deadline=fm.DEADLINE,
        seconds=round(seconds, 1),
        cells=[asdict(obs) | {"expected": asdict(exp), "contract": verdict(obs, exp)} for obs, exp in cells],
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="also write the figures and every cell as JSON to this file")
    a = ap.parse_args()
    asyncio.run(main(a.json))
