"""What changes between two policies, said the way a reviewer asks: who gains or loses what."""

from __future__ import annotations

from gateway.policy.model import ClientRule, Policy


def _grants(c: ClientRule) -> set[str]:
    return set(c.allow.describe())


def _denies(c: ClientRule) -> set[str]:
    return set(c.deny.describe())


def policy_diff(old: Policy, new: Policy) -> list[str]:
    return _clients(old, new) + _upstreams_and_limits(old, new)


def _clients(old: Policy, new: Policy) -> list[str]:
    out: list[str] = []
    before = {c.name: c for c in old.clients}
    after = {c.name: c for c in new.clients}
    for name in sorted(after.keys() - before.keys()):
        c = after[name]
        out.append(f"+ client {name} ({c.describe_match()}) may call {', '.join(sorted(_grants(c)))}")
    for name in sorted(before.keys() - after.keys()):
        c = before[name]
        out.append(f"- client {name} ({c.describe_match()}) removed: loses {', '.join(sorted(_grants(c)))}")
    for name in sorted(before.keys() & after.keys()):
        out += _changed(name, before[name], after[name])
    if [c.name for c in old.clients if c.name in after] != [c.name for c in new.clients if c.name in before]:
        out.append("~ client order changed (the first matching client decides)")
    return out


def _changed(name: str, a: ClientRule, b: ClientRule) -> list[str]:
    out = []
    if a.describe_match() != b.describe_match():
        out.append(f"~ client {name} now matches {b.describe_match()} (was {a.describe_match()})")
    gained, lost = _grants(b) - _grants(a), _grants(a) - _grants(b)
    if gained:
        out.append(f"+ client {name} gains {', '.join(sorted(gained))}")
    if lost:
        out.append(f"- client {name} loses {', '.join(sorted(lost))}")
    newly_denied, undenied = _denies(b) - _denies(a), _denies(a) - _denies(b)
    if newly_denied:
        out.append(f"- client {name} is now denied {', '.join(sorted(newly_denied))}")
    if undenied:
        out.append(f"+ client {name} is no longer denied {', '.join(sorted(undenied))}")
    if a.rate != b.rate:
        out.append(f"~ client {name} rate limit {_rate(a)} -> {_rate(b)}")
    if a.answer != b.answer:
        out.append(f"~ client {name} answers {a.answer} -> {b.answer}")
    if a.complete != b.complete:
        before, after = ", ".join(a.complete) or "nothing", ", ".join(b.complete) or "nothing"
        out.append(f"~ client {name} completes {before} -> {after}")
    if a.charset != b.charset:
        out.append(f"~ client {name} undeclared charset {a.charset or 'utf-8'} -> {b.charset or 'utf-8'}")
    return out


def _upstreams_and_limits(old: Policy, new: Policy) -> list[str]:
    out: list[str] = []
    for host, port in sorted(new.upstreams - old.upstreams):
        out.append(f"+ upstream {host}:{port} may be reached")
    for host, port in sorted(old.upstreams - new.upstreams):
        out.append(f"- upstream {host}:{port} may no longer be reached")
    old_rates = {r.key: r.rate for r in old.rates}
    new_rates = {r.key: r.rate for r in new.rates}
    for key in sorted(old_rates.keys() | new_rates.keys()):
        if old_rates.get(key) != new_rates.get(key):
            out.append(f"~ rate limit {key}: {_spec(old_rates.get(key))} -> {_spec(new_rates.get(key))}")
    old_w = {w.name: w for w in old.windows}
    new_w = {w.name: w for w in new.windows}
    for name in sorted(new_w.keys() - old_w.keys()):
        out.append(f"+ maintenance window {name} refuses {', '.join(new_w[name].deny.describe())}")
    for name in sorted(old_w.keys() - new_w.keys()):
        out.append(f"- maintenance window {name} removed")
    for name in sorted(old_w.keys() & new_w.keys()):
        a, b = old_w[name], new_w[name]
        if (a.days, a.start, a.end, a.deny) != (b.days, b.start, b.end, b.deny):
            out.append(f"~ maintenance window {name} changed")
    return out


def _rate(c: ClientRule) -> str:
    return _spec(c.rate)


def _spec(rate: object) -> str:
    if rate is None:
        return "none"
    return f"{rate.per_second:g}/s burst {rate.burst}"  # type: ignore[attr-defined]
