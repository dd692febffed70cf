"""The outbox's table on PostgreSQL, built from schema.py's columns, and its format, kept in a one-row table.

Plain SQL that PostgreSQL 12 and the databases speaking its dialect accept: no extensions, no identity columns
or other newer syntax. SQLite's types map to their PostgreSQL names (REAL is single precision there: the
clocks need DOUBLE PRECISION). A `seq` column gives the order of acceptance that SQLite's rowid gives.

The same versioning as the SQLite file (outbox_format.FORMAT): a database written by a later release is refused
before anything in it is touched; an older one gets the columns it lacks and is marked, in one transaction,
under a transaction-scoped advisory lock so that two gateways starting together do not both create the table.
"""

from __future__ import annotations

from typing import Any

from gateway.relay import outbox_format, schema
from gateway.relay.outbox_format import OutboxFormatError
from gateway.relay.states import UNFINISHED

#: the advisory lock key under which the schema is created or migrated (any constant both nodes agree on)
MIGRATION_LOCK = 0x79626761  # "ybga"

_TYPES = (("REAL", "DOUBLE PRECISION"), ("BLOB", "BYTEA"))


def pg_sql(sql: str) -> str:
    """A column's SQLite type and constraints in PostgreSQL's words."""
    for sqlite, pg in _TYPES:
        sql = sql.replace(sqlite, pg)
    return sql


#: columns of the shared database only: which gateway of the pair owns an unfinished row (its node's incarnation,
#: see outbox_node); SQLite's file has one gateway, so it has no such column
PG_COLUMNS: tuple[schema.Column, ...] = (schema.Column("owner", "TEXT", shown=False),)
_COLUMNS = (*schema.COLUMNS, *PG_COLUMNS)
_DEFINITIONS = ",\n    ".join(f"{c.name} {pg_sql(c.sql)}" for c in _COLUMNS)
_UNFINISHED = ", ".join(f"'{s.value}'" for s in UNFINISHED)
DDL = (
    f"CREATE TABLE IF NOT EXISTS outbox (\n    {_DEFINITIONS},\n    seq BIGSERIAL NOT NULL\n)",
    f"CREATE INDEX IF NOT EXISTS outbox_unfinished ON outbox(state) WHERE state IN ({_UNFINISHED})",
    "CREATE INDEX IF NOT EXISTS outbox_person ON outbox(psn_no, state)",
    "CREATE INDEX IF NOT EXISTS outbox_updated ON outbox(updated)",
    "CREATE INDEX IF NOT EXISTS outbox_client ON outbox(client)",
    "CREATE UNIQUE INDEX IF NOT EXISTS outbox_seq ON outbox(seq)",
    # one row per person with ordered work: accept locks it, so the check for a person's earlier unfinished
    # work and the claim of the first attempt are one decision across connections and gateways
    "CREATE TABLE IF NOT EXISTS outbox_person_lock (psn_no TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS outbox_format (format INTEGER NOT NULL)",
    # each running gateway's lease, in the database's clock (seconds since the epoch): a row whose owner has no
    # live lease here is an orphan any other gateway may claim and settle
    # and the slice of the msgid sequence it mints the gateway's own msgids in (pg_lease.py)
    "CREATE TABLE IF NOT EXISTS outbox_node (node TEXT PRIMARY KEY, lease_until DOUBLE PRECISION NOT NULL)",
    "ALTER TABLE outbox_node ADD COLUMN IF NOT EXISTS slot INTEGER",
)


async def migrate(conn: Any, where: str) -> None:
    """Create the tables, or bring older ones up to this format, and mark them (an asyncpg connection)."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        exists = await conn.fetchval("SELECT to_regclass('outbox_format') IS NOT NULL")
        found = await conn.fetchval("SELECT MAX(format) FROM outbox_format") if exists else None
        if found is not None and found > outbox_format.FORMAT:
            raise OutboxFormatError(
                f"{where}: outbox format {found} was written by a later ybgate (this one reads up to "
                f"{outbox_format.FORMAT}); run that release again, or restore a backup made by this one"
            )
        if found == outbox_format.FORMAT and await _has_every_column(conn):
            # Nothing to change, and no DDL run for nothing: CREATE INDEX and ALTER TABLE lock the table even when
            # IF NOT EXISTS makes them no-ops, so a node starting would stall, or deadlock with, the other
            # node's work on it (a restarted node of a pair failed to start, again and again, that way).
            return
        for statement in DDL:
            await conn.execute(statement)
        for column in _COLUMNS:  # tables written before a column existed get it
            await conn.execute(f"ALTER TABLE outbox ADD COLUMN IF NOT EXISTS {column.name} {pg_sql(column.sql)}")
        if found is not None and found < 2:
            await conn.execute(outbox_format.BACKFILL)
        await conn.execute("DELETE FROM outbox_format")
        await conn.execute("INSERT INTO outbox_format (format) VALUES ($1)", outbox_format.FORMAT)


async def _has_every_column(conn: Any) -> bool:
    """Whether the outbox table has every column and table this release writes (a read of the catalogue: no table
    lock)."""
    if not await conn.fetchval("SELECT to_regclass('outbox_node') IS NOT NULL"):
        return False
    names = [c.name for c in _COLUMNS]
    present = await conn.fetchval(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'outbox' AND column_name = ANY($1::text[])",
        names,
    )
    slot = await conn.fetchval(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'outbox_node' AND column_name = 'slot'"
    )
    return bool(present == len(names) and slot == 1)
