"""The outbox's table, defined once: its columns (with the format that added each), the row they make, the DDL
built from them, and the columns ops' views show. The SQLite repository, the migrations and the read-only views
are all written against this module; a second backend maps the same columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

from gateway.platform.catalogue import TxClass
from gateway.relay.states import UNFINISHED, Reason, RowState, check_reason


@dataclass(frozen=True)
class Column:
    name: str
    sql: str  # its SQL type and constraints
    since: int = 0  # the outbox format that added it (0: there from the first release)
    shown: bool = True  # in ops' list and show views (bodies, digests and clocks are not)


COLUMNS: tuple[Column, ...] = (
    Column("msgid", "TEXT PRIMARY KEY"),
    Column("infno", "TEXT NOT NULL"),
    Column("tx_class", "TEXT NOT NULL"),
    Column("psn_no", "TEXT"),
    Column("state", "TEXT NOT NULL"),
    Column("attempts", "INTEGER NOT NULL DEFAULT 0"),
    Column("created", "REAL NOT NULL"),
    Column("updated", "REAL NOT NULL"),
    Column("deadline", "REAL", shown=False),
    Column("upstream", "TEXT"),
    Column("body_digest", "BLOB NOT NULL", shown=False),
    Column("request", "BLOB NOT NULL", shown=False),
    Column("response", "BLOB", shown=False),
    Column("outcome", "TEXT"),
    Column("client", "TEXT", since=1),
    Column("doubt_clock", "TEXT", since=1, shown=False),
    Column("reason", "TEXT", since=2),
    # the envelope fields the gateway filled in for the HIS (platform.completion), comma-separated; for the audit
    Column("completed", "TEXT", since=3, shown=False),
)
NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)
#: every column, in order, for SELECTs (names are constants of this module; values always travel as parameters)
ALL = ", ".join(NAMES)
#: what ops' list and show views print, in order
SHOWN: tuple[str, ...] = tuple(c.name for c in COLUMNS if c.shown)


class Change(TypedDict, total=False):
    """What a move may set besides the state and its time (each a column above)."""

    attempts: int
    upstream: str | None
    response: bytes | None
    outcome: str | None
    deadline: float | None
    doubt_clock: str | None
    reason: Reason  # a move to FAILED names one, and only such a move (states.check_reason)


SETTABLE = frozenset(Change.__annotations__)


def change_values(to: RowState, fields: Change) -> dict[str, Any]:
    """A move's fields as column values, checked as every backend must: only settable columns, and a reason
    exactly where the move is to FAILED (states.check_reason)."""
    if set(fields) - SETTABLE:
        raise ValueError(f"cannot set {sorted(set(fields) - SETTABLE)}")
    check_reason(to, fields.get("reason"))
    values: dict[str, Any] = dict(fields)
    if "reason" in values:
        values["reason"] = values["reason"].value
    return values


def _quoted(states: tuple[RowState, ...]) -> str:
    return ", ".join(f"'{s.value}'" for s in states)


_DEFINITIONS = ",\n    ".join(f"{c.name} {c.sql}" for c in COLUMNS)
DDL = f"""
CREATE TABLE IF NOT EXISTS outbox (
    {_DEFINITIONS}
);
CREATE INDEX IF NOT EXISTS outbox_unfinished ON outbox(state) WHERE state IN ({_quoted(UNFINISHED)});
CREATE INDEX IF NOT EXISTS outbox_person ON outbox(psn_no, state);
CREATE INDEX IF NOT EXISTS outbox_updated ON outbox(updated);
"""


@dataclass(frozen=True)
class Row:
    msgid: str
    infno: str
    tx_class: TxClass
    psn_no: str | None
    state: RowState
    attempts: int
    created: float
    updated: float
    deadline: float | None
    upstream: str | None
    body_digest: bytes
    request: bytes
    response: bytes | None
    outcome: str | None
    client: str | None = None  # who sent it: the policy's client name (or the peer, without a policy)
    doubt_clock: str | None = None  # when it last went in doubt, as settleclock.stamp() wrote it
    reason: Reason | None = None  # why it failed (FAILED rows only)
    completed: str | None = None  # the envelope fields the gateway filled in, comma-separated


def row_from(v: tuple[Any, ...]) -> Row:
    """A row from the values of a `SELECT {ALL}`. Positional: a row is built twice per request, and a dict round
    trip costs more."""
    reason = None if v[16] is None else Reason(v[16])
    return Row(
        v[0],
        v[1],
        TxClass(v[2]),
        v[3],
        RowState(v[4]),
        v[5],
        v[6],
        v[7],
        v[8],
        v[9],
        v[10],
        v[11],
        v[12],
        v[13],
        v[14],
        v[15],
        reason,
        v[17],
    )
