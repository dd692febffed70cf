"""The indexed engine against a naive reading of the same policy: same client, same verdict, every time.

The indexes (uid/gid dictionaries, one masked lookup per CIDR prefix length) must give exactly what a
linear walk over the clients in file order gives; nested and overlapping networks in one crowded /16 and
repeated uids are where an index can go wrong.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy.engine import Caller, decide
from gateway.policy.loader import PolicyError, load_policy_text

from conftest import fuzz_examples

INFNOS = ["1101", "1162", "2206", "2207", "2601", "5203", "5301", "9001"]
PATTERNS = [*INFNOS, "5*", "52*", "2*", "*"]
_ADDR = st.integers(0, 65535).map(lambda low: (10 << 24) | low)


@st.composite
def policies(draw: st.DrawFn) -> list[dict[str, object]]:
    clients: list[dict[str, object]] = []
    for i in range(draw(st.integers(1, 8))):
        nets = draw(st.lists(st.tuples(_ADDR, st.sampled_from([8, 16, 20, 24, 28, 32])), max_size=2))
        cidrs = sorted({str(ipaddress.ip_network(n, strict=False)) for n in nets})
        # Every client must say whom it matches; uids repeat across clients on purpose (first one wins).
        uids = draw(st.lists(st.integers(1000, 1005), min_size=0 if cidrs else 1, max_size=2, unique=True))
        clients.append(
            {
                "name": f"c{i}",
                "uids": uids,
                "cidrs": cidrs,
                "allow": draw(st.lists(st.sampled_from(PATTERNS), min_size=1, max_size=3, unique=True)),
                "deny": draw(st.lists(st.sampled_from(PATTERNS), max_size=2, unique=True)),
            }
        )
    return clients


def render(clients: list[dict[str, object]]) -> str:
    lines = ["clients:"]
    for c in clients:
        match = []
        if c["uids"]:
            match.append(f"unix: {{uids: {c['uids']}}}")
        if c["cidrs"]:
            match.append(f"tcp: {{cidrs: {c['cidrs']!r}}}")
        lines.append(
            f"  - {{name: {c['name']}, {', '.join(match) + ', ' if match else ''}"
            f"allow: {c['allow']!r}, deny: {c['deny']!r}}}"
        )
    return "\n".join(lines) + "\n"


def _covers(patterns: object, infno: str) -> bool:
    assert isinstance(patterns, list)
    return any(p == infno or (p.endswith("*") and infno.startswith(p[:-1])) for p in patterns)


def naive(clients: list[dict[str, object]], caller: Caller, infno: str) -> tuple[str | None, bool]:
    """The first client in file order that matches, by any of its identities."""
    for c in clients:
        uids, cidrs = c["uids"], c["cidrs"]
        assert isinstance(uids, list) and isinstance(cidrs, list)
        hit = caller.uid is not None and caller.uid in uids
        if caller.ip is not None:
            ip = ipaddress.ip_address(caller.ip)
            hit = hit or any(ip in ipaddress.ip_network(n) for n in cidrs)
        if hit:
            return str(c["name"]), not _covers(c["deny"], infno) and _covers(c["allow"], infno)
    return None, False


@settings(max_examples=fuzz_examples(200), deadline=None)
@given(policies(), st.lists(_ADDR, min_size=1, max_size=20), st.sampled_from(INFNOS))
def test_indexed_decisions_equal_a_linear_walk(clients: list[dict[str, object]], addrs: list[int], infno: str) -> None:
    try:
        policy = load_policy_text(render(clients), "p.yaml")
    except PolicyError:
        return  # a policy the loader refuses (a uid or network claimed twice, a client matching nobody)
    probes = [Caller(ip=str(ipaddress.ip_address(a))) for a in addrs]
    for c in clients:
        assert isinstance(c["cidrs"], list) and isinstance(c["uids"], list)
        probes += [Caller(ip=str(ipaddress.ip_network(n).network_address)) for n in c["cidrs"]]
        probes += [Caller(uid=u) for u in c["uids"]]
    probes.append(Caller(uid=4242))
    for caller in probes:
        d = decide(policy, caller, infno, 0, 600)
        assert (d.client.name if d.client else None, d.allowed) == naive(clients, caller, infno), caller
