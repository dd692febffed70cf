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

#: 1: the marker itself, with the columns client and doubt_clock; 0: unmarked files of earlier releases
FORMAT = 1


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
    """Create the table, or bring an older one up to this format, and mark it."""
    conn.executescript(schema.DDL)
    # Outboxes written before a column existed get it (rows kept from then have none).
    have = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
    for column in schema.COLUMNS:
        if column.name not in have:
            conn.execute(f"ALTER TABLE outbox ADD COLUMN {column.name} {column.sql}")  # constants of schema.py
    mark(conn)


def mark(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA user_version={FORMAT}")  # an integer constant of this module
