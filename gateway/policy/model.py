"""The compiled policy: what the engine decides with. Frozen, built once per load, swapped whole.

Matching is indexed so a decision costs the same with ten clients or a thousand: Unix peers by uid and gid
in dicts, TCP peers by one dict per prefix length (mask the address, look it up). Clients are tried in file
order and the first match wins, as in a firewall; the indexes keep that order by storing each client's rank.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from gateway.errors import Position


@dataclass(frozen=True)
class InfnoSet:
    """Transactions named by exact numbers and prefixes ("5*": every 5xxx query)."""

    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()

    def __contains__(self, infno: str) -> bool:
        return infno in self.exact or infno.startswith(self.prefixes)  # str.startswith takes a tuple

    def describe(self) -> list[str]:
        return sorted(self.exact) + [f"{p}*" for p in sorted(self.prefixes)]

    def union(self, other: InfnoSet) -> InfnoSet:
        return InfnoSet(self.exact | other.exact, tuple(sorted(set(self.prefixes) | set(other.prefixes))))


@dataclass(frozen=True)
class RateSpec:
    per_second: float
    burst: int


@dataclass(frozen=True)
class ClientRule:
    name: str
    rank: int
    position: Position
    uids: frozenset[int]
    gids: frozenset[int]
    cidrs: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    allow: InfnoSet
    deny: InfnoSet
    allow_words: tuple[str, ...]  # as written (group names kept), for messages and diffs
    rate: RateSpec | None
    #: platform | http_status: the shape of the gateway's own failure answers to this client
    answer: str = "platform"
    #: utf-8 | gbk | None: the charset of bodies whose Content-Type names none
    charset: str | None = None
    #: envelope fields the gateway fills when this client leaves them out
    complete: tuple[str, ...] = ()

    def describe_match(self) -> str:
        parts = [f"uid {', '.join(map(str, sorted(self.uids)))}"] if self.uids else []
        parts += [f"gid {', '.join(map(str, sorted(self.gids)))}"] if self.gids else []
        parts += [f"tcp {', '.join(map(str, self.cidrs))}"] if self.cidrs else []
        return "; ".join(parts)


@dataclass(frozen=True)
class Window:
    name: str
    position: Position
    days: frozenset[int]  # 0 = Monday
    start: int  # minutes since midnight
    end: int  # exclusive; a window with end <= start runs over midnight
    deny: InfnoSet
    message: str

    def active(self, weekday: int, minute: int) -> bool:
        if self.start < self.end:
            return weekday in self.days and self.start <= minute < self.end
        # Over midnight: the part before midnight belongs to the listed day, the rest to the next one.
        return (weekday in self.days and minute >= self.start) or ((weekday - 1) % 7 in self.days and minute < self.end)


@dataclass(frozen=True)
class InfnoRate:
    infnos: InfnoSet
    key: str  # as written
    rate: RateSpec
    position: Position


@dataclass(frozen=True)
class Callback:
    address: str
    port: int
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Policy:
    files: tuple[str, ...]
    clients: tuple[ClientRule, ...]
    upstreams: frozenset[tuple[str, int]]
    rates: tuple[InfnoRate, ...]
    windows: tuple[Window, ...]
    callback_peers: tuple[tuple[str, tuple[str, ...]], ...]
    callback: Callback | None = None
    groups: dict[str, InfnoSet] = field(default_factory=dict)
    # indexes
    by_uid: dict[int, int] = field(default_factory=dict)
    by_gid: dict[int, int] = field(default_factory=dict)
    by_net: dict[int, dict[int, int]] = field(default_factory=dict)  # prefix length -> network int -> rank
    by_net6: dict[int, dict[int, int]] = field(default_factory=dict)

    @property
    def version(self) -> str:
        """A short, stable fingerprint of what the policy allows (shown in status and logs)."""
        import hashlib

        text = repr(
            (
                [
                    (
                        c.name,
                        sorted(c.uids),
                        sorted(c.gids),
                        [str(n) for n in c.cidrs],
                        c.allow.describe(),
                        c.deny.describe(),
                        c.rate,
                        c.answer,
                        c.charset,
                        c.complete,
                    )
                    for c in self.clients
                ],
                sorted(self.upstreams),
                [(r.key, r.rate) for r in self.rates],
                [(w.name, sorted(w.days), w.start, w.end, w.deny.describe()) for w in self.windows],
                self.callback_peers,
                self.callback,
            )
        )
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_indexes(
    clients: tuple[ClientRule, ...],
) -> tuple[dict[int, int], dict[int, int], dict[int, dict[int, int]], dict[int, dict[int, int]]]:
    by_uid: dict[int, int] = {}
    by_gid: dict[int, int] = {}
    by_net: dict[int, dict[int, int]] = {}
    by_net6: dict[int, dict[int, int]] = {}
    for c in clients:
        for uid in c.uids:
            by_uid.setdefault(uid, c.rank)  # the first client naming it wins
        for gid in c.gids:
            by_gid.setdefault(gid, c.rank)
        for net in c.cidrs:
            table = by_net if net.version == 4 else by_net6
            table.setdefault(net.prefixlen, {}).setdefault(int(net.network_address), c.rank)
    return by_uid, by_gid, by_net, by_net6
