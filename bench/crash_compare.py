"""The crash harness's verdict: what each cashier was told, against the simulator's ledger and the outbox (#20).

Every count but `ordering refusals` must be 0:

- lost: acknowledged (outcome_unknown) but the outbox holds no row for it
- double-booked: one msgid booked more than once at the platform
- told false: told not booked (not processed, reversed, refused, not accepted…) but booked; told booked but not
- left unresolved: still outcome_unknown after the final settle wait, or an outbox row not final
- msgids reused: one msgid under two infnos at the platform
- ordering refusals false: a refusal "an earlier transaction for this person (X) is still unresolved" that was
  not true: X not an earlier money-moving request of the same person, X already answered definitely before the
  refused request was sent, or the refused request reached the platform after all

`ordering refusals` itself counts how many there were: the column means something only when it is above 0.
"""

from __future__ import annotations

import collections
import re
from dataclasses import dataclass, field
from typing import Any

#: what the ledger keeps by msgid (settlements, refunds, visits, fee lines): where "told false" is decided
LEDGER_INFNOS = frozenset({"2201", "2204", "2207", "2208", "2304", "2305"})
#: the mix's money-moving infnos (the catalogue's class): what per-person ordering holds back
MONEY_MOVING = frozenset({"2201", "2207", "2208", "2304", "2305"})
#: answers after which the README says: same msgid again
ASK_AGAIN = frozenset({"outcome_unknown", "unreachable"})
BOOKED = frozenset({"answered", "booked_no_answer"})
#: the gateway's words for a per-person ordering refusal, naming the request it waited for
ORDERING = re.compile(r"earlier transaction for this person \((\w+)\) is still unresolved")

COUNTS = {
    "lost": "lost",
    "double_booked": "double-booked",
    "told_false": "told false",
    "unresolved": "left unresolved",
    "reused": "msgids reused",
    "ordering_false": "ordering refusals false",
}


@dataclass
class Told:
    """What one cashier was told for one msgid: every answer's kind, in order, and when."""

    msgid: str
    infno: str
    kinds: list[str] = field(default_factory=list)
    person: str = ""
    sent_at: float = 0.0  # the first attempt (loop time)
    definite_at: float | None = None  # the first answer that was not "ask again"
    blocker: str | None = None  # the msgid an ordering refusal named

    @property
    def last(self) -> str:
        return self.kinds[-1] if self.kinds else "unreachable"

    def heard(self, kind: str, body: dict[str, Any], now: float) -> None:
        self.kinds.append(kind)
        if kind not in ASK_AGAIN and self.definite_at is None:
            self.definite_at = now
            named = ORDERING.search(str(body.get("err_msg") or "")) if kind == "not_processed" else None
            self.blocker = named.group(1) if named else None


def ordering_false(told: list[Told], sent: set[str]) -> list[str]:
    """The ordering refusals that were not true; `sent`: every msgid that reached the platform."""
    order = {t.msgid: i for i, t in enumerate(told)}  # asking order: a cashier's requests in turn
    by_msgid = {t.msgid: t for t in told}
    out = []
    for i, t in enumerate(told):
        if t.blocker is None:
            continue
        blocker = by_msgid.get(t.blocker)
        if blocker is None or blocker.person != t.person or blocker.infno not in MONEY_MOVING:
            out.append(f"{t.msgid} refused for {t.blocker}: not a money-moving request of the same person")
        elif order[blocker.msgid] > i:
            out.append(f"{t.msgid} refused for {t.blocker}: a later request")
        elif blocker.definite_at is not None and blocker.definite_at < t.sent_at:
            out.append(f"{t.msgid} refused for {t.blocker}: already answered {blocker.last} before it was sent")
        if t.msgid in sent:
            out.append(f"{t.msgid} refused as not sent, but it reached the platform")
    return out


def compare(told: list[Told], ledger: dict[str, Any], outbox: dict[str, str]) -> dict[str, list[str]]:
    """Each count's msgids: what the cashiers were told against the platform's ledger and the outbox."""
    booked = [*ledger["settlements"], *ledger["refunds"], *ledger["visits"], *ledger["fees"]]
    lines = collections.defaultdict(list)
    for line in booked:
        lines[line["msgid"]].append(line)
    # booked twice: a msgid's settlement, refund or visit more than once, or one of an upload's fee lines (an
    # upload carries many, each once)
    copies = collections.Counter((line["msgid"], line.get("feedetl_sn", "")) for line in booked)
    infnos = collections.defaultdict(set)
    for m in ledger["messages"]:
        if m["msgid"]:
            infnos[m["msgid"]].add(m["infno"])
    out: dict[str, list[str]] = {k: [] for k in COUNTS}
    final = {"answered", "reversed", "failed", "confirmed"}
    for t in told:
        held = [line for line in lines.get(t.msgid, []) if line.get("state") != "reversed"]
        if "outcome_unknown" in t.kinds and t.msgid not in outbox:
            out["lost"].append(t.msgid)
        if t.infno in LEDGER_INFNOS and t.last not in ASK_AGAIN and (t.last in BOOKED) != bool(held):
            out["told_false"].append(f"{t.msgid} {t.infno} told {' > '.join(t.kinds)}, booked {len(held)}")
        if t.last in ASK_AGAIN:  # the gateway is up through the settle wait: silence is not an answer
            out["unresolved"].append(t.msgid)
    out["double_booked"] = [" ".join(key).strip() for key, n in copies.items() if n > 1]
    out["unresolved"] += [m for m, state in outbox.items() if state not in final]
    out["reused"] = [f"{m} {sorted(i)}" for m, i in infnos.items() if len(i) > 1]
    out["ordering_false"] = ordering_false(told, set(infnos))
    return out
