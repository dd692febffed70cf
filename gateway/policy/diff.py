"""What changing one policy for another does, in words: who gains or loses which transactions and reach.

Transactions are compared over a universe of infnos (the catalogue the CLI passes in, plus every infno either
policy names), so a change through a group or a prefix shows as the transactions it actually opens or closes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .engine import Callback, Client, Policy, Rate


def client_allows(client: Client, infno: str) -> bool:
    return client.deny.find(infno) is None and client.allow.find(infno) is not None


def _named_infnos(policy: Policy) -> set[str]:
    out: set[str] = set()
    for c in policy.clients:
        out.update(c.allow.exact, c.deny.exact)
    for entries in policy.groups.values():
        out.update(e for e in entries if not e.startswith("@") and not e.endswith("*"))
    return out


def _patterns(client: Client) -> set[str]:
    """Prefixes and '*' as written, for what a finite universe cannot show."""
    out = {f"{p}*" for p, _ in client.allow.prefixes}
    if client.allow.any is not None:
        out.add("*")
    return out


def _identity(client: Client) -> list[str]:
    return (
        [f"uid {u}" for u in sorted(client.uids)]
        + [f"gid {g}" for g in sorted(client.gids)]
        + [f"network {n}" for n in client.cidrs]
    )


def _fmt(items: Iterable[str]) -> str:
    return ", ".join(sorted(items))


def _callback(c: Callback | None) -> str:
    return f"{c.address}:{c.port} from {_fmt(c.sources) or 'any'}" if c else "none"


def _rates(rate: Rate | None, per_infno: Mapping[str, Rate]) -> tuple[object, ...]:
    """Limits by value: a rule that only moved to another line is no change."""
    return (
        (rate.per_second, rate.burst) if rate else None,
        sorted((k, r.per_second, r.burst) for k, r in per_infno.items()),
    )


def diff(old: Policy, new: Policy, universe: Iterable[str] = ()) -> list[str]:
    """Human-readable lines; empty when the two policies decide everything the same way."""
    infnos = sorted(set(universe) | _named_infnos(old) | _named_infnos(new))
    lines: list[str] = []
    before = {c.name: c for c in old.clients}
    after = {c.name: c for c in new.clients}
    for name in sorted(before.keys() | after.keys()):
        lines += _client_lines(name, before.get(name), after.get(name), infnos)
    return lines + _other_lines(old, new)


def _client_lines(name: str, a: Client | None, b: Client | None, infnos: list[str]) -> list[str]:
    lines: list[str] = []
    if a is None and b is not None:
        allowed = [i for i in infnos if client_allows(b, i)]
        return [f"+ client {name} ({_fmt(_identity(b))}) may call: {_fmt(allowed) or 'nothing'}"]
    if b is None and a is not None:
        return [f"- client {name} ({_fmt(_identity(a))}) removed: everything it called is now denied"]
    assert a is not None and b is not None
    gained = [i for i in infnos if client_allows(b, i) and not client_allows(a, i)]
    lost = [i for i in infnos if client_allows(a, i) and not client_allows(b, i)]
    if gained:
        lines.append(f"+ client {name} gains: {_fmt(gained)}")
    if lost:
        lines.append(f"- client {name} loses: {_fmt(lost)}")
    pa, pb = _patterns(a), _patterns(b)
    if pa != pb:
        lines.append(f"~ client {name} patterns: {_fmt(pa) or '-'} → {_fmt(pb) or '-'}")
    ia, ib = set(_identity(a)), set(_identity(b))
    if ib - ia:
        lines.append(f"+ client {name} now also matches: {_fmt(ib - ia)}")
    if ia - ib:
        lines.append(f"- client {name} no longer matches: {_fmt(ia - ib)}")
    if _rates(a.rate, a.infno_rates) != _rates(b.rate, b.infno_rates):
        lines.append(f"~ client {name} rate limits changed")
    return lines


def _other_lines(old: Policy, new: Policy) -> list[str]:
    lines: list[str] = []
    for host, port in sorted(new.upstreams.keys() - old.upstreams.keys()):
        lines.append(f"+ upstream {host}:{port} may be dialled")
    for host, port in sorted(old.upstreams.keys() - new.upstreams.keys()):
        lines.append(f"- upstream {host}:{port} no longer whitelisted")
    ca, cb = old.callback, new.callback
    if (ca and (ca.address, ca.port, ca.peers, ca.sources)) != (cb and (cb.address, cb.port, cb.peers, cb.sources)):
        lines.append(f"~ callback listener: {_callback(ca)} → {_callback(cb)}")
    wa = {w.name: w for w in old.windows}
    wb = {w.name: w for w in new.windows}
    for name in sorted(wb.keys() - wa.keys()):
        lines.append(f"+ maintenance window {name}: {wb[name].message}")
    for name in sorted(wa.keys() - wb.keys()):
        lines.append(f"- maintenance window {name} removed")
    for name in sorted(wa.keys() & wb.keys()):
        x, y = wa[name], wb[name]
        if (x.days, x.start, x.end, x.clients, x.message) != (y.days, y.start, y.end, y.clients, y.message):
            lines.append(f"~ maintenance window {name} changed: {y.message}")
    if _rates(None, old.infno_rates) != _rates(None, new.infno_rates):
        lines.append("~ per-transaction rate limits changed")
    return lines
