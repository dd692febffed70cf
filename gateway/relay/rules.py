"""The relay's decisions as one table: what a transaction's kind lets the gateway do with it.

A kind is the catalogue's class of an infno, whether 2601 can reverse it, and whether it has a check query. Each
kind has one row saying whether the live path may send it again within the HIS's deadline, what is done once its
answer is lost for good (冲正, query, ask again, settled by its original, or left for ops), what a query that
finds nothing means, and whether it waits for the same person's earlier work. The live path
(gateway/relay/durable.py), ops resolution (`ybgate outbox resolve`), recovery after a restart, the keep-alive
choice of the forwarder and the outbox's per-person ordering all read their answer here, and nowhere else.

Pure data and lookups: no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from gateway.platform.catalogue import TxClass, TxInfo


class Plan(enum.Enum):
    """What is done with a request whose answer was lost (it is in doubt) once no re-send within the HIS's
    deadline is left."""

    REVERSE = "reverse"  # 冲正 (2601, omsgid = the original's msgid) until the platform answers definitely
    CHECK = "check"  # ask the platform whether it holds it (the catalogue's check query)
    ASK_AGAIN = "ask_again"  # a query: "no answer", and the HIS may simply ask again with a new msgid
    BY_ORIGINAL = "by_original"  # a 冲正 the gateway sent: settled by what became of its original
    OPS = "ops"  # nothing the gateway can ask: left in doubt for ops


class IfAbsent(enum.Enum):
    """What a check query that finds none of the request means, once the settle time has passed."""

    RESEND = "resend"  # the platform never had it: send it again under the same msgid
    NOT_PROCESSED = "not_processed"  # the platform never booked it: the HIS is told so (retry with a new msgid)


@dataclass(frozen=True)
class Kind:
    tx_class: TxClass
    reversible: bool
    check: bool  # the catalogue names a check query for it


@dataclass(frozen=True)
class Rule:
    resend: bool  # sent again within the HIS's deadline after a lost answer (and over a reused connection)
    plan: Plan
    if_absent: IfAbsent | None = None  # Plan.CHECK only
    ordered: bool = False  # waits for the same person's earlier unfinished ordered work

    def __post_init__(self) -> None:
        if (self.plan is Plan.CHECK) != (self.if_absent is not None):
            raise ValueError("a rule says what an empty check means exactly when its plan is CHECK")


_S, _C, _M, _R = TxClass.SAFE, TxClass.CHECK_FIRST, TxClass.MONEY_MOVING, TxClass.RESOLVER
_ASK = Rule(resend=True, plan=Plan.ASK_AGAIN)

#: (class, reversible, check query) → rule; every combination has its row (tests/relay/test_rules.py)
TABLE: dict[Kind, Rule] = {
    # Queries and pre-settlement: repeating them is harmless, whatever else the catalogue says of them.
    Kind(_S, False, False): _ASK,
    Kind(_S, False, True): _ASK,
    Kind(_S, True, False): _ASK,
    Kind(_S, True, True): _ASK,
    # Uploads: looked up before they are sent again; 2601 does not undo them.
    Kind(_C, False, False): Rule(resend=False, plan=Plan.OPS),
    Kind(_C, False, True): Rule(resend=False, plan=Plan.CHECK, if_absent=IfAbsent.RESEND),
    Kind(_C, True, False): Rule(resend=False, plan=Plan.OPS),
    Kind(_C, True, True): Rule(resend=False, plan=Plan.CHECK, if_absent=IfAbsent.RESEND),
    # Money: never sent twice; undone by 冲正 where the platform can, else looked up, else left for ops.
    Kind(_M, False, False): Rule(resend=False, plan=Plan.OPS, ordered=True),
    Kind(_M, False, True): Rule(resend=False, plan=Plan.CHECK, if_absent=IfAbsent.NOT_PROCESSED, ordered=True),
    Kind(_M, True, False): Rule(resend=False, plan=Plan.REVERSE, ordered=True),
    Kind(_M, True, True): Rule(resend=False, plan=Plan.REVERSE, ordered=True),
    # 冲正 itself: a lost answer is asked again by the next 2601 of the same original, which settles it.
    Kind(_R, False, False): Rule(resend=False, plan=Plan.BY_ORIGINAL),
    Kind(_R, False, True): Rule(resend=False, plan=Plan.BY_ORIGINAL),
    Kind(_R, True, False): Rule(resend=False, plan=Plan.BY_ORIGINAL),
    Kind(_R, True, True): Rule(resend=False, plan=Plan.BY_ORIGINAL),
}


def kind_of(info: TxInfo) -> Kind:
    return Kind(info.tx_class, info.reversible, info.check is not None)


def rule_for(info: TxInfo) -> Rule:
    return TABLE[kind_of(info)]


def plan_for(info: TxInfo) -> Plan:
    return rule_for(info).plan


def ordered_classes() -> frozenset[TxClass]:
    """The classes whose work for a person goes in order (read from the table each time, so that the outbox's
    ordering query follows it)."""
    return frozenset(kind.tx_class for kind, rule in TABLE.items() if rule.ordered)
