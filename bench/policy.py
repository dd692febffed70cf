"""Policy decision cost at 1,000 clients and rules, against a bare dict lookup measured in the same run.

    PYTHONPATH=. python bench/policy.py [--clients 1000]

Prints µs per decision for Unix-socket callers (uid), TCP callers (longest-prefix network match), denials,
and the rate limiter, next to the baseline, so a slow machine shows as a slow baseline, not a slow policy.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from gateway.policy import Caller, LocalTime, RateLimiter, load_policy_texts

BUDGET_US = 10.0


def build(n: int) -> str:
    groups = "groups:\n  q: ['1101', '1162', '5*']\n  money: ['2206', '2207', '2208', '2601']\n"
    lines = [groups, "clients:\n"]
    for i in range(n):
        ident = f"uids: [{10000 + i}]" if i % 2 == 0 else f"cidrs: ['10.{i // 250}.{i % 250}.0/24']"
        extra = f", deny: ['{5000 + i % 900}']" if i % 3 == 0 else ""
        lines.append(
            f"  - {{name: c{i}, {ident}, allow: ['@q', '@money', '{3000 + i % 900}']{extra},"
            f" rate: {{per_second: 100000, burst: 1000000}}}}\n"
        )
    lines.append("maintenance:\n")
    for i in range(20):
        lines.append(f"  - {{name: w{i}, days: [sun], start: '0{i % 9}:00', end: '0{i % 9}:30', infnos: ['@money']}}\n")
    return "".join(lines)


def per_call_us(fn: Callable[[int], object], n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=100_000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    policy = load_policy_texts([("bench.yaml", build(args.clients))])
    load_ms = (time.perf_counter() - t0) * 1000
    rng = random.Random(1)
    when = LocalTime(2, 12 * 60)
    infnos = ["1101", "2207", "5203", "3201", "9999"]
    uid_callers = [Caller(uid=10000 + 2 * rng.randrange(args.clients // 2)) for _ in range(1024)]
    tcp_callers = [
        Caller(address=f"10.{i // 250}.{i % 250}.{rng.randrange(1, 255)}")
        for i in (2 * rng.randrange(args.clients // 2) + 1 for _ in range(1024))
    ]
    strangers = [Caller(uid=1, gid=1) for _ in range(1024)]
    table = {10000 + i: i for i in range(args.clients)}
    keys = [10000 + rng.randrange(args.clients) for _ in range(1024)]
    limiter = RateLimiter(policy)
    clients = [policy.client_for(c) for c in uid_callers]

    baseline = per_call_us(lambda i: table.get(keys[i & 1023]), args.calls)
    results = {
        "decide, uid caller": per_call_us(
            lambda i: policy.decide(uid_callers[i & 1023], infnos[i % 5], when), args.calls
        ),
        "decide, TCP caller (CIDR)": per_call_us(
            lambda i: policy.decide(tcp_callers[i & 1023], infnos[i % 5], when), args.calls
        ),
        "decide, unknown caller": per_call_us(lambda i: policy.decide(strangers[i & 1023], "1101", when), args.calls),
        "rate limiter take": per_call_us(lambda i: limiter.take(clients[i & 1023], "1101", i * 1e-6), args.calls),
    }
    print(f"policy with {args.clients} clients, 20 maintenance windows: compiled in {load_ms:.0f} ms")
    print(f"  {'baseline: dict.get':32} {baseline:7.3f} µs/call")
    worst = 0.0
    for name, us in results.items():
        worst = max(worst, us)
        print(f"  {name:32} {us:7.3f} µs/call  ({us / baseline:5.1f}× baseline)")
    verdict = "within" if worst < BUDGET_US else "OVER"
    print(f"worst {worst:.2f} µs per decision: {verdict} the {BUDGET_US:.0f} µs budget")


if __name__ == "__main__":
    main()
