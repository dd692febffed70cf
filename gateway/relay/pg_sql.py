"""The PostgreSQL outbox's statements, built from schema.py's column names (constants; values always travel as
parameters, $n)."""

from __future__ import annotations

import functools

from gateway.relay.schema import ALL, NAMES
from gateway.relay.states import MOVES, UNFINISHED, State

UNFINISHED_VALUES = tuple(s.value for s in UNFINISHED)
#: the unfinished states as literals (constants of states.py), for statements that take no other list
MARKS = ", ".join(f"'{v}'" for v in UNFINISHED_VALUES)
FINALS = tuple(s.value for s in State if s.final)
BY_SEQ = "ORDER BY seq"

SELECT = f"SELECT {ALL} FROM outbox WHERE msgid = $1"  # noqa: S608
ACCEPT_INSERT = (
    f"INSERT INTO outbox ({ALL}) VALUES ({', '.join(f'${i + 1}' for i in range(len(NAMES)))}) "  # noqa: S608
    f"ON CONFLICT (msgid) DO NOTHING RETURNING {ALL}"
)
UNFINISHED_REVERSALS = f"SELECT msgid FROM outbox WHERE client = $1 AND state IN ({MARKS}) {BY_SEQ}"  # noqa: S608


@functools.cache
def sources(to: State) -> tuple[str, ...]:
    """The states a row may be moved from into `to` (states.MOVES)."""
    return tuple(src.value for src, targets in MOVES.items() if to in targets)


@functools.cache
def move_sql(to: State, fields: tuple[str, ...]) -> str:
    """The UPDATE for a move, the legal-move check part of it: $1 state, $2 time, the fields, the msgid, the
    sources as an array."""
    sets = ", ".join(f"{k} = ${i + 1}" for i, k in enumerate(("state", "updated", *fields)))
    n = len(fields) + 2
    return f"UPDATE outbox SET {sets} WHERE msgid = ${n + 1} AND state = ANY(${n + 2}::text[]) RETURNING {ALL}"  # noqa: S608


@functools.cache
def person_sql(classes: int, earlier: bool) -> str:
    """Unfinished rows of a person in the ordered classes: $1 the person, then the classes, then the msgid. Only
    work accepted before the request (seq: the order of acceptance) blocks it."""
    marks = ", ".join(f"${i + 2}" for i in range(classes))
    m = classes + 2
    where = f"psn_no = $1 AND tx_class IN ({marks}) AND state IN ({MARKS})"
    if earlier:
        return f"SELECT {ALL} FROM outbox WHERE {where} AND seq < (SELECT seq FROM outbox WHERE msgid = ${m}) {BY_SEQ}"  # noqa: S608
    return f"SELECT msgid FROM outbox WHERE {where} AND msgid != ${m} ORDER BY created"  # noqa: S608
