"""The schema of one policy file, as ops write it. Every file may hold any of the sections; the loader merges
them (see loader.py for the order) and compiles the result (model.py)."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_INFNO_PATTERN = re.compile(r"^(?:[0-9]{4}[A-Z]?|[0-9]{0,3}\*)$")
_NAME = r"^[A-Za-z0-9_.-]{1,64}$"


def _cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError as exc:
        raise ValueError(f"not a network in CIDR form (e.g. 10.0.0.0/24): {exc}") from None
    return value


def _ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(
            "an IP literal is required (names would be resolved by DNS, which policy never trusts)"
        ) from None
    return value


def _hhmm(value: str) -> str:
    if not re.match(r"^([01][0-9]|2[0-3]):[0-5][0-9]$", value):
        raise ValueError("a time of day as HH:MM (00:00-23:59)")
    return value


Cidr = Annotated[str, AfterValidator(_cidr)]
IpLiteral = Annotated[str, AfterValidator(_ip)]
Name = Annotated[str, Field(pattern=_NAME)]
#: an infno (2207, 2203A), a prefix pattern (5*, 22*) or a group name
Item = Annotated[str, Field(min_length=1, max_length=64)]


#: the fields a client may ask the gateway to complete (the gateway's own values: see platform.completion)
Completable = Literal[
    "inf_time",
    "sign_no",
    "fixmedins_code",
    "fixmedins_name",
    "mdtrtarea_admvs",
    "recer_sys_code",
    "infver",
    "opter",
    "opter_name",
    "opter_type",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rate(_Strict):
    per_second: Annotated[float, Field(gt=0, le=100_000)]
    burst: Annotated[int, Field(ge=1, le=1_000_000)] | None = None


class UnixMatch(_Strict):
    uids: list[Annotated[int, Field(ge=0)]] = []
    gids: list[Annotated[int, Field(ge=0)]] = []
    users: list[Annotated[str, Field(min_length=1)]] = []  # resolved on this host at load time
    groups: list[Annotated[str, Field(min_length=1)]] = []


class TcpMatch(_Strict):
    cidrs: Annotated[list[Cidr], Field(min_length=1)]


class Client(_Strict):
    name: Name
    unix: UnixMatch | None = None
    tcp: TcpMatch | None = None
    allow: Annotated[list[Item], Field(min_length=1)]
    deny: list[Item] = []
    rate: Rate | None = None
    #: how the gateway's own refusals and relay outcomes reach this client: platform (HTTP 200, infcode -1,
    #: as the platform answers business failures; the only shape most HIS HTTP stacks can read) or http_status
    #: (the HTTP status says the kind: 400, 403, 502, 504 …)
    answer: Literal["platform", "http_status"] = "platform"
    #: the charset of this client's bodies when its Content-Type does not say (a declared charset wins): gbk
    #: for a Windows HIS whose JSON is marshalled in the ANSI code page; its answers go back in GBK
    charset: Literal["utf-8", "gbk"] | None = None
    #: envelope fields the gateway fills when this client leaves them out (platform.completion)
    complete: list[Completable] = []
    note: str | None = None


class Upstream(_Strict):
    host: IpLiteral
    port: Annotated[int, Field(ge=1, le=65535)]
    note: str | None = None


class Window(_Strict):
    """A maintenance window: the listed transactions are refused (with `message`) during it."""

    name: Name
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = [
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
    ]
    start: Annotated[str, AfterValidator(_hhmm)] = Field(alias="from")
    end: Annotated[str, AfterValidator(_hhmm)] = Field(alias="to")
    deny: Annotated[list[Item], Field(min_length=1)]
    message: Annotated[str, Field(min_length=1, max_length=200)] = "系统维护中，请稍后再试 (maintenance window)"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CallbackPeer(_Strict):
    subject: Annotated[str, Field(min_length=3)]
    cidrs: list[Cidr] = []


class Callback(_Strict):
    """The gateway's listener for the platform's callbacks: the only inbound port the firewall opens."""

    address: IpLiteral
    port: Annotated[int, Field(ge=1, le=65535)]
    sources: list[Cidr] = []  # who may connect (empty: anyone on the 专网 interface)


class PolicyFile(_Strict):
    version: Literal[1] = 1
    groups: dict[Name, Annotated[list[Item], Field(min_length=1)]] = {}
    clients: list[Client] = []
    upstreams: list[Upstream] = []
    rate_limits: dict[Item, Rate] = {}  # per infno (or pattern/group), over all clients
    maintenance: list[Window] = []
    callback_peers: list[CallbackPeer] = []
    callback: Callback | None = None


def valid_infno_pattern(item: str) -> bool:
    return bool(_INFNO_PATTERN.match(item))
