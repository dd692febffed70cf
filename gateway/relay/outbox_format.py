"""The outbox file's format version, kept in SQLite's user_version: what this release writes, what it opens.

An older file is migrated in place when opened (the columns it lacks are added, gateway/relay/schema.py says which
format brought each) and then marked; a newer one, written by a later release, is refused before anything in it
is touched, so that a downgrade cannot damage it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.errors import GatewayError
from gateway.relay import schema

#: 3: the column completed (the envelope fields the gateway filled in); 2: the column reason (why a row failed);
#: 1: the marker itself, with the columns client and doubt_clock; 0: unmarked files of earlier releases
FORMAT = 3

# Failed rows written before format 2 get their reason from the words the releases before it wrote: the
# "no answer" prefix is what told a query's timeout from "not processed" then. Words that name no reason (a 2601
# refused with an HTTP error) stay "unrecorded": such a row was told "not processed" then, and still is.
BACKFILL = """
UPDATE outbox SET reason = CASE
    WHEN outcome LIKE 'no answer in time%' THEN 'no_answer'
    WHEN outcome LIKE 'not sent: an earlier transaction for this person%' THEN 'order'
    WHEN outcome LIKE 'not sent%' THEN 'not_sent'
    WHEN outcome LIKE 'the platform never booked it%' OR outcome LIKE 'nothing to reverse%' THEN 'not_booked'
    WHEN outcome LIKE 'resolved by ops as not booked%' THEN 'ops'
    ELSE 'unrecorded'
END
WHERE state = 'failed' AND reason IS NULL
"""


class OutboxFormatError(GatewayError):
    """The outbox was written by a later release of ybgate."""


def refuse_newer(conn: sqlite3.Connection, path: Path) -> None:
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > FORMAT:
        conn.close()
        raise OutboxFormatError(
            f"{path}: outbox format {found} was written by a later ybgate (this one reads up to {FORMAT}); "
            "run that release again, or restore a backup made by this one"
        )


def migrate(conn: sqlite3.Connection) -> None:
    """Create the table, or bring an older one up to this format, and mark it: one transaction, so a crash
    during the migration leaves the file as it was."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    conn.execute("BEGIN IMMEDIATE")
    try:
        _migrate(conn, found)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _migrate(conn: sqlite3.Connection, found: int) -> None:
    for statement in schema.DDL.split(";"):
        if statement.strip():
            conn.execute(statement)
    # Outboxes written before a column existed get it (rows kept from then have none).
    have = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
    for column in schema.COLUMNS:
        if column.name not in have:
            conn.execute(f"ALTER TABLE outbox ADD COLUMN {column.name} {column.sql}")  # constants of schema.py
    if found < 2:
        conn.execute(BACKFILL)
    mark(conn)


def mark(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA user_version={FORMAT}")  # an integer constant of this module
