"""The policy as an nftables table of our own (`inet ybgate`): pure rendering and comparison, no I/O.

On the 专网 interface only three kinds of traffic pass: packets of established connections, new connections
out to the whitelisted upstreams, and new connections in to the callback listener (from its allowed sources).
Everything else on that interface is counted and dropped; other interfaces are not touched, and other tables
(the host's own firewall) are left alone.

The ruleset is one nft JSON batch: `add table; delete table; add table; chains; rules` replaces the whole
table in a single kernel transaction, so there is never a moment with half a ruleset. Every rule carries a
comment naming its role, which is what read-back verification and drift detection compare by.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gateway.errors import GatewayError
from gateway.policy.model import Policy


class FirewallError(GatewayError):
    """nftables refused the ruleset, or what the kernel holds is not what was applied."""

    kind = "firewall"


FAMILY = "inet"
TABLE = "ybgate"
_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")
_NDP = ("nd-router-solicit", "nd-router-advert", "nd-neighbor-solicit", "nd-neighbor-advert")
DROP_IN, DROP_OUT = "ybgate: drop the rest (in)", "ybgate: drop the rest (out)"


@dataclass(frozen=True)
class Ruleset:
    """What we intend the kernel to hold: the batch to apply and the skeleton to verify it by."""

    interface: str
    batch: dict[str, Any]
    #: (chain, comment) of every rule in order: what a read-back must show
    skeleton: tuple[tuple[str, str], ...]
    #: each rule's expression in canonical form (see `canonical`), in the same order
    contents: tuple[str, ...] = ()

    def text(self) -> str:
        return json.dumps(self.batch, ensure_ascii=False)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise FirewallError(f"not an IP address literal: {text!r}") from None


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError:
        raise FirewallError(f"not a network: {text!r}") from None


def _match(left: dict[str, Any], right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _l3(addr: ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return "ip" if addr.version == 4 else "ip6"


def _addr_value(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Any:
    if net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def render(policy: Policy, interface: str) -> Ruleset:
    """The table for `policy` guarding `interface`. Every address is parsed again here: nothing reaches nft
    as text that `ipaddress` has not accepted."""
    if not _IFNAME.match(interface):
        raise FirewallError(f"not an interface name: {interface!r}")
    table = {"family": FAMILY, "name": TABLE}
    cmds: list[dict[str, Any]] = [
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
    ]
    for name, hook in (("inbound", "input"), ("outbound", "output")):
        chain = {"family": FAMILY, "table": TABLE, "name": name, "type": "filter", "hook": hook, "prio": 0}
        cmds.append({"add": {"chain": chain | {"policy": "accept"}}})
    skeleton: list[tuple[str, str]] = []

    def rule(chain: str, comment: str, expr: list[dict[str, Any]]) -> None:
        cmds.append(
            {"add": {"rule": {"family": FAMILY, "table": TABLE, "chain": chain, "comment": comment, "expr": expr}}}
        )
        skeleton.append((chain, comment))

    iif = _match({"meta": {"key": "iifname"}}, interface)
    oif = _match({"meta": {"key": "oifname"}}, interface)
    established = _match({"ct": {"key": "state"}}, ["established", "related"], "in")
    tcp = _match({"meta": {"key": "l4proto"}}, "tcp")

    # IPv6 needs neighbour discovery to reach anything at all; it is link-local plumbing, not a service.
    ndp = _match({"payload": {"protocol": "icmpv6", "field": "type"}}, {"set": list(_NDP)})
    rule("inbound", "ybgate: established", [iif, established, {"accept": None}])
    rule("inbound", "ybgate: ipv6 neighbour discovery", [iif, ndp, {"accept": None}])
    cb = policy.callback
    if cb is not None:
        address = _ip(cb.address)
        l3 = _l3(address)
        expr = [iif, _match({"payload": {"protocol": l3, "field": "daddr"}}, str(address)), tcp]
        sources = [_net(s) for s in cb.sources if _net(s).version == address.version]
        if cb.sources and not sources:
            raise FirewallError(f"callback sources have no network of the listener's family ({address})")
        if sources:
            values = [_addr_value(n) for n in sources]
            right = values[0] if len(values) == 1 else {"set": values}
            expr.append(_match({"payload": {"protocol": l3, "field": "saddr"}}, right))
        expr += [_match({"payload": {"protocol": "tcp", "field": "dport"}}, int(cb.port)), {"accept": None}]
        rule("inbound", f"ybgate: callback {_hostport(str(address), cb.port)}", expr)
    rule("inbound", DROP_IN, [iif, {"counter": None}, {"drop": None}])

    rule("outbound", "ybgate: established", [oif, established, {"accept": None}])
    rule("outbound", "ybgate: ipv6 neighbour discovery", [oif, ndp, {"accept": None}])
    for host, port in sorted(policy.upstreams, key=lambda hp: (_ip(hp[0]).version, int(_ip(hp[0])), hp[1])):
        address = _ip(host)
        expr = [
            oif,
            _match({"payload": {"protocol": _l3(address), "field": "daddr"}}, str(address)),
            tcp,
            _match({"payload": {"protocol": "tcp", "field": "dport"}}, int(port)),
            {"accept": None},
        ]
        rule("outbound", f"ybgate: upstream {_hostport(str(address), port)}", expr)
    rule("outbound", DROP_OUT, [oif, {"counter": None}, {"drop": None}])
    contents = tuple(canonical(c["add"]["rule"]["expr"]) for c in cmds if "rule" in c.get("add", {}))
    return Ruleset(interface, {"nftables": cmds}, tuple(skeleton), contents)


def canonical(expr: Iterable[Any]) -> str:
    """A rule's expression as comparable text: counter values cleared, set members sorted, and the protocol
    match nft adds implicitly for a port match (meta l4proto) left out, so that what we render and what the
    kernel lists compare equal when, and only when, they filter the same packets."""
    out = []
    for e in expr:
        if isinstance(e, dict) and "counter" in e:
            out.append({"counter": None})
            continue
        if isinstance(e, dict) and "match" in e and e["match"].get("left") == {"meta": {"key": "l4proto"}}:
            continue
        out.append(_sorted_sets(e))
    return json.dumps(out, sort_keys=True, ensure_ascii=False)


def _sorted_sets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_sets(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_sorted_sets(v) for v in value]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))
    return value


def delete_batch() -> str:
    """Remove our table (and only ours), whether or not it exists."""
    table = {"family": FAMILY, "name": TABLE}
    return json.dumps({"nftables": [{"add": {"table": table}}, {"delete": {"table": table}}]})


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Observed:
    """The table as the kernel reports it (`nft -j list table inet ybgate`), reduced to what we compare."""

    present: bool
    chains: tuple[tuple[str, str, str, int, str], ...]
    skeleton: tuple[tuple[str, str], ...]
    fingerprint: str
    dropped_in: int
    dropped_out: int
    contents: tuple[str, ...] = ()


def observe(listing: str | None) -> Observed:
    """Parse a listing (None: the table does not exist). Handles and counter values are left out of the
    fingerprint: they change without anyone editing anything."""
    if not listing:
        return Observed(False, (), (), "", 0, 0)
    try:
        items = json.loads(listing)["nftables"]
    except (ValueError, KeyError, TypeError):
        raise FirewallError("nft printed a listing that is not the expected JSON") from None
    chains: list[tuple[str, str, str, int, str]] = []
    skeleton: list[tuple[str, str]] = []
    canon: list[Any] = []
    contents: list[str] = []
    drops = {DROP_IN: 0, DROP_OUT: 0}
    for item in items:
        if not isinstance(item, dict):
            continue
        if "chain" in item:
            c = item["chain"]
            chains.append(
                (
                    str(c.get("name")),
                    str(c.get("type")),
                    str(c.get("hook")),
                    int(c.get("prio", 0)),
                    str(c.get("policy")),
                )
            )
        elif "rule" in item:
            r = item["rule"]
            comment = str(r.get("comment", ""))
            skeleton.append((str(r.get("chain")), comment))
            expr = list(_without_counts(r.get("expr", [])))
            canon.append([r.get("chain"), comment, expr])
            contents.append(canonical(r.get("expr", [])))
            if comment in drops:
                drops[comment] = _packets(r.get("expr", []))
    digest = hashlib.sha256(json.dumps([sorted(chains), canon], sort_keys=True).encode()).hexdigest()
    return Observed(
        True, tuple(sorted(chains)), tuple(skeleton), digest, drops[DROP_IN], drops[DROP_OUT], tuple(contents)
    )


def _without_counts(expr: Iterable[Any]) -> Iterable[Any]:
    for e in expr:
        if isinstance(e, dict) and "counter" in e:
            yield {"counter": None}
        else:
            yield e


def _packets(expr: Iterable[Any]) -> int:
    for e in expr:
        if isinstance(e, dict) and isinstance(e.get("counter"), dict):
            return int(e["counter"].get("packets", 0))
    return 0


EXPECTED_CHAINS = (("inbound", "filter", "input", 0, "accept"), ("outbound", "filter", "output", 0, "accept"))


def mismatch(ruleset: Ruleset, seen: Observed) -> str | None:
    """Why what the kernel holds is not `ruleset` (None: it is)."""
    if not seen.present:
        return f"table {FAMILY} {TABLE} is missing"
    if seen.chains != tuple(sorted(EXPECTED_CHAINS)):
        return f"chains differ: {seen.chains}"
    if seen.skeleton != ruleset.skeleton:
        want, got = set(ruleset.skeleton), set(seen.skeleton)
        extra = sorted(got - want)
        missing = sorted(want - got)
        return f"rules differ (missing {missing or '-'}, unexpected {extra or '-'}, or out of order)"
    changed = [
        comment
        for (_, comment), want, got in zip(ruleset.skeleton, ruleset.contents, seen.contents, strict=True)
        if want != got
    ]
    if changed:
        return f"rule contents differ: {', '.join(changed)}"
    return None
