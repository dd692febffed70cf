"""Read-only views of an outbox in PostgreSQL for ops (`ybgate outbox list|show`), the same rows as
inspect.py's for the SQLite file: one short connection, reads only — the CLI is no gateway of the pair (no lease,
no claim)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg

from gateway.relay.inspect import COLUMNS, local_time
from gateway.relay.pg_connect import UNAVAILABLE, read_dsn, why_unavailable
from gateway.relay.pg_lease import SEPARATOR
from gateway.relay.repository import OutboxUnavailable
from gateway.relay.states import FINAL_VALUES, RowState

_COLS = ", ".join(COLUMNS)


async def _fetch(dsn_file: Path, sql: str, *params: Any) -> list[Any]:
    dsn = read_dsn(dsn_file)
    failed: str | None = None
    try:
        conn = await asyncpg.connect(dsn, timeout=5.0)
        try:
            return list(await conn.fetch(sql, *params))
        finally:
            await conn.close()
    except (*UNAVAILABLE, asyncpg.UndefinedTableError, ValueError) as e:
        failed = type(e).__name__
    del dsn
    raise OutboxUnavailable(why_unavailable(dsn_file, failed))


async def list_rows(dsn_file: Path, *, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    if state is None:
        rows = await _fetch(dsn_file, f"SELECT {_COLS} FROM outbox ORDER BY created DESC LIMIT $1", limit)  # noqa: S608
    else:
        RowState(state)  # a typo is an error, not an empty list
        sql = f"SELECT {_COLS} FROM outbox WHERE state = $1 ORDER BY created DESC LIMIT $2"  # noqa: S608
        rows = await _fetch(dsn_file, sql, state, limit)
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


async def show(dsn_file: Path, msgid: str) -> dict[str, Any] | None:
    sql = f"SELECT {_COLS}, request, response FROM outbox WHERE msgid = $1"  # noqa: S608
    rows = await _fetch(dsn_file, sql, msgid)
    if not rows:
        return None
    doc = dict(zip((*COLUMNS, "request", "response"), rows[0], strict=True))
    for key in ("created", "updated"):
        doc[key] = local_time(doc[key])
    for key in ("request", "response"):
        if doc[key] is not None:
            doc[key] = json.loads(bytes(doc[key]))
    return doc


async def settled(dsn_file: Path) -> list[tuple[str, str, float, str | None]]:
    """Every final row: msgid, state, when, and the name of the node that settled it (None: not known)."""
    finals = list(FINAL_VALUES)
    sql = "SELECT msgid, state, updated, owner FROM outbox WHERE state = ANY($1::text[])"
    return [
        (r[0], r[1], r[2], r[3].rpartition(SEPARATOR)[0] or None if r[3] else None)
        for r in await _fetch(dsn_file, sql, finals)
    ]
