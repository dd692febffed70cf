"""The outbox file's format version, kept in SQLite's user_version: what this release writes, what it opens.

An older file is migrated in place when opened (the outbox adds what it lacks) and then marked; a newer one, written
by a later release, is refused before anything in it is touched, so that a downgrade cannot damage it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.errors import GatewayError

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


def mark(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA user_version={FORMAT}")  # an integer constant of this module
