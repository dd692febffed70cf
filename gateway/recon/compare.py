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
) -> list[Difference]:
    """Every settlement on one side only or with different amounts. `unanswered` (msgid -> infno) names
    settlements ops confirmed as booked without an answer: a platform-only line with such a msgid is
    explained, and the note says so."""
    unanswered = unanswered or {}
    ours = {line.setl_id: line for line in local}
    # The result list echoes the hospital's lines it has no record of (stmt_rslt 3): not platform records.
    echoed = {line.setl_id for line in platform if line.stmt_rslt == HOSPITAL_ONLY}
    out: list[Difference] = []
    for theirs in (line for line in platform if line.stmt_rslt != HOSPITAL_ONLY):
        mine = ours.pop(theirs.setl_id, None)
        verdict = VERDICTS.get(theirs.stmt_rslt, theirs.stmt_rslt)
        if mine is None:
            note = (
                f"booked without an answer: outbox msgid {theirs.msgid} was confirmed as booked"
                if theirs.msgid in unanswered
                else "not in the outbox as answered"
            )
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
