"""Read-only views of the outbox for ops (`ybgate outbox list|show`), safe beside a running daemon: WAL lets
readers in while the daemon writes, and the connection is opened read-only."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path
from typing import Any

from gateway.relay import schema
from gateway.relay.states import FINAL_VALUES, RowState

COLUMNS = schema.SHOWN


def _open(path: Path) -> sqlite3.Connection:
    if not path.exists():
        raise FileNotFoundError(f"no outbox at {path}")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _present(conn: sqlite3.Connection) -> tuple[str, ...]:
    """COLUMNS the file has: an outbox the daemon has not opened since an upgrade lacks the newer ones (this
    read-only view does not migrate it)."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(outbox)")}
    return tuple(c for c in COLUMNS if c in have)


def list_rows(path: Path, *, state: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    if state is not None:
        RowState(state)  # a typo is an error, not an empty list
    conn = _open(path)
    try:
        names = _present(conn)
        cols = ", ".join(names)
        if state is None:
            rows = conn.execute(f"SELECT {cols} FROM outbox ORDER BY created DESC LIMIT ?", (limit,))  # noqa: S608
        else:
            rows = conn.execute(
                f"SELECT {cols} FROM outbox WHERE state = ? ORDER BY created DESC LIMIT ?",  # noqa: S608
                (state, limit),
            )
        return [dict(zip(names, r, strict=True)) for r in rows.fetchall()]
    finally:
        conn.close()


def holds(path: Path, msgid: str) -> bool:
    """Whether the outbox holds `msgid`, read beside the writer (whose commits may be failing: a full disk)."""
    conn = _open(path)
    try:
        return conn.execute("SELECT 1 FROM outbox WHERE msgid = ?", (msgid,)).fetchone() is not None
    finally:
        conn.close()


def settled(path: Path) -> list[tuple[str, str, float, str | None]]:
    """Every final row: msgid, state, when (the one gateway of a file settled them all: no node is named)."""
    finals = FINAL_VALUES
    conn = _open(path)
    try:
        sql = f"SELECT msgid, state, updated FROM outbox WHERE state IN ({', '.join('?' * len(finals))})"  # noqa: S608
        return [(r[0], r[1], r[2], None) for r in conn.execute(sql, finals)]
    finally:
        conn.close()


def show(path: Path, msgid: str) -> dict[str, Any] | None:
    conn = _open(path)
    try:
        names = _present(conn)
        r = conn.execute(
            f"SELECT {', '.join(names)}, request, response FROM outbox WHERE msgid = ?",  # noqa: S608
            (msgid,),
        ).fetchone()
    finally:
        conn.close()
    if r is None:
        return None
    doc = dict(zip((*names, "request", "response"), r, strict=True))
    for key in ("created", "updated"):
        if key in doc:
            doc[key] = local_time(doc[key])
    for key in ("request", "response"):
        if doc[key] is not None:
            doc[key] = json.loads(doc[key])
    return doc


def local_time(epoch: float | None) -> str | None:
    """Local time with its UTC offset: epoch seconds mean nothing to a person reading a ticket, and a bare
    local time is ambiguous when the reader's zone differs from the 前置机's."""
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")


def line(row: dict[str, Any]) -> str:
    when = local_time(row["created"])
    return (
        f"{when}  {row['msgid']}  {row['infno']:<5} {row['tx_class']:<12} {row['state']:<9} "
        f"attempts={row['attempts']}  {row.get('client') or '-'}  {_why(row)}{row['outcome'] or ''}"
    )


def _why(row: dict[str, Any]) -> str:
    return f"[{row['reason']}] " if row.get("reason") else ""
