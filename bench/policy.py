"""Policy decision cost with 1,000 clients: ybgate's decide() vs a bare dict lookup, same run.

    python bench/policy.py [--clients 1000]

The target (issue: < 10 µs per decision at 1,000 clients/rules) is printed next to the figures.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys
import timeit

import figures

from gateway.policy.engine import Caller, decide
from gateway.policy.loader import load_policy_text


def main(n: int, json_path: str | None = None) -> None:
    lines = ['groups:\n  queries: ["1101", "5*"]\n  settlement: ["2207", "2208"]', "clients:"]
    for i in range(n):
        net = ipaddress.ip_network(f"10.{i // 250}.{i % 250}.0/24")
        lines += [
            f"  - name: c{i}",
            f"    unix: {{uids: [{10000 + i}], gids: [{20000 + i}]}}",
            f"    tcp: {{cidrs: [{net}]}}",
            "    allow: [queries, settlement]",
            '    deny: ["5301"]',
        ]
    policy = load_policy_text("\n".join(lines) + "\n")
    last = n - 1
    unix = Caller(uid=10000 + last, gid=1)
    tcp = Caller(ip=f"10.{last // 250}.{last % 250}.9")
    table = {10000 + i: i for i in range(n)}

    def per_call(fn: object, number: int = 20000) -> float:
        return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6  # type: ignore[arg-type]

    base = per_call(lambda: table.get(10000 + last))
    rows = [
        ("unix peer, allowed", per_call(lambda: decide(policy, unix, "2207", 0, 600))),
        ("unix peer, denied", per_call(lambda: decide(policy, unix, "5301", 0, 600))),
        ("tcp peer (CIDR), allowed", per_call(lambda: decide(policy, tcp, "5203", 0, 600))),
        ("no client (default deny)", per_call(lambda: decide(policy, Caller(uid=1, gid=1), "2207", 0, 600))),
    ]
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}; {n} clients, {n} CIDRs")
    print(f"{'decision':<28}{'µs':>10}{'dict lookup µs':>16}{'ratio':>9}   target < 10 µs")
    for name, us in rows:
        print(f"{name:<28}{us:>10.2f}{base:>16.3f}{us / base:>8.1f}x   {'met' if us < 10 else 'NOT met'}")
    figures.write(
        json_path,
        "policy",
        [
            figures.Figure(f"policy decision µs, {name}", us, base, "dict lookup", unit="µs", target="max=10")
            for name, us in rows
        ],
        clients=n,
    )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--json", help="also write the figures as JSON to this file")
    a = ap.parse_args()
    main(a.clients, a.json)
