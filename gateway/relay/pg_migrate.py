"""Moving a single host's SQLite outbox into PostgreSQL (`ybgate outbox migrate --to postgresql`), when a 前置机
joins a pair: every row, in every state, with every column as stored, in the order it was accepted, in one
transaction — all of it or nothing. The SQLite file is only read.

Rows arrive without an owner: the first gateway of the pair to start claims the unfinished ones and settles them
by the class rules, as a restart of this host would have. Run again, it finds the rows it moved and moves nothing;
a msgid the database holds with another body or state stops it before anything is written.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import asyncpg

from gateway.errors import GatewayError
from gateway.relay import outbox_format, pg_schema, schema
from gateway.relay.pg_connect import UNAVAILABLE, read_dsn, why_unavailable
from gateway.relay.repository import OutboxUnavailable

_INSERT = (
    f"INSERT INTO outbox ({schema.ALL}) VALUES ({', '.join(f'${i + 1}' for i in range(len(schema.NAMES)))}) "  # noqa: S608
    "ON CONFLICT (msgid) DO NOTHING RETURNING msgid"
)
_STORED = "SELECT msgid, body_digest, state FROM outbox WHERE msgid = ANY($1::text[])"


class MigrationRefused(GatewayError):
    kind = "migration_refused"


def read_rows(path: Path) -> list[tuple[object, ...]]:
    """Every row of the file, all columns of this release (None for those an older file lacks), in the order they
    were accepted."""
    if not path.exists():
        raise MigrationRefused(f"no outbox at {path}")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        outbox_format.refuse_newer(conn, path)
        have = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
        cols = ", ".join(n if n in have else "NULL" for n in schema.NAMES)
        return list(conn.execute(f"SELECT {cols} FROM outbox ORDER BY rowid"))  # noqa: S608
    finally:
        conn.close()


async def migrate(path: Path, dsn_file: Path) -> tuple[Counter[str], Counter[str]]:
    """Move the rows; (moved, already there) counted by state."""
    rows = read_rows(path)
    dsn = read_dsn(dsn_file)
    failed: str | None = None
    try:
        conn = await asyncpg.connect(dsn, timeout=10.0)
    except (*UNAVAILABLE, ValueError) as e:
        failed = type(e).__name__
    del dsn
    if failed is not None:
        raise OutboxUnavailable(why_unavailable(dsn_file, failed))
    try:
        await pg_schema.migrate(conn, f"the database of {dsn_file}")
        async with conn.transaction():
            return await _move(conn, rows)
    finally:
        await conn.close()


async def _move(conn: asyncpg.Connection, rows: list[tuple[object, ...]]) -> tuple[Counter[str], Counter[str]]:
    moved: Counter[str] = Counter()
    already: Counter[str] = Counter()
    state_at, digest_at = schema.NAMES.index("state"), schema.NAMES.index("body_digest")
    for start in range(0, len(rows), 500):
        batch = rows[start : start + 500]
        inserted = set()
        for row in batch:
            if await conn.fetchval(_INSERT, *row) is not None:
                inserted.add(row[0])
        rest = [r for r in batch if r[0] not in inserted]
        stored = {r[0]: (bytes(r[1]), r[2]) for r in await conn.fetch(_STORED, [r[0] for r in rest])}
        for row in rest:
            if stored.get(str(row[0])) != (row[digest_at], row[state_at]):
                raise MigrationRefused(
                    f"msgid {row[0]} is in the database already with another body or state: nothing was moved"
                )
            already[str(row[state_at])] += 1
        for row in batch:
            if row[0] in inserted:
                moved[str(row[state_at])] += 1
    return moved, already
