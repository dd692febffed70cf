"""The PostgreSQL outbox's statements, built from schema.py's column names (constants; values always travel as
parameters, $n)."""

from __future__ import annotations

import functools

from gateway.relay.schema import ALL, NAMES
from gateway.relay.states import FINAL_VALUES, MOVES, UNFINISHED, RowState

UNFINISHED_VALUES = tuple(s.value for s in UNFINISHED)
#: the unfinished states as literals (constants of states.py), for statements that take no other list
MARKS = ", ".join(f"'{v}'" for v in UNFINISHED_VALUES)
FINALS = FINAL_VALUES
BY_SEQ = "ORDER BY seq"

SELECT = f"SELECT {ALL} FROM outbox WHERE msgid = $1"  # noqa: S608
#: the row's columns, then its owner (the accepting gateway)
ACCEPT_INSERT = (
    f"INSERT INTO outbox ({ALL}, owner) VALUES ({', '.join(f'${i + 1}' for i in range(len(NAMES) + 1))}) "  # noqa: S608
    f"ON CONFLICT (msgid) DO NOTHING RETURNING {ALL}"
)
#: the database's clock, in seconds since the epoch: every lease is stamped and compared in it, never a node's
DB_NOW = "extract(epoch from clock_timestamp())"
RENEW = (
    f"INSERT INTO outbox_node (node, lease_until, slot) VALUES ($1, {DB_NOW} + $2, $3) "  # noqa: S608
    "ON CONFLICT (node) DO UPDATE SET lease_until = EXCLUDED.lease_until, slot = EXCLUDED.slot"
)
#: the msgid slices other gateways with a live lease hold ($1: this gateway)
TAKEN_SLOTS = f"SELECT slot FROM outbox_node WHERE node <> $1 AND slot IS NOT NULL AND lease_until > {DB_NOW}"  # noqa: S608
#: unfinished rows claimed by $1: its own when $2, and those whose owner holds no live lease (a gateway that died
#: or stopped; or none, rows written before owners). SKIP LOCKED: a row another gateway is claiming or moving
#: right now is not waited for, it is not an orphan.
CLAIM = (
    f"UPDATE outbox SET owner = $1 WHERE msgid IN (SELECT msgid FROM outbox WHERE state IN ({MARKS}) "  # noqa: S608
    "AND ((owner = $1 AND $2) OR owner IS NULL OR (owner <> $1 AND owner NOT IN "
    f"(SELECT node FROM outbox_node WHERE lease_until > {DB_NOW}))) FOR UPDATE SKIP LOCKED) "
    f"RETURNING {ALL}"
)
UNFINISHED_REVERSALS = f"SELECT msgid FROM outbox WHERE client = $1 AND state IN ({MARKS}) {BY_SEQ}"  # noqa: S608


@functools.cache
def sources(to: RowState) -> tuple[str, ...]:
    """The states a row may be moved from into `to` (states.MOVES)."""
    return tuple(src.value for src, targets in MOVES.items() if to in targets)


@functools.cache
def move_sql(to: RowState, fields: tuple[str, ...]) -> str:
    """The UPDATE for a move, the legal-move check part of it: $1 state, $2 time, the fields, the msgid, the
    sources as an array."""
    sets = ", ".join(f"{k} = ${i + 1}" for i, k in enumerate(("state", "updated", *fields)))
    n = len(fields) + 2
    return f"UPDATE outbox SET {sets} WHERE msgid = ${n + 1} AND state = ANY(${n + 2}::text[]) RETURNING {ALL}"  # noqa: S608


@functools.cache
def fenced_move_sql(to: RowState, fields: tuple[str, ...]) -> str:
    """move_sql's UPDATE, only while the row is owned by the gateway in the parameter after the sources: a move
    into sending by a gateway whose row was claimed by the other one (its lease lapsed) changes nothing."""
    n = len(fields) + 2
    return move_sql(to, fields).replace(" RETURNING ", f" AND owner = ${n + 3} RETURNING ", 1)


@functools.cache
def settle_sql(to: RowState, fields: tuple[str, ...]) -> str:
    """move_sql's UPDATE into a final state, naming the gateway that settled the row (the parameter after the
    sources) as its owner: each gateway's audit catch-up appends only the outcomes it settled itself."""
    n = len(fields) + 2
    return move_sql(to, fields).replace("UPDATE outbox SET ", f"UPDATE outbox SET owner = ${n + 3}, ", 1)  # noqa: S608


#: final rows settled by a gateway of one node name (any of its starts) since a time: $1 the time, $2 the final
#: states, $3 the name and its separator (substr, not LIKE: a name may hold LIKE's wildcard "_")
SETTLED_BY = (
    f"SELECT {ALL} FROM outbox WHERE updated >= $1 AND state = ANY($2::text[]) "  # noqa: S608
    "AND substr(owner, 1, char_length($3::text)) = $3::text ORDER BY updated"
)


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
