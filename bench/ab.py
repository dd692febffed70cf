"""A/B: the relay benchmark for this tree and for another revision, alternately, in one run.

    python bench/ab.py --against REV [--rounds 3] [relay.py options …]

REV (anything git names: a commit, a tag, HEAD~3) is exported with `git archive` and installed into a venv of
its own (its dependencies as it declares them: pip's cache, or PyPI). Each round runs bench/relay.py once with
this tree's gateway and once with REV's, in alternating order (AB, BA, AB …) so that a machine that gets busier
during the run does not favour one side; the simulator and the load generator are this tree's in both. The
figures to steer by are the medians' ratios, this tree over REV: CPU per request below 1 and throughput above 1
mean this tree is cheaper.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
FIGURES = {  # figure-name prefix in relay.py's JSON -> column
    "relay durable req/s": "req/s",
    "relay gateway CPU per request µs": "CPU µs/req",
    "relay p99 added": "p99 added ms",
}


def build(rev: str, where: Path) -> Path:
    """REV installed in a venv of its own; returns its python."""
    src = where / "src"
    src.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev], capture_output=True, check=False, timeout=120)
    if archive.returncode != 0:
        raise SystemExit(f"ab: git cannot export {rev!r}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True, timeout=120)
    venv = where / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(src)], capture_output=True, text=True, check=False, timeout=900
    )
    if done.returncode != 0:
        raise SystemExit(f"ab: installing {rev} failed: {done.stderr.strip()[-500:]}")
    return python


def one(python: str, relay_args: list[str], out: Path) -> dict[str, float]:
    code = subprocess.call(
        [sys.executable, str(HERE / "relay.py"), *relay_args, "--gateway-python", python, "--json", str(out)],
        stdout=subprocess.DEVNULL,
    )
    if code != 0:
        raise SystemExit(f"ab: bench/relay.py failed (exit {code}) with {python}")
    found: dict[str, float] = {}
    for fig in json.loads(out.read_text())["figures"]:
        for prefix, column in FIGURES.items():
            if fig["figure"].startswith(prefix):
                found[column] = fig["ybgate"]
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", required=True, metavar="REV", help="the revision to compare this tree with")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", help="also write every round's figures to this file")
    args, relay_args = ap.parse_known_args()
    work = Path(tempfile.mkdtemp(prefix="ybg-ab-"))
    try:
        print(f"building {args.against} in a venv of its own …", flush=True)
        sides = {"this tree": sys.executable, args.against: str(build(args.against, work / "rev"))}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in sides}
        order = list(sides)
        for n in range(args.rounds):
            for name in order if n % 2 == 0 else reversed(order):
                got = one(sides[name], relay_args, work / f"{n}.json")
                runs[name].append(got)
                print(f"round {n + 1} {name:<12} " + "  ".join(f"{k} {v:,.1f}" for k, v in got.items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    this, other = (runs[name] for name in sides)
    print(f"\nmedians of {args.rounds} rounds{'':<6}{'this tree':>12}{args.against:>14}{'ratio':>10}")
    summary: dict[str, dict[str, float]] = {}
    for column in FIGURES.values():
        a = [r[column] for r in this if column in r]
        b = [r[column] for r in other if column in r]
        if not a or not b:
            continue
        ma, mb = statistics.median(a), statistics.median(b)
        summary[column] = {"this": ma, "against": mb, "ratio": ma / mb if mb else float("nan")}
        print(f"{column:<28}{ma:>12,.1f}{mb:>14,.1f}{summary[column]['ratio']:>9.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"against": args.against, "runs": runs, "medians": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
