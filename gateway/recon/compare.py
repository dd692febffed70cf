"""The difference list: the hospital's lines against the platform's result list, settlement by settlement."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from gateway.platform.stmtfiles import AMOUNTS, VERDICTS, GroupKey, StatementLine

LOCAL_ONLY = "local_only"  # the hospital has it, the platform does not
PLATFORM_ONLY = "platform_only"  # the platform has it, the hospital does not
AMOUNT_DIFFERS = "amount_differs"
#: stmt_rslt of a result line that only echoes a hospital line
HOSPITAL_ONLY = "3"
VERDICT_ONLY = "platform_verdict"  # the amounts agree, yet the platform's result list flags the line
#: confirmed as booked (by a query or by ops) without an answer, and the platform's detail has no such settlement
CONFIRMED_ABSENT = "confirmed_absent"


@dataclass(frozen=True)
class Difference:
    kind: str
    group: GroupKey
    setl_id: str
    msgid: str
    psn_no: str
    mdtrt_id: str
    refd_setl_flag: str
    local: dict[str, Decimal] | None
    platform: dict[str, Decimal] | None
    platform_verdict: str = ""
    note: str = ""

    @property
    def fields(self) -> list[str]:
        if self.local is None or self.platform is None:
            return []
        return [a for a in AMOUNTS if self.local[a] != self.platform[a]]


def differences(
    group: GroupKey,
    local: Iterable[StatementLine],
    platform: Iterable[StatementLine],
    *,
    unanswered: dict[str, str] | None = None,
    failed: dict[str, str] | None = None,
) -> list[Difference]:
    """Every settlement on one side only or with different amounts. `unanswered` (msgid -> infno) names
    settlements confirmed as booked without an answer: a platform-only line with such a msgid is explained,
    and the note says so. `failed` (msgid -> outcome) names those the outbox holds as not booked: a platform
    line with such a msgid says the outbox (or ops) was wrong."""
    unanswered, failed = unanswered or {}, failed or {}
    ours = {line.setl_id: line for line in local}
    # The result list echoes the hospital's lines it has no record of (stmt_rslt 3): not platform records.
    echoed = {line.setl_id for line in platform if line.stmt_rslt == HOSPITAL_ONLY}
    out: list[Difference] = []
    for theirs in (line for line in platform if line.stmt_rslt != HOSPITAL_ONLY):
        mine = ours.pop(theirs.setl_id, None)
        verdict = VERDICTS.get(theirs.stmt_rslt, theirs.stmt_rslt)
        if mine is None:
            if theirs.msgid in unanswered:
                note = f"booked without an answer: outbox msgid {theirs.msgid} was confirmed as booked"
            elif theirs.msgid in failed:
                note = f"the outbox holds msgid {theirs.msgid} as not booked ({failed[theirs.msgid]})"
            else:
                note = "not in the outbox as answered"
            out.append(
                _diff(PLATFORM_ONLY, group, theirs, local=None, platform=theirs.amounts(), verdict=verdict, note=note)
            )
        elif mine.amounts() != theirs.amounts():
            fields = ", ".join(a for a in AMOUNTS if mine.amounts()[a] != theirs.amounts()[a])
            out.append(
                _diff(
                    AMOUNT_DIFFERS,
                    group,
                    mine,
                    local=mine.amounts(),
                    platform=theirs.amounts(),
                    verdict=verdict,
                    note=f"differ: {fields}",
                )
            )
        elif theirs.stmt_rslt not in ("", "0"):
            # The amounts agree but the platform says they do not: worth a look, not a difference of money.
            out.append(
                _diff(
                    VERDICT_ONLY,
                    group,
                    mine,
                    local=mine.amounts(),
                    platform=theirs.amounts(),
                    verdict=verdict,
                    note="amounts agree here",
                )
            )
    for mine in ours.values():
        out.append(
            _diff(
                LOCAL_ONLY,
                group,
                mine,
                local=mine.amounts(),
                platform=None,
                verdict=VERDICTS[HOSPITAL_ONLY] if mine.setl_id in echoed else "",
                note="answered to the HIS, absent on the platform",
            )
        )
    return out


def confirmed_absent(
    group: GroupKey, msgid: str, infno: str, psn_no: str | None, outcome: str, *, refund: bool
) -> Difference:
    """A settlement confirmed as booked that the platform's detail does not hold: the confirmation was wrong
    (or the platform lost it), and the HIS was told it is booked."""
    return Difference(
        kind=CONFIRMED_ABSENT,
        group=group,
        setl_id="",
        msgid=msgid,
        psn_no=psn_no or "",
        mdtrt_id="",
        refd_setl_flag="1" if refund else "0",
        local=None,
        platform=None,
        note=f"{infno} confirmed as booked ({outcome}), but the platform's detail has no settlement with this msgid",
    )


def _diff(
    kind: str,
    group: GroupKey,
    line: StatementLine,
    *,
    local: dict[str, Decimal] | None,
    platform: dict[str, Decimal] | None,
    verdict: str,
    note: str,
) -> Difference:
    return Difference(
        kind=kind,
        group=group,
        setl_id=line.setl_id,
        msgid=line.msgid,
        psn_no=line.psn_no,
        mdtrt_id=line.mdtrt_id,
        refd_setl_flag=line.refd_setl_flag,
        local=local,
        platform=platform,
        platform_verdict=verdict,
        note=note,
    )
