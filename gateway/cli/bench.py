"""`ybgate bench [NAME…|all]`: the benchmarks under bench/, each against a baseline measured in the same run,
in one table with the project's targets; `--json` keeps the figures for comparison between commits and
`--readme` writes them into the README's Performance section.

The benchmarks drive real processes and real peers (openssl speed, a Tongsuo TLCP peer, the simulator) and
need a source checkout: bench/ and tests/ beside the package.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import gateway

#: name -> arguments sized so that `all` stays within ten minutes on a 2-core machine
BENCHES: dict[str, list[str]] = {
    "crypto": ["--seconds", "1"],
    "tlcp": ["--handshakes", "40", "--mbytes", "2"],
    # latency is measured at a quarter of the direct path's throughput in the same run
    "relay": ["--seconds", "5", "--clients", "8", "--load", "0.25"],
    # the 前置机's upstream leg: TLCP with mutual authentication and session resumption (throughput, CPU, p50)
    "relay-tlcp": ["--seconds", "5", "--clients", "8", "--rate", "0", "--transport", "tlcp"],
    # what the relay's required work costs alone (durable SQLite, an audit entry, one HTTP hop): its CPU floor
    "floor": ["--seconds", "5"],
    "policy": ["--clients", "1000"],
    "idle": ["--seconds", "10"],
    "restart": ["--restarts", "3", "--clients", "4"],
    # about half a minute: every upstream fault against every transaction class, checked against its contract
    "faults": [],
    # about a minute: cashiers against a gateway SIGKILLed 10 times, a platform 3 times, 4 fault rounds and a
    # disk-full round (as root); every count must be 0
    "crash": ["--kills", "10", "--platform-kills", "3", "--fault-rounds", "4", "--disk-full-rounds", "1"],
    # about three minutes: two gateways on one PostgreSQL outbox (a cluster of its own), SIGKILLed 50 times in
    # turn (twice held down past the takeover target), PostgreSQL restarted 3 times; every count must be 0; and
    # one node's throughput on PostgreSQL against one on SQLite
    "ha": ["--kills", "50", "--long-downs", "2", "--pg-restarts", "3"],
}
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def script(name: str) -> str:
    """The file under bench/ a benchmark runs: a variant is named after its script (relay-tlcp: relay.py)."""
    return f"{name.partition('-')[0]}.py"


def bench_dir() -> Path:
    return Path(gateway.__file__).resolve().parent.parent / "bench"


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks against same-run baselines: crypto, tlcp, relay(-tlcp), policy, idle, restart, faults, "
        "crash, ha, all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("names", nargs="*", default=["all"], metavar="NAME", help=f"{', '.join(BENCHES)} or all")
    p.add_argument("--json", type=Path, help="write every figure, the machine and the date to this file")
    p.add_argument(
        "--against",
        metavar="REV",
        help="relay or relay-tlcp only: run it for this tree and for revision REV (built in a venv of its own) "
        "alternately, and print the medians' ratios (bench/ab.py)",
    )
    p.add_argument("--rounds", type=int, default=3, help="with --against: rounds of each side (default 3)")
    p.add_argument("--readme", type=Path, help="rewrite the Performance table of this README")


def run(args: argparse.Namespace) -> int:
    names = list(BENCHES) if "all" in args.names else args.names
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(
            f"ybgate bench: unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHES)}, all",
            file=sys.stderr,
        )
        return 2
    where = bench_dir()
    if not (where / "figures.py").exists():
        print(f"ybgate bench: needs a source checkout (bench/ beside the package; looked in {where})", file=sys.stderr)
        return 2
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(where.parent), os.environ.get("PYTHONPATH")]))}
    if args.against:
        if len(names) != 1 or script(names[0]) != "relay.py":
            print("ybgate bench: --against compares one relay benchmark: relay or relay-tlcp", file=sys.stderr)
            return 2
        ab = [str(where / "ab.py"), "--against", args.against, "--rounds", str(args.rounds), *BENCHES[names[0]]]
        if args.json:
            ab += ["--json", str(args.json)]
        return subprocess.call([sys.executable, *ab], env=env)  # noqa: S603 - our own script
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ybg-bench-") as tmp:
        for name in names:
            out = Path(tmp) / f"{name}.json"
            print(f"\n== {name} ==", flush=True)
            t0 = time.monotonic()
            code = subprocess.call(  # noqa: S603 - our own scripts, by names checked against BENCHES
                [sys.executable, str(where / script(name)), *BENCHES[name], "--json", str(out)], cwd=tmp, env=env
            )
            if code != 0 or not out.exists():
                failed.append(f"{name} (exit {code})")
                continue
            doc = json.loads(out.read_text())
            doc["seconds"] = round(time.monotonic() - t0, 1)
            results.append(doc)
    total = time.monotonic() - started
    rows = [f for doc in results for f in doc["figures"]]
    print()
    print(table(rows))
    print(f"\n{len(rows)} figures in {total / 60:.1f} min; targets met {sum(1 for r in rows if r['met'] is True)}"
          f" of {sum(1 for r in rows if r['met'] is not None)}")  # fmt: skip
    report = {
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": results[0]["machine"] if results else {},
        "seconds": round(total, 1),
        "benches": results,
        "failed": failed,
    }
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    if args.readme:
        write_readme(args.readme, report)
    for f in failed:
        print(f"ybgate bench: {f} failed", file=sys.stderr)
    return 1 if failed else 0


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"


def _target(row: dict[str, Any]) -> str:
    target = row["target"]
    if not target:
        return ""
    kind, _, bound = target.partition("=")
    words = {"ratio>": "≥ {}×", "ratio<": "≤ {}×", "max": "≤ {}", "min": "≥ {}"}[kind].format(bound)
    unit = "" if kind.startswith("ratio") else row["unit"]  # a ratio has no unit
    return f"{words} {unit}".strip() + (" met" if row["met"] else " NOT met")


def table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'figure':<44}{'ybgate':>11}{'baseline':>11}{'ratio':>8}  target"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
        lines.append(f"{r['figure']:<44}{_num(r['ybgate']):>11}{_num(r['baseline']):>11}{ratio:>8}  {_target(r)}")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    out = [
        f"Measured {report['date'][:10]} on {m.get('cores')} cores ({m.get('arch')}, {m.get('system')}, "
        f"Python {m.get('python')}) by `ybgate bench all` in {report['seconds'] / 60:.1f} min.",
        "",
        "| figure | ybgate | baseline | ratio | target |",
        "|---|---:|---:|---:|---|",
    ]
    for doc in report["benches"]:
        for r in doc["figures"]:
            ratio = f"{r['ratio']:.2f}×" if r["ratio"] is not None else ""
            base = f"{_num(r['baseline'])} ({r['baseline_name']})" if r["baseline"] is not None else r["baseline_name"]
            out.append(f"| {r['figure']} | {_num(r['ybgate'])} | {base} | {ratio} | {_target(r)} |")
    return "\n".join(out)


def write_readme(path: Path, report: dict[str, Any]) -> None:
    text = path.read_text(encoding="utf-8")
    if BEGIN not in text or END not in text:
        raise SystemExit(f"ybgate bench: {path} has no {BEGIN} … {END} section to rewrite")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{markdown(report)}\n{END}{tail}", encoding="utf-8")
