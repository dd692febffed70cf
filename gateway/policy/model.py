"""The schema of one policy file, as ops write it (pydantic, strict: unknown fields are errors).

A file may hold any of the sections; the loader merges the files (see policies/README.md) and compiles the
result into the lookup tables the engine decides with. Addresses are IP literals only: what reaches nftables
has been parsed by `ipaddress` first, never passed through as text.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
Name = Annotated[str, Field(pattern=NAME)]
Port = Annotated[int, Field(ge=1, le=65535)]

# An entry of an allow/deny list: "*" (any), an exact infno ("2207", "2203A"), a prefix ("5*"), a group ("@queries").
_ENTRY = re.compile(r"^(\*|@[A-Za-z0-9][A-Za-z0-9_.-]{0,62}|[0-9A-Za-z]{1,10}\*?)$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$|^24:00$")


def _entry(v: str) -> str:
    if not isinstance(v, str) or not _ENTRY.match(v):
        raise ValueError(f"{v!r} is not an infno, a prefix like 5*, a group like @queries, or *")
    return v


Entry = Annotated[str, AfterValidator(_entry)]


def _ip(v: str) -> str:
    try:
        return str(ipaddress.ip_address(v))
    except ValueError:
        raise ValueError(f"{v!r} is not an IP address literal (host names are not allowed here)") from None


def _cidr(v: str) -> str:
    try:
        return str(ipaddress.ip_network(v, strict=True))
    except ValueError as exc:
        raise ValueError(f"{v!r} is not a network in CIDR form ({exc})") from None


IpLiteral = Annotated[str, AfterValidator(_ip)]
Cidr = Annotated[str, AfterValidator(_cidr)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class RateSpec(_Strict):
    """A token bucket: `per_second` sustained, up to `burst` at once."""

    per_second: Annotated[float, Field(gt=0, le=100_000)]
    burst: Annotated[int, Field(ge=1, le=1_000_000)] | None = None

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else max(1, int(self.per_second))


class ClientSpec(_Strict):
    name: Name
    #: local HIS processes, by the Unix peer credentials of their connection (SO_PEERCRED)
    uids: list[Annotated[int, Field(ge=0, le=2**32 - 2)]] = []
    gids: list[Annotated[int, Field(ge=0, le=2**32 - 2)]] = []
    #: HIS hosts on the TCP listener, by source address
    cidrs: list[Cidr] = []
    allow: list[Entry] = []
    #: exceptions to `allow`; a deny always wins over an allow of the same client
    deny: list[Entry] = []
    rate: RateSpec | None = None
    #: per transaction for this client, e.g. {"2207": {per_second: 2}}
    infno_rates: dict[Annotated[str, Field(pattern=r"^[0-9A-Za-z]{1,10}$")], RateSpec] = {}
    description: str = ""

    @model_validator(mode="after")
    def _identified(self) -> ClientSpec:
        if not (self.uids or self.gids or self.cidrs):
            raise ValueError("a client needs at least one of uids, gids, cidrs (whom does it match?)")
        return self


class UpstreamSpec(_Strict):
    host: IpLiteral
    port: Port
    description: str = ""


class CallbackSpec(_Strict):
    """The listener the platform calls back on: where it listens and who may call it."""

    address: IpLiteral
    port: Port
    #: RFC 4514 subjects of the platform certificates accepted on the listener
    peers: list[Annotated[str, Field(min_length=3)]] = []
    #: source networks allowed through the firewall to the listener (empty: any on the 专网 interface)
    sources: list[Cidr] = []


class WindowSpec(_Strict):
    """A maintenance window (local time): the listed transactions are refused while it lasts."""

    name: Name
    days: list[str] = list(_DAYS)
    start: str
    end: str
    infnos: list[Entry] = ["*"]
    #: client names it applies to (empty: all)
    clients: list[Name] = []
    message: str = "maintenance window"

    @field_validator("days")
    @classmethod
    def _days(cls, v: list[str]) -> list[str]:
        bad = [d for d in v if d not in _DAYS]
        if bad:
            raise ValueError(f"days are {', '.join(_DAYS)}; got {', '.join(map(repr, bad))}")
        return v

    @field_validator("start", "end")
    @classmethod
    def _time(cls, v: str) -> str:
        if not isinstance(v, str) or not _HHMM.match(v):
            raise ValueError("a time of day as HH:MM (00:00 to 24:00), quoted")
        return v

    @model_validator(mode="after")
    def _length(self) -> WindowSpec:
        if minutes(self.start) == minutes(self.end):
            raise ValueError("start and end are the same time: the window would be empty")
        return self


def minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def day_index(day: str) -> int:
    return _DAYS.index(day)


class PolicyFile(_Strict):
    """One file; every section optional so that ops can split a policy as they like."""

    version: Annotated[int, Field(ge=1, le=1)] = 1
    groups: dict[Name, list[Entry]] = {}
    clients: list[ClientSpec] = []
    upstreams: list[UpstreamSpec] = []
    callback: CallbackSpec | None = None
    #: per transaction across all clients
    infno_rates: dict[Annotated[str, Field(pattern=r"^[0-9A-Za-z]{1,10}$")], RateSpec] = {}
    maintenance: list[WindowSpec] = []
