"""The hospital's side of a day: the settlements the outbox holds answers for, as statement lines.

A settlement belongs to the day of its platform settlement time (setl_time, Beijing time) where the answer
gives one, else of its answer's arrival. What the outbox cannot count is listed, not guessed: settlements
booked without an answer (confirmed by a query or by ops; no setl_id or amounts here) and settlements still
unresolved. A confirmed settlement is still put against the platform's detail, by its msgid, in the group its
request names: a confirmation is a claim about the platform, and the platform's word checks it.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

from gateway.platform.envelope import decode_response
from gateway.platform.stmtfiles import AMOUNTS, GroupKey, StatementLine, money
from gateway.relay.outbox import Row
from gateway.relay.states import UNFINISHED, RowState

PLATFORM_TZ = timezone(timedelta(hours=8))
#: settlements and the refunds (撤销) that book negative lines, with their clearing type when the answer omits it
SETTLEMENTS = {"2207": "11", "2304": "21", "2102": "41"}
REFUNDS = {"2208": "11", "2305": "21", "2103": "41"}
INFNOS = frozenset(SETTLEMENTS) | frozenset(REFUNDS)
#: a request accepted this long before midnight may still be settled after it
MARGIN = 3600.0


def day_bounds(day: date) -> tuple[float, float]:
    start = datetime(day.year, day.month, day.day, tzinfo=PLATFORM_TZ).timestamp()
    return start, start + 86400.0


@dataclass(frozen=True)
class Pending:
    """An outbox row the day's totals cannot include."""

    msgid: str
    infno: str
    psn_no: str | None
    state: str
    outcome: str | None


@dataclass
class LocalDay:
    day: date
    groups: dict[GroupKey, list[StatementLine]] = field(default_factory=lambda: defaultdict(list))
    by_msgid: dict[str, StatementLine] = field(default_factory=dict)
    unanswered: list[Pending] = field(default_factory=list)  # booked (confirmed), answer never came
    #: msgid -> (the group its request names, the row) of the day's settlements confirmed without an answer
    confirmed: dict[str, tuple[GroupKey, Pending]] = field(default_factory=dict)
    #: msgid -> outcome of the day's settlements the outbox holds as not booked (refused, or ruled so by ops)
    failed: dict[str, str] = field(default_factory=dict)
    unresolved: list[Pending] = field(default_factory=list)  # outcome still unknown
    problems: list[str] = field(default_factory=list)  # answers the day could not read


def _setlinfo(row: Row) -> dict[str, Any] | None:
    assert row.response is not None
    answer = decode_response(row.response)
    if not answer.ok:
        return None  # refused by the platform: nothing booked
    info = (answer.output or {}).get("setlinfo") if isinstance(answer.output, dict) else None
    if not isinstance(info, dict):
        raise TypeError("the answer has no output.setlinfo")
    return info


def _request_data(row: Row) -> dict[str, Any]:
    doc = json.loads(row.request)
    data = (doc.get("input") or {}).get("data") if isinstance(doc, dict) else None
    return {"envelope": doc, **(data if isinstance(data, dict) else {})}


def _key(row: Row, info: dict[str, Any], req: dict[str, Any]) -> GroupKey:
    """The group a settlement is reconciled in: the answer's word, else the request's."""
    return GroupKey(
        insutype=str(info.get("insutype") or req.get("insutype") or ""),
        clr_type=str(info.get("clr_type") or (REFUNDS if row.infno in REFUNDS else SETTLEMENTS)[row.infno]),
        setl_optins=str(
            info.get("clr_optins") or info.get("setl_optins") or req["envelope"].get("insuplc_admdvs") or ""
        ),
    )


def _line(row: Row, info: dict[str, Any]) -> tuple[GroupKey, StatementLine, str]:
    req = _request_data(row)
    refund = row.infno in REFUNDS
    key = _key(row, info, req)
    missing = [n for n in ("setl_id", *AMOUNTS) if info.get(n) in (None, "")]
    if missing:
        raise ValueError(f"the answer's setlinfo lacks {', '.join(missing)}")
    setl_time = str(info.get("setl_time") or "")
    if not setl_time:
        setl_time = datetime.fromtimestamp(row.updated, PLATFORM_TZ).strftime("%Y-%m-%d %H:%M:%S")
    line = StatementLine(
        setl_id=str(info["setl_id"]),
        mdtrt_id=str(info.get("mdtrt_id") or req.get("mdtrt_id") or ""),
        psn_no=str(info.get("psn_no") or row.psn_no or ""),
        refd_setl_flag="1" if refund else "0",
        msgid=row.msgid,
        setl_time=setl_time,
        medfee_sumamt=money(info["medfee_sumamt"]),
        fund_pay_sumamt=money(info["fund_pay_sumamt"]),
        acct_pay=money(info["acct_pay"]),
    )
    return key, line, setl_time[:10]


def local_day(day: date, rows: Iterable[Row]) -> LocalDay:
    """The day's statement from outbox rows of INFNOS created within MARGIN of it."""
    out = LocalDay(day)
    start, end = day_bounds(day)
    wanted = day.isoformat()
    for row in rows:
        if row.infno not in INFNOS:
            continue
        on_day = start <= row.created < end
        pending = Pending(row.msgid, row.infno, row.psn_no, row.state.value, row.outcome)
        if row.state is RowState.CONFIRMED and on_day:
            out.unanswered.append(pending)
            try:
                out.confirmed[row.msgid] = (_key(row, {}, _request_data(row)), pending)
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                out.problems.append(f"{row.msgid} ({row.infno}): confirmed, but its request names no group: {exc}")
        elif row.state is RowState.FAILED and on_day:
            out.failed[row.msgid] = row.outcome or "failed"
        elif row.state in UNFINISHED and on_day:
            out.unresolved.append(pending)
        elif row.state is RowState.ANSWERED and row.response is not None:
            try:
                info = _setlinfo(row)
                if info is None:
                    continue
                key, line, when = _line(row, info)
            except (ValueError, KeyError, TypeError) as exc:
                if on_day:
                    out.problems.append(f"{row.msgid} ({row.infno}): {exc}")
                continue
            if when == wanted:
                out.groups[key].append(line)
                out.by_msgid[row.msgid] = line
    return out


async def read_day(outbox: Any, day: date) -> LocalDay:
    start, end = day_bounds(day)
    return local_day(day, await outbox.between(start - MARGIN, end + MARGIN, INFNOS))
