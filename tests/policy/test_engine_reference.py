"""The compiled engine against a naive reading of the same policy: same client, same verdict, every time."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy import Caller, LocalTime, load_policy_texts

INFNOS = ["1101", "1162", "2206", "2207", "2601", "5203", "5301", "9001"]
PATTERNS = [*INFNOS, "5*", "52*", "2*", "*"]


# One crowded /16 so that networks nest and overlap, which is where longest-prefix matching can go wrong.
_ADDR = st.integers(0, 65535).map(lambda low: (10 << 24) | low)


@st.composite
def policies(draw: st.DrawFn) -> tuple[str, list[dict[str, object]]]:
    n = draw(st.integers(1, 8))
    nets = draw(
        st.lists(st.tuples(st.integers(0, 2**32 - 1), st.sampled_from([8, 16, 20, 24, 28, 32])), min_size=n, max_size=n)
    )
    clients: list[dict[str, object]] = []
    seen: set[str] = set()
    for i, (addr, plen) in enumerate(nets):
        net = str(ipaddress.ip_network((addr, plen), strict=False))
        if net in seen:
            continue
        seen.add(net)
        allow = draw(st.lists(st.sampled_from(PATTERNS), max_size=3, unique=True))
        deny = draw(st.lists(st.sampled_from(PATTERNS), max_size=2, unique=True))
        clients.append({"name": f"c{i}", "uid": 1000 + i, "net": net, "allow": allow, "deny": deny})
    lines = ["clients:"]
    for c in clients:
        lines.append(
            f"  - {{name: {c['name']}, uids: [{c['uid']}], cidrs: ['{c['net']}'], "
            f"allow: {c['allow']!r}, deny: {c['deny']!r}}}"
        )
    return "\n".join(lines) + "\n", clients


def _matches(patterns: object, infno: str) -> bool:
    assert isinstance(patterns, list)
    return any(p == "*" or p == infno or (p.endswith("*") and infno.startswith(p[:-1])) for p in patterns)


def naive(clients: list[dict[str, object]], caller: Caller, infno: str) -> tuple[str | None, bool]:
    found = None
    if caller.uid is not None:
        found = next((c for c in clients if c["uid"] == caller.uid), None)
    if found is None and caller.address is not None:
        ip = ipaddress.ip_address(caller.address)
        best = -1
        for c in clients:
            net = ipaddress.ip_network(str(c["net"]))
            if ip in net and net.prefixlen > best:
                found, best = c, net.prefixlen
    if found is None:
        return None, False
    return str(found["name"]), not _matches(found["deny"], infno) and _matches(found["allow"], infno)


@settings(max_examples=150, deadline=None)
@given(policies(), st.lists(_ADDR, min_size=1, max_size=20), st.sampled_from(INFNOS))
def test_compiled_equals_naive(doc: tuple[str, list[dict[str, object]]], addresses: list[int], infno: str) -> None:
    text, clients = doc
    policy = load_policy_texts([("p.yaml", text)])
    when = LocalTime(0, 600)
    probes = [Caller(address=str(ipaddress.ip_address(a))) for a in addresses]
    # Also the network addresses themselves and uids, known and unknown.
    probes += [Caller(address=str(ipaddress.ip_network(str(c["net"])).network_address)) for c in clients]
    probes += [Caller(uid=int(str(c["uid"]))) for c in clients] + [Caller(uid=99)]
    for caller in probes:
        d = policy.decide(caller, infno, when)
        assert (d.client, d.allowed) == naive(clients, caller, infno), caller
